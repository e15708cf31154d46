"""bastion: a security stack for Python REST APIs, and the scanner that proves it."""

__version__ = "0.1.0"
__all__ = ["__version__"]
