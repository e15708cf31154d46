"""The key-encryption key: signing keys sealed with AES-256-GCM before they leave the process.

Used where private signing keys are kept in a shared database (``BASTION_KEY_ENCRYPTION_KEY``
or ``BASTION_KEY_ENCRYPTION_KEY_FILE``, the same on every host). A dump or a read-only breach
of the database then yields no key that could sign a token.

* The key: 32 random bytes, written in base64url (43 characters, ``secrets.token_urlsafe(32)``)
  or standard base64 (``openssl rand -base64 32``); padding optional, nothing else accepted.
  A value that decodes to fewer distinct bytes than random data ever has is refused as a
  placeholder.
* A sealed key: ``version (1 byte) || nonce (12 bytes) || ciphertext || tag (16 bytes)``.
  The nonce is random (NIST SP 800-38D §8.2.2): a deployment seals a handful of keys per
  year, far below the 2**32 messages a random 96-bit nonce allows under one key.
* Associated data binds the sealed bytes to the key id and algorithm of their row (and to
  this purpose and format version): a sealed key moved to another row, or a row relabelled
  with another algorithm, fails authentication instead of being used (NIST SP 800-38D §3).
* :attr:`KeyEncryptionKey.key_id` names the key without revealing it (an HMAC-SHA256 of a
  fixed label): stored next to each sealed key, it tells "another host has another key" apart
  from "this row was tampered with".
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["KEY_BYTES", "KeyEncryptionKey", "SealBroken", "generate"]

KEY_BYTES = 32
NONCE_BYTES = 12
FORMAT_VERSION = b"\x01"
_PURPOSE = b"bastion signing key"
_KEY_ID_LABEL = b"bastion key-encryption-key id v1"
# A random 32-byte key has ~26-32 distinct byte values; fewer than 16 happens with
# probability far below 2**-100, so such a value is a placeholder ("AAAA...", "0000...").
_MIN_DISTINCT_BYTES = 16
HOW_TO_GENERATE = "generate one with `bastion keys generate-kek`"


class SealBroken(ValueError):
    """A sealed key failed authentication: another key-encryption key, or altered bytes."""


def generate() -> str:
    """A fresh key-encryption key, as the base64url text the settings take."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).rstrip(b"=").decode()


class KeyEncryptionKey:
    """An AES-256-GCM key that seals private signing keys bound to their ``kid`` and ``alg``."""

    __slots__ = ("_aead", "key_id")

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"must be {KEY_BYTES} bytes")
        if len(set(key)) < _MIN_DISTINCT_BYTES:
            raise ValueError(f"is a placeholder, not {KEY_BYTES} random bytes")
        self._aead = AESGCM(key)
        digest = hmac.new(key, _KEY_ID_LABEL, hashlib.sha256).digest()
        #: A public name of this key (16 hex digits), equal on hosts that share the key.
        self.key_id = digest[:8].hex()

    @classmethod
    def parse(cls, text: str) -> KeyEncryptionKey:
        """The key written as base64url or base64; ValueError saying why, never quoting it."""
        value = text.strip()
        standard = value.replace("-", "+").replace("_", "/").rstrip("=")
        if not standard:
            raise ValueError(f"is empty; {HOW_TO_GENERATE}")
        try:
            raw = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(
                f"is not base64url ({KEY_BYTES} random bytes, 43 characters); {HOW_TO_GENERATE}"
            ) from None
        if len(raw) != KEY_BYTES:
            raise ValueError(
                f"decodes to {len(raw)} bytes, not {KEY_BYTES}; {HOW_TO_GENERATE}"
            ) from None
        try:
            return cls(raw)
        except ValueError as exc:
            raise ValueError(f"{exc}; {HOW_TO_GENERATE}") from None

    def __repr__(self) -> str:
        return f"KeyEncryptionKey(key_id={self.key_id!r})"  # never the key itself

    def seal(self, plaintext: bytes, *, kid: str, alg: str) -> bytes:
        """*plaintext* encrypted and authenticated, bound to *kid* and *alg*."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext, _associated_data(kid, alg))
        return FORMAT_VERSION + nonce + sealed

    def open(self, sealed: bytes, *, kid: str, alg: str) -> bytes:
        """The plaintext of *sealed*, or :class:`SealBroken` if it does not authenticate
        under this key with this *kid* and *alg*."""
        if len(sealed) < 1 + NONCE_BYTES + 16 or sealed[:1] != FORMAT_VERSION:
            raise SealBroken("not a sealed key of a known format")
        nonce, body = sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, body, _associated_data(kid, alg))
        except InvalidTag:
            raise SealBroken("authentication failed") from None


def _associated_data(kid: str, alg: str) -> bytes:
    # NUL-separated: neither a kid (base64url) nor an alg contains NUL, so no two
    # (kid, alg) pairs produce the same bytes.
    return b"\x00".join((_PURPOSE, FORMAT_VERSION, alg.encode(), kid.encode()))
