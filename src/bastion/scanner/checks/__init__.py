"""Controls, one module per contract category. Each module registers its checks at import.

``CHECK_MODULES`` is the list :func:`bastion.scanner.registry.load_default_checks` imports; a
module missing from disk is skipped (so ``tls`` can land separately).
"""

from __future__ import annotations

CHECK_MODULES: tuple[str, ...] = (
    "tls",
    "https",
    "headers",
    "cookies",
    "cors",
    "methods",
    "disclosure",
    "exposure",
    "auth",
    "jwt",
    "ratelimit",
    "versioning",
)
