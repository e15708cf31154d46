"""The key-encryption key: accepted spellings, AES-256-GCM sealing bound to kid and alg."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable

import pytest

from bastion.auth.key_encryption import (
    KEY_BYTES,
    NONCE_BYTES,
    KeyEncryptionKey,
    SealBroken,
    generate,
)

KID, ALG = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs", "ES256"
PLAINTEXT = b"0\x81\x87\x02\x01\x000\x13 a PKCS#8 private key " + bytes(range(40))


def kek() -> KeyEncryptionKey:
    return KeyEncryptionKey(secrets.token_bytes(KEY_BYTES))


# --- the key as configured ------------------------------------------------------------------


def test_generate_gives_43_base64url_characters_of_32_random_bytes() -> None:
    text = generate()
    assert len(text) == 43 and set(text) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )
    assert KeyEncryptionKey.parse(text).key_id != KeyEncryptionKey.parse(generate()).key_id


@pytest.mark.parametrize(
    "spell",
    [
        lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=").decode(),  # token_urlsafe(32)
        lambda raw: base64.urlsafe_b64encode(raw).decode(),  # padded base64url
        lambda raw: base64.b64encode(raw).decode() + "\n",  # `openssl rand -base64 32` output
        lambda raw: "  " + base64.b64encode(raw).decode().rstrip("=") + "\r\n",
    ],
)
def test_base64url_and_base64_spellings_name_the_same_key(spell: Callable[[bytes], str]) -> None:
    raw = secrets.token_bytes(KEY_BYTES)
    parsed = KeyEncryptionKey.parse(spell(raw))
    assert parsed.key_id == KeyEncryptionKey(raw).key_id


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "is empty"),
        ("   \n", "is empty"),
        (base64.urlsafe_b64encode(secrets.token_bytes(16)).decode(), "decodes to 16 bytes"),
        (base64.urlsafe_b64encode(secrets.token_bytes(64)).decode(), "decodes to 64 bytes"),
        (secrets.token_hex(32), "decodes to 48 bytes"),  # hex is not the format
        ("A" * 43, "placeholder"),
        (base64.b64encode(b"0123456789" * 3 + b"01").decode(), "placeholder"),
        (generate()[:-1] + "!", "is not base64url"),
        (generate()[:20] + " " + generate()[:23], "is not base64url"),
    ],
    ids=["empty", "blank", "16-bytes", "64-bytes", "hex", "AAAA", "digits", "bang", "space"],
)
def test_a_bad_key_is_refused_saying_why_without_quoting_it(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as refused:
        KeyEncryptionKey.parse(text)
    message = str(refused.value)
    assert "bastion keys generate-kek" in message
    if text.strip():
        assert text.strip() not in message


def test_repr_and_key_id_never_reveal_the_key() -> None:
    raw = secrets.token_bytes(KEY_BYTES)
    key = KeyEncryptionKey(raw)
    shown = repr(key) + key.key_id
    for spelled in (raw.hex(), base64.b64encode(raw).decode(), generate()):
        assert spelled not in shown
    assert len(key.key_id) == 16 and key.key_id == KeyEncryptionKey(raw).key_id


# --- sealing ----------------------------------------------------------------------------------


def test_seal_then_open_gives_the_plaintext_and_the_ciphertext_hides_it() -> None:
    key = kek()
    sealed = key.seal(PLAINTEXT, kid=KID, alg=ALG)
    assert PLAINTEXT not in sealed and PLAINTEXT[20:40] not in sealed
    assert len(sealed) == 1 + NONCE_BYTES + len(PLAINTEXT) + 16
    assert key.open(sealed, kid=KID, alg=ALG) == PLAINTEXT


def test_two_seals_of_one_key_differ_random_nonce() -> None:
    key = kek()
    first, second = (key.seal(PLAINTEXT, kid=KID, alg=ALG) for _ in range(2))
    assert first != second and first[1:13] != second[1:13]


def test_another_key_encryption_key_cannot_open_it() -> None:
    sealed = kek().seal(PLAINTEXT, kid=KID, alg=ALG)
    with pytest.raises(SealBroken):
        kek().open(sealed, kid=KID, alg=ALG)


def test_a_sealed_key_moved_to_another_kid_is_refused() -> None:
    # The row swap: the bytes are genuine, but they were sealed for another row.
    key = kek()
    sealed = key.seal(PLAINTEXT, kid=KID, alg=ALG)
    with pytest.raises(SealBroken):
        key.open(sealed, kid="another-kid", alg=ALG)


@pytest.mark.parametrize("other_alg", ["RS256", "EdDSA", "es256", "ES256\x00"])
def test_a_sealed_key_relabelled_with_another_algorithm_is_refused(other_alg: str) -> None:
    key = kek()
    sealed = key.seal(PLAINTEXT, kid=KID, alg=ALG)
    with pytest.raises(SealBroken):
        key.open(sealed, kid=KID, alg=other_alg)


@pytest.mark.parametrize("position", [0, 1, 12, 13, 40, -1])
def test_any_flipped_bit_is_refused(position: int) -> None:
    key = kek()
    sealed = bytearray(key.seal(PLAINTEXT, kid=KID, alg=ALG))
    sealed[position] ^= 0x01
    with pytest.raises(SealBroken):
        key.open(bytes(sealed), kid=KID, alg=ALG)


@pytest.mark.parametrize("sealed", [b"", b"\x01", b"\x01" + bytes(NONCE_BYTES + 15)])
def test_truncated_input_is_refused(sealed: bytes) -> None:
    with pytest.raises(SealBroken):
        kek().open(sealed, kid=KID, alg=ALG)


def test_a_key_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        KeyEncryptionKey(secrets.token_bytes(16))
