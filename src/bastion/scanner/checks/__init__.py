"""Controls, one module per contract category. Each module registers its checks at import.

``CHECK_MODULES`` is the list :func:`bastion.scanner.registry.load_default_checks` imports; a
module missing from disk is skipped (so ``tls`` can land separately).
"""

from __future__ import annotations

from bastion.scanner.model import CATEGORIES

# One module per contract category, named after it (the category list lives in model.py).
# Then the controls that judge the whole API map (per operation, two identities), whose ids
# still start with their category.
CHECK_MODULES: tuple[str, ...] = (*CATEGORIES, "operations", "authorization")
