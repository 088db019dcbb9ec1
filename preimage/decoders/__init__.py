"""Learned decoders: architectures, feature datasets, training, apply and experiments."""
