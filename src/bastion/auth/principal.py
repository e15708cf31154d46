"""The authenticated caller, as every protected route sees it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from bastion.auth.errors import InvalidClaim, MissingClaim


def _scope_set(value: object, name: str) -> frozenset[str]:
    """Scopes from a space-separated string (RFC 8693 §4.2, RFC 9068 §2.2.3) or a list of
    strings (Okta's ``scp``)."""
    if type(value) is str:
        return frozenset(value.split())
    if type(value) is list and all(type(item) is str for item in value):
        return frozenset(value)
    raise InvalidClaim(f"{name} is neither a space-separated string nor a list of strings")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: built only from a verified token.

    * ``subject``: the ``sub`` claim, any non-empty string (a user id, ``"42"``, an email, a
      client id for machine tokens);
    * ``scopes``: from the ``scope`` claim (space-separated), or ``scp`` where the issuer
      sends that instead (Entra ID as a string, Okta as a list); empty when neither is there;
    * ``claims``: every verified claim, read-only;
    * ``role``: the ``role`` claim when the token has a string one (``None`` otherwise).
    """

    subject: str
    scopes: frozenset[str] = frozenset()
    claims: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def role(self) -> str | None:
        role = self.claims.get("role")
        return role if type(role) is str else None

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> Principal:
        """The principal of verified *claims*; ``sub`` is required (a principal has a subject)."""
        subject = claims.get("sub")
        if subject is None:
            raise MissingClaim("sub is required")
        if type(subject) is not str or not subject:
            raise InvalidClaim("sub is not a non-empty string")
        if "scope" in claims:
            scopes = _scope_set(claims["scope"], "scope")
        elif "scp" in claims:
            scopes = _scope_set(claims["scp"], "scp")
        else:
            scopes = frozenset()
        return cls(subject, scopes, MappingProxyType(claims))
