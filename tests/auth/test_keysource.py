"""Key sources: a static set checked at start, bastion's key ring (rotation picked up)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from bastion.auth.keys import KeyRing, public_jwk
from bastion.auth.keysource import RingKeys, StaticKeys
from bastion.auth.tokens import TokenIssuer
from bastion.errors import ConfigError

KEY = ec.generate_private_key(ec.SECP256R1())


def test_a_static_set_gives_its_keys_and_never_refetches() -> None:
    keys = StaticKeys({"keys": [{**public_jwk(KEY.public_key()), "kid": "a"}]}, ["ES256"])
    assert keys.get("a", "ES256") is not None
    assert keys.get("b", "ES256") is None
    assert keys.refetch() is None


@pytest.mark.parametrize("jwks", [{"keys": []}, {"keys": "x"}, {}, {"keys": [{"kty": "oct"}]}])
def test_a_static_set_without_a_usable_key_is_a_config_error(jwks: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as caught:
        StaticKeys(jwks, ["ES256"])
    assert caught.value.name == "jwks"


def test_the_ring_source_follows_a_rotation_by_another_process(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path / "keys", reload_interval=0.0)
    first = ring.ensure()
    source = RingKeys(ring)
    changes: list[bool] = []
    source.on_change(lambda: changes.append(True))
    assert source.get(first.kid, "ES256") is not None
    assert source.get(None, "ES256") is None  # bastion's tokens always name their key
    other = KeyRing(tmp_path / "keys")  # `bastion keys rotate` elsewhere
    second = other.rotate()
    token = TokenIssuer(other, issuer="i", audience="a").issue(uuid.uuid4(), "user").token
    assert token  # signed by the new key
    found = source.get(second.kid, "ES256")
    assert found is not None and found.kid == second.kid
    assert changes  # the verifier's header cache is told
    assert source.get("unknown", "ES256") is None
