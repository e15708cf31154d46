"""Searching a database dump (or any bytes) for private signing keys in clear."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from bastion.auth.keys import PrivateKey


def secret_material(key: PrivateKey) -> dict[str, bytes]:
    """Byte strings that would reveal *key*: its encodings and its private numbers."""
    found = {
        "pem": key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        "der": key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    }
    if isinstance(key, ec.EllipticCurvePrivateKey):
        found["d"] = key.private_numbers().private_value.to_bytes(32, "big")
    elif isinstance(key, rsa.RSAPrivateKey):
        numbers = key.private_numbers()
        for name in ("d", "p", "q"):
            value = getattr(numbers, name)
            found[name] = value.to_bytes((value.bit_length() + 7) // 8, "big")
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        found["seed"] = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
    return found


def spellings(secret: bytes) -> list[bytes]:
    """How *secret*, or a 16-byte piece of it, could appear: raw, hex (a bytea in a dump),
    base64 and base64url."""
    out = []
    for part in (secret, secret[8:24]):
        out += [
            part,
            part.hex().encode(),
            part.hex().upper().encode(),
            base64.b64encode(part)[:-4],
            base64.urlsafe_b64encode(part).rstrip(b"=")[:-4],
        ]
    return out


def assert_no_key_in_clear(haystack: bytes, keys: list[PrivateKey]) -> None:
    """Fail if *haystack* holds a PEM private key or any spelling of one of *keys*."""
    assert keys, "nothing to look for"
    assert b"PRIVATE KEY" not in haystack
    for key in keys:
        for name, secret in secret_material(key).items():
            for spelled in spellings(secret):
                assert spelled not in haystack, f"{type(key).__name__} {name} found in clear"
