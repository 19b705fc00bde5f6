"""cnnkit: convolutional neural networks from their mathematics, on NumPy, with explicit backward passes."""

__version__ = "0.1.0"
