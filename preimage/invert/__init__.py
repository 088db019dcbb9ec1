"""Inversion by optimization: objectives, regularizers, transforms, optimizers, presets, the run loop."""
