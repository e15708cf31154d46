"""Principal: subject, scopes (``scope`` or ``scp``), read-only claims, role."""

from __future__ import annotations

from typing import Any

import pytest

from bastion.auth import errors as E
from bastion.auth.principal import Principal


@pytest.mark.parametrize(
    ("claims", "scopes"),
    [
        ({"scope": "a b  c"}, {"a", "b", "c"}),  # RFC 8693 §4.2: space-separated
        ({"scope": ""}, set()),
        ({"scp": ["a", "b"]}, {"a", "b"}),  # Okta
        ({"scp": "a b"}, {"a", "b"}),  # Entra ID
        ({"scope": "a", "scp": ["b"]}, {"a"}),  # scope wins when both are sent
        ({}, set()),
    ],
)
def test_scopes(claims: dict[str, Any], scopes: set[str]) -> None:
    assert Principal.from_claims({"sub": "s", **claims}).scopes == scopes


@pytest.mark.parametrize("value", [7, ["a", 1], {"a": 1}, None, True])
def test_scopes_of_another_shape_refuse_the_token(value: Any) -> None:
    with pytest.raises(E.InvalidClaim):
        Principal.from_claims({"sub": "s", "scope": value})


@pytest.mark.parametrize(
    ("role", "expected"), [("admin", "admin"), (None, None), (["admin"], None)]
)
def test_role_is_the_role_claim_when_it_is_a_string(role: Any, expected: str | None) -> None:
    claims = {"sub": "s"} if role is None else {"sub": "s", "role": role}
    assert Principal.from_claims(claims).role == expected


def test_claims_are_read_only_and_principals_compare_and_hash() -> None:
    principal = Principal.from_claims({"sub": "s", "scope": "a"})
    with pytest.raises(TypeError):
        principal.claims["sub"] = "admin"  # type: ignore[index]
    with pytest.raises(AttributeError):
        principal.subject = "admin"  # type: ignore[misc]
    same = Principal.from_claims({"sub": "s", "scope": "a"})
    assert principal == same and hash(principal) == hash(same)
    assert {principal, same} == {principal}


@pytest.mark.parametrize(
    ("claims", "error"),
    [({}, E.MissingClaim), ({"sub": ""}, E.InvalidClaim), ({"sub": 5}, E.InvalidClaim)],
)
def test_a_principal_needs_a_string_subject(claims: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        Principal.from_claims(claims)
