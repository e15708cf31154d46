"""KeyRing: keys on disk (0600), RFC 7638 kids, JWKS with public members only, rotation."""

from __future__ import annotations

import json
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from bastion.auth.keys import Algorithm, KeyRing, public_jwk, thumbprint
from bastion.errors import ConfigError

ALGS = ["ES256", "RS256", "EdDSA"]
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def ring_at(path: Path, alg: Algorithm = "ES256", **kwargs: Any) -> KeyRing:
    return KeyRing(path / "keys", alg=alg, rsa_bits=2048, **kwargs)


# --- RFC 7638 thumbprints -------------------------------------------------------------------


def test_thumbprint_matches_the_rfc_7638_example() -> None:
    # RFC 7638 §3.1: the RSA key of RFC 7517 Appendix A.1 and its SHA-256 thumbprint.
    n = (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_B"
        "JECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_F"
        "DW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4"
        "vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    )
    jwk = {"kty": "RSA", "n": n, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"}
    assert thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_thumbprint_matches_the_rfc_8037_ed25519_example() -> None:
    # RFC 8037 Appendix A.3.
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    assert thumbprint(jwk) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_ec_coordinates_keep_their_leading_zero_bytes() -> None:
    # RFC 7518 §6.2.1.2: x and y are always 32 bytes for P-256, even with leading zeros.
    for _ in range(64):
        key = ec.generate_private_key(ec.SECP256R1()).public_key()
        jwk = public_jwk(key)
        assert len(jwk["x"]) == len(jwk["y"]) == 43


# --- generation ------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
def test_ensure_generates_a_private_key_file_readable_only_by_the_owner(
    tmp_path: Path, alg: Algorithm
) -> None:
    ring = ring_at(tmp_path, alg)
    key = ring.ensure()
    directory = tmp_path / "keys"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    pem = directory / f"{key.kid}.pem"
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    loaded = serialization.load_pem_private_key(pem.read_bytes(), password=None)
    expected = {"ES256": ec.EllipticCurvePrivateKey, "RS256": rsa.RSAPrivateKey}.get(
        alg, ed25519.Ed25519PrivateKey
    )
    assert isinstance(loaded, expected)
    assert key.kid == thumbprint(public_jwk(loaded.public_key()))  # type: ignore[arg-type]
    # ring.json holds public facts only
    assert "BEGIN" not in (directory / "ring.json").read_text()


def test_ensure_is_idempotent_and_keeps_the_key(tmp_path: Path) -> None:
    first = ring_at(tmp_path).ensure()
    again = ring_at(tmp_path).ensure()
    assert again.kid == first.kid
    assert len(list((tmp_path / "keys").glob("*.pem"))) == 1


def test_concurrent_starters_create_exactly_one_key(tmp_path: Path) -> None:
    kids: list[str] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        ring = ring_at(tmp_path)
        barrier.wait()
        kids.append(ring.ensure().kid)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(kids)) == 1
    assert len(list((tmp_path / "keys").glob("*.pem"))) == 1


def test_loading_without_keys_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no signing keys"):
        ring_at(tmp_path).load()


def test_a_key_file_that_does_not_match_its_kid_is_refused(tmp_path: Path) -> None:
    key = ring_at(tmp_path).ensure()
    other = ec.generate_private_key(ec.SECP256R1())
    pem = tmp_path / "keys" / f"{key.kid}.pem"
    pem.write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ConfigError, match="does not match its kid"):
        ring_at(tmp_path).load()


def test_a_corrupt_ring_file_is_one_clear_error(tmp_path: Path) -> None:
    ring_at(tmp_path).ensure()
    (tmp_path / "keys" / "ring.json").write_text("{not json")
    with pytest.raises(ConfigError, match="unreadable key ring"):
        ring_at(tmp_path).load()


def test_keys_of_another_algorithm_are_not_used(tmp_path: Path) -> None:
    es = ring_at(tmp_path, "ES256").ensure()
    rs_ring = ring_at(tmp_path, "RS256")
    rs = rs_ring.ensure()
    assert rs.kid != es.kid and rs.alg == "RS256"
    assert rs_ring.get(es.kid) is None  # an ES256 key never verifies while RS256 is pinned
    assert [k["kid"] for k in rs_ring.jwks()["keys"]] == [rs.kid]


# --- JWKS ------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
def test_jwks_lists_public_members_only_with_kid_alg_and_use(
    tmp_path: Path, alg: Algorithm
) -> None:
    ring = ring_at(tmp_path, alg)
    key = ring.ensure()
    (entry,) = ring.jwks()["keys"]
    assert entry["kid"] == key.kid
    assert entry["alg"] == alg
    assert entry["use"] == "sig"
    assert not PRIVATE_MEMBERS & set(entry)
    expected = {
        "ES256": {"kty", "crv", "x", "y"},
        "RS256": {"kty", "n", "e"},
        "EdDSA": {"kty", "crv", "x"},
    }[alg]
    assert set(entry) == expected | {"kid", "alg", "use"}
    assert thumbprint(entry) == key.kid


# --- rotation --------------------------------------------------------------------------------


def test_rotate_signs_with_a_new_key_and_keeps_the_old_one_until_its_tokens_expire(
    tmp_path: Path,
) -> None:
    clock = Clock()
    ring = ring_at(tmp_path, token_ttl=900, leeway=30, clock=clock)
    old = ring.ensure()
    new = ring.rotate()
    assert new.kid != old.kid
    assert ring.active.kid == new.kid
    assert [k["kid"] for k in ring.jwks()["keys"]] == [new.kid, old.kid]
    assert ring.get(old.kid) is not None
    # Just before the last token of the old key can have expired: still there.
    clock.now += 900 + 30 - 1
    ring.load()
    assert ring.get(old.kid) is not None
    # After that, it is gone from the JWKS and from verification.
    clock.now += 2
    ring.load()
    assert ring.get(old.kid) is None
    assert [k["kid"] for k in ring.jwks()["keys"]] == [new.kid]


def test_a_later_rotation_deletes_expired_key_files(tmp_path: Path) -> None:
    clock = Clock()
    ring = ring_at(tmp_path, token_ttl=900, clock=clock)
    first = ring.ensure()
    ring.rotate()
    clock.now += 3600
    ring.rotate()
    assert not (tmp_path / "keys" / f"{first.kid}.pem").exists()
    entries = json.loads((tmp_path / "keys" / "ring.json").read_text())["keys"]
    assert first.kid not in {e["kid"] for e in entries}


def test_another_process_rotation_is_picked_up_by_refresh(tmp_path: Path) -> None:
    worker = ring_at(tmp_path, reload_interval=0.0)
    old = worker.ensure()
    rotated = ring_at(tmp_path).rotate()  # e.g. `bastion keys rotate` in another process
    assert worker.active.kid == old.kid  # not yet looked
    assert worker.refresh() is True
    assert worker.active.kid == rotated.kid
    assert worker.get(old.kid) is not None
    assert worker.refresh() is False  # nothing changed since


def test_refresh_checks_the_disk_at_most_once_per_interval(tmp_path: Path) -> None:
    worker = ring_at(tmp_path, reload_interval=3600.0)
    worker.ensure()
    ring_at(tmp_path).rotate()
    assert worker.refresh() is False  # a flood of unknown kids cannot hammer the disk
