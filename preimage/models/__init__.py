"""Known architectures, preprocessing, and bundled sample images."""
