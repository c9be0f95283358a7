"""The package version, in a module of its own so that any layer can name it without importing
the package's public API (``resnet_cifar/__init__.py`` sits above every module it re-exports)."""

__version__ = "0.1.0"
