"""The package version, kept apart so light modules can read it without importing Keras."""
__version__ = "0.1.0"
