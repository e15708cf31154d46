"""Verification keys: the pinned algorithms, one signature check per key, keys from JWKs.

A :class:`VerificationKey` is one public key bound to exactly one algorithm (RFC 8725 §3.1)
with its signature check built once: the padding and hash objects, the curve order for the
low-S rule, the expected signature length. :func:`key_set` turns a JWK Set (RFC 7517 §5)
into a :class:`KeySet`, honouring each key's ``use``, ``key_ops`` and ``alg`` (§4.2-§4.4):

* a key whose ``use`` is not ``sig``, whose ``key_ops`` lack ``verify``, whose ``alg`` is not
  one of the pinned algorithms or does not fit its type (an RSA key labelled ``ES256``), a
  symmetric (``oct``) key, a key carrying private members, an RSA key under 2048 bits or a
  point not on its curve is left out — never "repaired";
* a key without ``alg`` is bound to the first pinned algorithm its type fits (an EC key's
  curve names it; an RSA key takes the first of RS*/PS* in the pinned order);
* a ``kid`` is only ever a dictionary key, whatever the string holds (RFC 8725 §3.10).

ECDSA signatures are refused when ``s > n/2`` (high-S) if the key asks for it: ``s`` and
``n - s`` both verify the same message, so without the rule one set of claims has two valid
token strings (signature malleability; Bitcoin's BIP 62 rule, and the contract's "Identity and
token hygiene"). Ed25519 needs no such rule: OpenSSL refuses ``S >= L`` (RFC 8032 §5.1.7).
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from bastion.errors import ConfigError

log = logging.getLogger("bastion.auth")

PublicKey = (
    ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)
Verify = Callable[[bytes, bytes], None]
"""``verify(signature, signing_input)``: returns, or raises ``InvalidSignature``."""

MIN_RSA_BITS = 2048  # RFC 7518 §3.3
MAX_KEYS = 100  # a JWKS holds a handful; far more is a broken or hostile document
MAX_KID_LENGTH = 128

# Curve orders n (SEC 2 §2.4.2, §2.5.1, §2.6.1; FIPS 186-5), for the low-S rule.
_P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_P384_N = int(
    "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973",
    16,
)
_P521_N = int(
    "01FF" + "FFFFFFFF" * 7 + "FFFFFFFA"
    "51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409",
    16,
)


@dataclass(frozen=True, slots=True)
class _ECDSA:
    curve: type[ec.EllipticCurve]
    crv: str
    size: int  # bytes of r and of s (RFC 7518 §3.4)
    order: int
    hash: type[hashes.HashAlgorithm]


_ECDSA_ALGS = {
    "ES256": _ECDSA(ec.SECP256R1, "P-256", 32, _P256_N, hashes.SHA256),
    "ES384": _ECDSA(ec.SECP384R1, "P-384", 48, _P384_N, hashes.SHA384),
    "ES512": _ECDSA(ec.SECP521R1, "P-521", 66, _P521_N, hashes.SHA512),
}
_RSA_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "RS256": hashes.SHA256,
    "RS384": hashes.SHA384,
    "RS512": hashes.SHA512,
    "PS256": hashes.SHA256,
    "PS384": hashes.SHA384,
    "PS512": hashes.SHA512,
}
# EdDSA (RFC 8037) covers both curves; Ed25519 / Ed448 are RFC 9864's fully specified names.
_EDDSA_CURVES = {"EdDSA": ("Ed25519", "Ed448"), "Ed25519": ("Ed25519",), "Ed448": ("Ed448",)}

ALGORITHMS: tuple[str, ...] = (*_ECDSA_ALGS, *_RSA_HASHES, *_EDDSA_CURVES)
"""Every algorithm a verifier may pin: asymmetric ones only."""
DEFAULT_ALGORITHMS: tuple[str, ...] = ("RS256", "ES256", "EdDSA")
"""What the major identity providers sign with (RS256), and bastion's own choices."""


def half_order(alg: str) -> int:
    """n/2 (rounded down) of an ECDSA algorithm's curve: the largest low-S value."""
    return _ECDSA_ALGS[alg].order // 2


def curve_order(alg: str) -> int:
    """The order n of an ECDSA algorithm's curve."""
    return _ECDSA_ALGS[alg].order


def pinned_algorithms(algorithms: Iterable[str], *, option: str = "algorithms") -> tuple[str, ...]:
    """The checked, de-duplicated list of algorithms a verifier accepts (RFC 8725 §3.1).

    ``none`` and the HMAC family are refused even when asked for: a verifier holding public
    keys must never treat one as a shared secret (CVE-2016-10555, CVE-2022-29217).
    """
    if isinstance(algorithms, str | bytes):
        raise ConfigError(option, "give a list of algorithm names, e.g. ['RS256']")
    pinned: list[str] = []
    for name in algorithms:
        if not isinstance(name, str):
            raise ConfigError(option, f"{name!r} is not an algorithm name")
        if name.lower() == "none":
            raise ConfigError(option, "'none' (unsigned tokens) is never accepted")
        if name.upper().startswith("HS"):
            raise ConfigError(
                option, f"{name} is a shared-secret (HMAC) algorithm; only asymmetric ones"
            )
        if name not in ALGORITHMS:
            raise ConfigError(option, f"unsupported algorithm {name!r} ({', '.join(ALGORITHMS)})")
        if name not in pinned:
            pinned.append(name)
    if not pinned:
        raise ConfigError(option, "pin at least one algorithm")
    return tuple(pinned)


def fits(alg: str, key: object) -> bool:
    """Whether *key* may be used with *alg* (type, curve and RSA size): RFC 8725 §3.1."""
    spec = _ECDSA_ALGS.get(alg)
    if spec is not None:
        return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, spec.curve)
    if alg in _RSA_HASHES:
        return isinstance(key, rsa.RSAPublicKey) and key.key_size >= MIN_RSA_BITS
    curves = _EDDSA_CURVES.get(alg, ())
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519" in curves
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448" in curves
    return False


def signature_check(alg: str, key: PublicKey, *, low_s: bool = True) -> Verify:
    """A function verifying (signature, signing input) for *key* used as *alg*.

    Everything that does not depend on the token is built here, once per key.
    """
    if not fits(alg, key):
        raise ConfigError("key", f"a {type(key).__name__} cannot be used with {alg}")
    spec = _ECDSA_ALGS.get(alg)
    if spec is not None and isinstance(key, ec.EllipticCurvePublicKey):
        ecdsa = ec.ECDSA(spec.hash())
        verify_ec = key.verify
        from_bytes = int.from_bytes
        size, length = spec.size, 2 * spec.size
        # s must be <= n/2 when low_s; otherwise any s (OpenSSL still refuses s >= n).
        s_limit = spec.order // 2 if low_s else spec.order
        hinted = False

        def check_ecdsa(signature: bytes, data: bytes) -> None:
            # JWS carries ECDSA as R || S, fixed width each (RFC 7518 §3.4); OpenSSL wants DER.
            if len(signature) != length:
                raise InvalidSignature("ECDSA signature has the wrong length")
            s = from_bytes(signature[size:], "big")
            der = encode_dss_signature(from_bytes(signature[:size], "big"), s)
            if s > s_limit:
                nonlocal hinted
                if not hinted and _verifies(verify_ec, der, data, ecdsa):
                    # A genuine high-S signature: most ECDSA signers do not normalise S, so
                    # half of such an issuer's tokens would be refused with no clue. Say so
                    # once per key (a forged token cannot reach this: it does not verify).
                    hinted = True
                    log.warning(
                        "a %s token verified only in its high-S form and was refused: if its "
                        "issuer does not normalise ECDSA signatures to low-S, construct "
                        "BearerAuth(..., require_low_s=False) to accept them",
                        alg,
                    )
                raise InvalidSignature("high-S ECDSA signature (malleable form)")
            verify_ec(der, data, ecdsa)

        return check_ecdsa
    if alg in _RSA_HASHES and isinstance(key, rsa.RSAPublicKey):
        digest = _RSA_HASHES[alg]()
        pad: padding.AsymmetricPadding = (
            padding.PKCS1v15()
            if alg.startswith("RS")
            # RFC 7518 §3.5: MGF1 with the same hash, salt as long as the hash output.
            else padding.PSS(mgf=padding.MGF1(_RSA_HASHES[alg]()), salt_length=digest.digest_size)
        )
        verify_rsa = key.verify
        rsa_length = (key.key_size + 7) // 8

        def check_rsa(signature: bytes, data: bytes) -> None:
            if len(signature) != rsa_length:
                raise InvalidSignature("RSA signature has the wrong length")
            verify_rsa(signature, data, pad, digest)

        return check_rsa
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return key.verify
    raise ConfigError("key", f"{alg} is not supported")  # unreachable after fits()


def _verifies(
    verify: Callable[[bytes, bytes, ec.EllipticCurveSignatureAlgorithm], None],
    der: bytes,
    data: bytes,
    ecdsa: ec.EllipticCurveSignatureAlgorithm,
) -> bool:
    try:
        verify(der, data, ecdsa)
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """One public key, the one algorithm it is used with, and its ready signature check."""

    kid: str | None
    alg: str
    public_key: PublicKey
    verify: Verify

    @classmethod
    def build(
        cls, kid: str | None, alg: str, public_key: PublicKey, *, low_s: bool = True
    ) -> VerificationKey:
        return cls(kid, alg, public_key, signature_check(alg, public_key, low_s=low_s))


@dataclass(frozen=True, slots=True)
class KeySet:
    """Keys by ``kid``; a token without ``kid`` may use the only key of its algorithm."""

    by_kid: Mapping[str, VerificationKey]
    sole: Mapping[str, VerificationKey]  # alg -> the one key of that algorithm, if only one

    @classmethod
    def of(cls, keys: Iterable[VerificationKey]) -> KeySet:
        by_kid: dict[str, VerificationKey] = {}
        per_alg: dict[str, list[VerificationKey]] = {}
        for key in keys:
            if key.kid is not None:
                if key.kid in by_kid:
                    log.warning("key set: duplicate kid %.64r; the first one is used", key.kid)
                    continue
                by_kid[key.kid] = key
            per_alg.setdefault(key.alg, []).append(key)
        sole = {alg: found[0] for alg, found in per_alg.items() if len(found) == 1}
        return cls(by_kid, sole)

    def get(self, kid: str | None, alg: str) -> VerificationKey | None:
        """The key a token with this header names, or ``None``."""
        if kid is None:
            return self.sole.get(alg)
        return self.by_kid.get(kid)


EMPTY = KeySet({}, {})


# --- JWK -> VerificationKey ----------------------------------------------------------------------


class UnusableKey(ValueError):
    """A JWK that must not be used (the message says why; it goes to the log)."""


def _member_bytes(jwk: Mapping[str, Any], name: str) -> bytes:
    """A base64url member of a JWK (RFC 7518 §6); stray padding is tolerated on keys."""
    value = jwk.get(name)
    if not isinstance(value, str) or not value:
        raise UnusableKey(f"member {name!r} missing or not a string")
    stripped = value.rstrip("=")
    try:
        return base64.b64decode(
            stripped.translate(_URLSAFE) + "=" * (-len(stripped) % 4), validate=True
        )
    except (binascii.Error, ValueError):
        raise UnusableKey(f"member {name!r} is not base64url") from None


_URLSAFE = str.maketrans("-_+/", "+/!!")  # '+' or '/' in the input is refused by validate


def _public_key(jwk: Mapping[str, Any]) -> PublicKey:
    kty = jwk.get("kty")
    if kty == "EC":
        crv = jwk.get("crv")
        spec = next((s for s in _ECDSA_ALGS.values() if s.crv == crv), None)
        if spec is None:
            raise UnusableKey(f"unsupported curve {str(crv)[:20]!r}")
        x, y = _member_bytes(jwk, "x"), _member_bytes(jwk, "y")
        if len(x) != spec.size or len(y) != spec.size:  # RFC 7518 §6.2.1.2: full length
            raise UnusableKey("x or y has the wrong length for the curve")
        numbers = ec.EllipticCurvePublicNumbers(
            int.from_bytes(x, "big"), int.from_bytes(y, "big"), spec.curve()
        )
        try:
            return numbers.public_key()  # refuses a point that is not on the curve
        except ValueError:
            raise UnusableKey("point is not on the curve") from None
    if kty == "RSA":
        n = int.from_bytes(_member_bytes(jwk, "n"), "big")
        e = int.from_bytes(_member_bytes(jwk, "e"), "big")
        if n.bit_length() < MIN_RSA_BITS:
            raise UnusableKey(f"RSA key under {MIN_RSA_BITS} bits")
        if e < 3 or e % 2 == 0 or e.bit_length() > 32:
            raise UnusableKey("unusual RSA public exponent")
        try:
            return rsa.RSAPublicNumbers(e, n).public_key()
        except ValueError:
            raise UnusableKey("invalid RSA public key") from None
    if kty == "OKP":
        crv = jwk.get("crv")
        x = _member_bytes(jwk, "x")
        try:
            if crv == "Ed25519":
                return ed25519.Ed25519PublicKey.from_public_bytes(x)
            if crv == "Ed448":
                return ed448.Ed448PublicKey.from_public_bytes(x)
        except ValueError:
            raise UnusableKey(f"invalid {crv} public key") from None
        raise UnusableKey(f"unsupported OKP curve {str(crv)[:20]!r}")
    if kty == "oct":
        raise UnusableKey("symmetric (oct) keys are never used")
    raise UnusableKey(f"unsupported key type {str(kty)[:20]!r}")


# Private members of RSA, EC and OKP keys (RFC 7518 §6.2.2, §6.3.2; RFC 8037 §2).
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth"})


def verification_key(
    jwk: Mapping[str, Any], algorithms: Sequence[str], *, low_s: bool = True
) -> VerificationKey:
    """The key a JWK describes, bound to one of *algorithms*; :class:`UnusableKey` if none."""
    if not isinstance(jwk, Mapping):
        raise UnusableKey("not a JSON object")
    kid = jwk.get("kid")
    if kid is not None and (type(kid) is not str or not 0 < len(kid) <= MAX_KID_LENGTH):
        raise UnusableKey("kid is not a short string")
    if _PRIVATE_MEMBERS.intersection(jwk):
        raise UnusableKey("the key set publishes private key material")
    use = jwk.get("use")
    if use is not None and use != "sig":
        raise UnusableKey(f"use is {str(use)[:20]!r}, not 'sig'")
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        raise UnusableKey("key_ops does not allow 'verify'")
    public = _public_key(jwk)
    alg = jwk.get("alg")
    if alg is not None:
        if alg not in algorithms:
            raise UnusableKey(f"alg {str(alg)[:20]!r} is not one of the pinned algorithms")
        if not fits(alg, public):
            raise UnusableKey(f"a {jwk.get('kty')} key cannot be used with {alg}")
    else:
        alg = next((a for a in algorithms if fits(a, public)), None)
        if alg is None:
            raise UnusableKey("no pinned algorithm fits this key")
    return VerificationKey.build(kid, alg, public, low_s=low_s)


def key_set(
    document: object, algorithms: Sequence[str], *, low_s: bool = True, source: str = "JWKS"
) -> KeySet:
    """The usable keys of a JWK Set; ``ValueError`` when the document is not a JWK Set.

    Unusable keys are left out and logged (an issuer also publishes encryption keys); a set
    with no usable key at all is still a set (every token will be refused as unknown).
    """
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        raise ValueError(f"{source} is not a JWK Set (no 'keys' list)")
    if len(keys) > MAX_KEYS:
        raise ValueError(f"{source} holds {len(keys)} keys (at most {MAX_KEYS})")
    usable = []
    for index, jwk in enumerate(keys):
        try:
            usable.append(verification_key(jwk, algorithms, low_s=low_s))
        except UnusableKey as exc:
            kid = jwk.get("kid") if isinstance(jwk, dict) else None
            log.info("%s: key %s (kid %.64r) left out: %s", source, index, kid, exc)
    if keys and not usable:
        log.warning("%s: no usable key among %s (every token will be refused)", source, len(keys))
    return KeySet.of(usable)
