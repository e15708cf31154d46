"""The service's view of a verified token (``caller_of``): its own token shape only."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from bastion.auth.bearer import RefusedToken
from bastion.auth.principal import Principal
from bastion.service.deps import Caller, caller_of

USER = uuid.uuid4()


def principal(**overrides: Any) -> Principal:
    claims = {"sub": str(USER), "role": "user", "jti": "abc", "type": "access", "iat": 1700000000}
    claims.update(overrides)
    return Principal.from_claims({k: v for k, v in claims.items() if v is not None})


def test_a_service_token_gives_its_caller() -> None:
    caller = caller_of(principal())
    assert caller == Caller(USER, "user", "abc", 1700000000, principal())


@pytest.mark.parametrize("kind", ["refresh", "reset", "id", "ACCESS", "access ", None])
def test_another_kind_of_token_is_refused(kind: str | None) -> None:
    # RFC 8725 §3.12: a refresh, reset or ID token must never pass as an access token.
    with pytest.raises(RefusedToken) as caught:
        caller_of(principal(type=kind))
    assert caught.value.status == 401


@pytest.mark.parametrize("sub", ["alice", "42", "not-a-uuid-0000"])
def test_a_subject_that_is_not_a_uuid_is_refused(sub: str) -> None:
    with pytest.raises(RefusedToken) as caught:
        caller_of(principal(sub=sub))
    assert caught.value.detail == "sub is not a UUID"


@pytest.mark.parametrize(
    ("name", "value"),
    [("role", None), ("role", 7), ("jti", None), ("jti", ""), ("iat", None), ("iat", "1")],
)
def test_role_jti_and_iat_are_required(name: str, value: Any) -> None:
    with pytest.raises(RefusedToken):
        caller_of(principal(**{name: value}))
