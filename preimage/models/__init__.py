"""Known architectures (prototxt text), the bundled sample images, and the demo."""
