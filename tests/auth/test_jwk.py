"""JWKs into verification keys: use / key_ops / alg honoured, one algorithm per key, the
low-S rule for every ECDSA curve, and keys an issuer must never hand us left out."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from bastion.auth import jwk as J
from bastion.auth.keys import PrivateKey, b64url, public_jwk
from bastion.errors import ConfigError
from tests.auth import forge

EC256 = ec.generate_private_key(ec.SECP256R1())
EC384 = ec.generate_private_key(ec.SECP384R1())
EC521 = ec.generate_private_key(ec.SECP521R1())
RSA2048 = rsa.generate_private_key(65537, 2048)
ED25519 = ed25519.Ed25519PrivateKey.generate()
ED448 = ed448.Ed448PrivateKey.generate()


def ec_jwk(private: ec.EllipticCurvePrivateKey, **members: Any) -> dict[str, Any]:
    numbers = private.public_key().public_numbers()
    size = (private.curve.key_size + 7) // 8
    crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}[private.curve.name]
    jwk = {
        "kty": "EC",
        "crv": crv,
        "x": b64url(numbers.x.to_bytes(size, "big")),
        "y": b64url(numbers.y.to_bytes(size, "big")),
        "kid": "k",
    }
    jwk.update(members)
    return jwk


def okp_jwk(
    private: ed448.Ed448PrivateKey | ed25519.Ed25519PrivateKey, **members: Any
) -> dict[str, Any]:
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    crv = "Ed448" if isinstance(private, ed448.Ed448PrivateKey) else "Ed25519"
    return {"kty": "OKP", "crv": crv, "x": b64url(raw), "kid": "k", **members}


def rsa_jwk(**members: Any) -> dict[str, Any]:
    return {**public_jwk(RSA2048.public_key()), "kid": "k", **members}


ALL = list(J.ALGORITHMS)


# --- the pinned list ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "algorithms",
    [
        ["none"],
        ["NONE"],
        ["HS256"],
        ["RS256", "HS512"],
        ["hs384"],
        [],
        ["ES256K"],
        ["RSA-OAEP"],
        "RS256",
    ],
)
def test_unsigned_hmac_unknown_or_empty_lists_are_refused(algorithms: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        J.pinned_algorithms(algorithms)
    assert caught.value.name == "algorithms"


def test_the_pinned_list_keeps_its_order_once() -> None:
    assert J.pinned_algorithms(["PS256", "RS256", "PS256"]) == ("PS256", "RS256")


# --- binding a key to one algorithm -----------------------------------------------------------


@pytest.mark.parametrize(
    ("jwk", "alg"),
    [
        (ec_jwk(EC256), "ES256"),
        (ec_jwk(EC384), "ES384"),
        (ec_jwk(EC521), "ES512"),
        (okp_jwk(ED25519), "EdDSA"),
        (okp_jwk(ED448), "EdDSA"),
        (rsa_jwk(), "RS256"),  # the first RSA algorithm of the pinned order
    ],
)
def test_a_key_without_alg_is_bound_to_the_first_pinned_algorithm_it_fits(
    jwk: dict[str, Any], alg: str
) -> None:
    assert J.verification_key(jwk, ALL).alg == alg


def test_an_rsa_key_without_alg_follows_the_pinned_order() -> None:
    assert J.verification_key(rsa_jwk(), ["PS256", "RS256"]).alg == "PS256"


@pytest.mark.parametrize(
    ("jwk", "reason"),
    [
        (rsa_jwk(alg="ES256"), "cannot be used with ES256"),  # key/alg mismatch
        (ec_jwk(EC256, alg="ES384"), "cannot be used with ES384"),  # wrong curve for the alg
        (ec_jwk(EC256, alg="RS256"), "cannot be used with RS256"),
        (okp_jwk(ED25519, alg="ES256"), "cannot be used with ES256"),
        (rsa_jwk(alg="HS256"), "not one of the pinned"),
        (rsa_jwk(alg="RSA-OAEP"), "not one of the pinned"),
        (rsa_jwk(use="enc"), "use is 'enc'"),
        (rsa_jwk(key_ops=["encrypt"]), "key_ops"),
        (rsa_jwk(key_ops="verify"), "key_ops"),
        ({"kty": "oct", "k": "c2VjcmV0", "kid": "k"}, "symmetric"),
        ({**rsa_jwk(), "d": "AQAB"}, "private key material"),
        ({**ec_jwk(EC256), "d": "AQAB"}, "private key material"),
        ({"kty": "EC", "crv": "P-256K", "x": "AA", "y": "AA"}, "unsupported curve"),
        ({"kty": "OKP", "crv": "X25519", "x": b64url(bytes(32))}, "unsupported OKP curve"),
        ({"kty": "XYZ"}, "unsupported key type"),
        ({**ec_jwk(EC256), "y": ec_jwk(EC256)["x"]}, "not on the curve"),
        ({**ec_jwk(EC256), "x": b64url(bytes(31))}, "wrong length"),
        ({**ec_jwk(EC256), "x": "!!!"}, "not base64url"),
        ({**ec_jwk(EC256), "x": 5}, "missing or not a string"),
        (public_jwk(rsa.generate_private_key(65537, 1024).public_key()), "under 2048"),
        ({**rsa_jwk(), "e": b64url(b"\x02")}, "exponent"),
        ({**rsa_jwk(), "kid": 7}, "kid"),
        ({**rsa_jwk(), "kid": "k" * 500}, "kid"),
        ("not a key", "not a JSON object"),
    ],
)
def test_keys_that_must_not_be_used_are_left_out(jwk: Any, reason: str) -> None:
    with pytest.raises(J.UnusableKey, match=reason):
        J.verification_key(jwk, ALL)


def test_a_key_with_alg_outside_the_pinned_list_is_left_out() -> None:
    with pytest.raises(J.UnusableKey):
        J.verification_key(ec_jwk(EC256, alg="ES256"), ["RS256"])
    with pytest.raises(J.UnusableKey):
        J.verification_key(ec_jwk(EC256), ["RS256"])  # no alg, and no pinned one fits


def test_use_sig_key_ops_verify_and_padded_members_are_fine() -> None:
    padded = ec_jwk(EC256, use="sig", key_ops=["verify"])
    padded["x"] += "="  # stray padding on key material from a trusted issuer is tolerated
    key = J.verification_key(padded, ALL)
    assert key.alg == "ES256" and key.kid == "k"


def test_a_key_set_skips_unusable_keys_and_keeps_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    document = {
        "keys": [
            rsa_jwk(kid="enc", use="enc"),  # Keycloak publishes its encryption key too
            rsa_jwk(kid="sig", alg="RS256", use="sig"),
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
        ]
    }
    with caplog.at_level(logging.INFO, logger="bastion.auth"):
        keys = J.key_set(document, ALL)
    assert set(keys.by_kid) == {"sig"}
    assert "key 0 (kid 'enc') left out: use is 'enc'" in caplog.text
    assert "key 2 (kid 'hmac') left out: symmetric" in caplog.text


def test_a_key_set_with_no_usable_key_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="bastion.auth"):
        keys = J.key_set({"keys": [rsa_jwk(use="enc")]}, ALL)
    assert not keys.by_kid
    assert "no usable key" in caplog.text


def test_a_duplicate_kid_keeps_the_first_key() -> None:
    first, second = ec_jwk(EC256, kid="same"), rsa_jwk(kid="same")
    keys = J.key_set({"keys": [first, second]}, ALL)
    assert keys.by_kid["same"].alg == "ES256"


@pytest.mark.parametrize("document", [[], {"keys": {}}, {"nokeys": []}, {"keys": [{}] * 101}])
def test_a_document_that_is_not_a_key_set_is_refused(document: Any) -> None:
    with pytest.raises(ValueError):
        J.key_set(document, ALL)


def test_a_token_without_kid_uses_the_only_key_of_its_algorithm() -> None:
    keys = J.key_set({"keys": [ec_jwk(EC256, kid=None), rsa_jwk(kid="a"), rsa_jwk(kid="b")]}, ALL)
    assert keys.get(None, "ES256") is not None
    assert keys.get(None, "RS256") is None  # two RSA keys: the token must say which


# --- signatures ---------------------------------------------------------------------------------

SIGNERS: list[tuple[str, Any, dict[str, Any]]] = [
    ("ES256", EC256, ec_jwk(EC256)),
    ("ES384", EC384, ec_jwk(EC384)),
    ("ES512", EC521, ec_jwk(EC521)),
    ("RS256", RSA2048, rsa_jwk(alg="RS256")),
    ("RS384", RSA2048, rsa_jwk(alg="RS384")),
    ("RS512", RSA2048, rsa_jwk(alg="RS512")),
    ("PS256", RSA2048, rsa_jwk(alg="PS256")),
    ("PS384", RSA2048, rsa_jwk(alg="PS384")),
    ("PS512", RSA2048, rsa_jwk(alg="PS512")),
    ("EdDSA", ED25519, okp_jwk(ED25519)),
    ("EdDSA", ED448, okp_jwk(ED448)),
    ("Ed25519", ED25519, okp_jwk(ED25519, alg="Ed25519")),
    ("Ed448", ED448, okp_jwk(ED448, alg="Ed448")),
]

_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}


def sign(alg: str, private: Any, data: bytes) -> bytes:
    """A JWS signature; ECDSA in low-S form (R || S)."""
    if alg.startswith("ES"):
        size = (private.curve.key_size + 7) // 8
        r, s = decode_dss_signature(private.sign(data, ec.ECDSA(_HASHES[alg[2:]]())))
        n = J.curve_order(alg)
        s = min(s, n - s)
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if alg.startswith("PS"):
        from cryptography.hazmat.primitives.asymmetric import padding

        digest = _HASHES[alg[2:]]()
        pss = padding.PSS(mgf=padding.MGF1(_HASHES[alg[2:]]()), salt_length=digest.digest_size)
        signature: bytes = private.sign(data, pss, digest)
        return signature
    if alg.startswith("RS"):
        from cryptography.hazmat.primitives.asymmetric import padding

        signature = private.sign(data, padding.PKCS1v15(), _HASHES[alg[2:]]())
        return signature
    signature = private.sign(data)
    return signature


@pytest.mark.parametrize(
    ("alg", "private", "jwk"), SIGNERS, ids=lambda v: v if isinstance(v, str) else ""
)
def test_every_algorithm_verifies_its_own_and_refuses_a_changed_message(
    alg: str, private: Any, jwk: dict[str, Any]
) -> None:
    key = J.verification_key(jwk, [alg])
    signature = sign(alg, private, b"message")
    key.verify(signature, b"message")
    with pytest.raises(InvalidSignature):
        key.verify(signature, b"messagf")
    with pytest.raises(InvalidSignature):
        key.verify(signature[:-1], b"message")  # wrong length


@pytest.mark.parametrize(("alg", "private"), [("ES256", EC256), ("ES384", EC384), ("ES512", EC521)])
def test_the_curve_orders_are_right(alg: str, private: Any) -> None:
    # (r, n - s) verifies with OpenSSL exactly when n is the true order of the curve.
    digest = _HASHES[alg[2:]]
    r, s = decode_dss_signature(private.sign(b"m", ec.ECDSA(digest())))
    private.public_key().verify(
        encode_dss_signature(r, J.curve_order(alg) - s), b"m", ec.ECDSA(digest())
    )
    assert J.half_order(alg) == J.curve_order(alg) // 2


@pytest.mark.parametrize(("alg", "private"), [("ES256", EC256), ("ES384", EC384), ("ES512", EC521)])
def test_high_s_is_refused_unless_allowed(alg: str, private: Any) -> None:
    size = (private.curve.key_size + 7) // 8
    low = sign(alg, private, b"m")
    r, s = low[:size], int.from_bytes(low[size:], "big")
    high = r + (J.curve_order(alg) - s).to_bytes(size, "big")
    strict = J.verification_key(ec_jwk(private), [alg])
    lenient = J.verification_key(ec_jwk(private), [alg], low_s=False)
    strict.verify(low, b"m")
    with pytest.raises(InvalidSignature, match="high-S"):
        strict.verify(high, b"m")
    lenient.verify(high, b"m")  # the malleable twin is genuinely valid ECDSA
    lenient.verify(low, b"m")


def test_a_genuine_high_s_signature_is_named_once_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # An issuer that does not normalise S sees half its tokens refused: the operator is told
    # how to accept them, once per key; a forged high-S signature (it does not verify) is not.
    size = 32
    strict = J.verification_key(ec_jwk(EC256), ["ES256"])
    low = sign("ES256", EC256, b"m")
    r, s = low[:size], int.from_bytes(low[size:], "big")
    high = r + (J.curve_order("ES256") - s).to_bytes(size, "big")
    forged = r + (J.curve_order("ES256") - s - 1).to_bytes(size, "big")
    with caplog.at_level(logging.WARNING, logger="bastion.auth"):
        with pytest.raises(InvalidSignature, match="high-S"):
            strict.verify(forged, b"m")
        assert caplog.records == []
        for _ in range(3):
            with pytest.raises(InvalidSignature, match="high-S"):
                strict.verify(high, b"m")
    (record,) = caplog.records
    assert "require_low_s=False" in record.getMessage() and "ES256" in record.getMessage()


def test_ed25519_refuses_s_plus_l() -> None:
    # RFC 8032 §5.1.7: S must be < L; S + L would be a second encoding of one signature.
    ell = 2**252 + 27742317777372353535851937790883648493
    signature = ED25519.sign(b"m")
    s = int.from_bytes(signature[32:], "little") + ell
    key = J.verification_key(okp_jwk(ED25519), ["EdDSA"])
    with pytest.raises(InvalidSignature):
        key.verify(signature[:32] + s.to_bytes(32, "little"), b"m")


def test_signature_check_refuses_a_key_of_the_wrong_type() -> None:
    with pytest.raises(ConfigError):
        J.signature_check("ES256", RSA2048.public_key())
    assert not J.fits("RS256", rsa.generate_private_key(65537, 1024).public_key())


def test_forge_tokens_of_each_algorithm_verify() -> None:
    # The attacker toolbox signs the way real issuers do: a sanity check for the other tests.
    signers: list[tuple[str, PrivateKey]] = [
        ("ES256", EC256),
        ("RS256", RSA2048),
        ("EdDSA", ED25519),
    ]
    for alg, private in signers:
        data = b"a.b"
        signature = forge.sign_raw(private, alg, data)
        key = J.VerificationKey.build("k", alg, private.public_key(), low_s=False)
        key.verify(signature, data)


def test_the_jwk_is_not_modified() -> None:
    jwk = rsa_jwk(use="sig")
    before = copy.deepcopy(jwk)
    J.verification_key(jwk, ALL)
    assert jwk == before
