"""bastion: a security stack for Python REST APIs, and the scanner that proves it."""

from bastion.auth.bearer import BearerAuth  # lib-tokens: bearer tokens from any issuer
from bastion.auth.principal import Principal

__version__ = "0.1.0"
__all__ = ["BearerAuth", "Principal", "__version__"]
