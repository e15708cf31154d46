"""Access tokens: issued with PyJWT, verified by a lean, strict verifier on ``cryptography``.

Why our own verifier: PyJWT (and joserfc) verify the signature well but leave `exp`, the
token type and ``jku``/``x5u``/``jwk`` headers to the caller (EXP-4/5 in the research
notes) and add tens of microseconds of generic Python per call. :class:`TokenVerifier`
does only what bastion needs, in this order, each check refusing with its own class:

1. size bound, ASCII, three non-empty segments; every segment is decoded by a *strict*
   base64url decoder (RFC 8725bis: no padding, whitespace, '+', '/' or other characters;
   a JWE's five segments never verify and are reported as malformed, RFC 8725 §3.3);
2. the header: exactly ``alg`` (the pinned algorithm, byte-exact: ``none``, ``HS256``,
   ``eS256`` refused — RFC 8725 §3.1/§3.2), ``kid`` (a key of the ring, looked up in a dict —
   §3.10) and optional ``typ: JWT``; ``crit`` is refused (no extension is understood,
   RFC 7515 §4.1.11), ``jku``/``x5u``/``jwk``/``x5c``/``x5t`` are refused (§3.10; a key is
   never taken from the token), duplicate members refused. A header that passes is cached
   (bounded), so tokens of one key pay for this once;
3. the signature, with the cached key object, BEFORE the payload is parsed (ASVS 9.1.1);
4. the claims: ``exp``, ``iat``, ``iss``, ``aud``, ``type``, ``sub``, ``jti``, ``role``
   required; ``nbf`` honoured when present; 30 s leeway on the three times.

Speed (``bench/bench_jwt.py``): every step is one C-level call where possible — one
``translate`` plus one strict ``a2b_base64`` per segment, the cached header looked up by
its bytes, the payload parsed by pydantic-core — so the Python around the signature check
costs a few microseconds, not the tens PyJWT adds.
"""

from __future__ import annotations

import binascii
import json
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pydantic_core import from_json as _from_json

from bastion.auth.errors import (
    BadSignature,
    DisallowedAlgorithm,
    Expired,
    ForbiddenHeader,
    InvalidClaim,
    IssuedInFuture,
    MalformedToken,
    MissingClaim,
    NotYetValid,
    TokenTooLarge,
    UnknownCritical,
    UnknownKey,
    WrongAudience,
    WrongIssuer,
    WrongTokenType,
)
from bastion.auth.keys import KeyRing, SigningKey
from bastion.auth.principal import Principal
from bastion.errors import ConfigError

ACCESS = "access"
DEFAULT_LEEWAY = 30
DEFAULT_MAX_LENGTH = 4096  # ours are ~300-700 characters; anything far larger is hostile
HEADER_CACHE_SIZE = 64
MAX_KID_LENGTH = 128

_BASE64URL = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _strict_table() -> bytes:
    """base64url -> base64 for a strict decoder: '-' and '_' become '+' and '/', while a
    '+', '/' or '=' in the input becomes '!', which the strict decoder refuses."""
    table = bytearray(range(256))
    for src, dst in ((b"-", b"+"), (b"_", b"/"), (b"+", b"!"), (b"/", b"!"), (b"=", b"!")):
        table[src[0]] = dst[0]
    return bytes(table)


_TO_STANDARD = _strict_table()
# JWS segments carry no padding (RFC 7515 §2); add what the decoder needs, from the length.
# A length of 4n+1 cannot be base64 at all: '!' makes the strict decoder refuse it.
_PADDING = (b"", b"!", b"==", b"=")
# Headers that would let the token choose its own key (RFC 8725 §3.10; CVE-2018-0114 for jwk).
_KEY_HEADERS = frozenset({"jku", "x5u", "jwk", "x5c", "x5t", "x5t#S256"})
_ALLOWED_HEADERS = frozenset({"alg", "kid", "typ"})

_a2b = binascii.a2b_base64


def _b64decode(segment: bytes) -> bytes:
    """Decode one unpadded base64url segment strictly; ValueError for any other character.

    One ``translate`` and one strict C decode: no character outside the base64url alphabet
    (padding, whitespace, '+', '/', '.', JSON) survives it (RFC 8725bis).
    """
    return _a2b(segment.translate(_TO_STANDARD) + _PADDING[len(segment) & 3], strict_mode=True)


def _finite(value: object) -> bool:
    """A JSON float usable as a NumericDate: 1e999 parses as infinity and would never expire."""
    return type(value) is float and math.isfinite(value)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"JSON constant {name} is not allowed")  # NaN/Infinity would defeat exp


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate member")  # RFC 7515 §4: refuse rather than guess
    return obj


_HEADER_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, object_pairs_hook=_unique_pairs)

Verify = Callable[[bytes, bytes], None]


def _signature_check(key: SigningKey) -> Verify:
    """A function verifying (signature, signing input) with *key*'s cached public key.

    The padding/hash objects are built once; the key object is parsed once by the ring.
    """
    public = key.public_key
    if key.alg == "ES256" and isinstance(public, ec.EllipticCurvePublicKey):
        ecdsa = ec.ECDSA(hashes.SHA256())
        verify_ec = public.verify
        from_bytes = int.from_bytes

        def check_es256(signature: bytes, data: bytes) -> None:
            # JWS carries ECDSA as R || S, 32 bytes each (RFC 7518 §3.4); OpenSSL wants DER.
            if len(signature) != 64:
                raise InvalidSignature("ES256 signature is not 64 bytes")
            der = encode_dss_signature(
                from_bytes(signature[:32], "big"), from_bytes(signature[32:], "big")
            )
            verify_ec(der, data, ecdsa)

        return check_es256
    if key.alg == "RS256" and isinstance(public, rsa.RSAPublicKey):
        pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()
        verify_rsa = public.verify
        size = (public.key_size + 7) // 8

        def check_rs256(signature: bytes, data: bytes) -> None:
            if len(signature) != size:
                raise InvalidSignature("RS256 signature has the wrong length")
            verify_rsa(signature, data, pkcs1, sha256)

        return check_rs256
    if key.alg == "EdDSA" and isinstance(public, ed25519.Ed25519PublicKey):
        return public.verify
    raise ConfigError("signing key", f"{key.kid} is not a {key.alg} key")


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A freshly signed access token and what a client needs to know about it."""

    token: str
    expires_in: int
    token_id: str


class TokenIssuer:
    """Signs access tokens with the ring's active key (PyJWT does the encoding)."""

    def __init__(
        self,
        ring: KeyRing,
        *,
        issuer: str,
        audience: str,
        ttl: int = 900,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not issuer or not audience:
            raise ConfigError("issuer/audience", "must not be empty")
        if ttl <= 0:
            raise ConfigError("access_token_ttl", "must be positive")
        self.ring = ring
        self.issuer = issuer
        self.audience = audience
        self.ttl = ttl
        self.clock = clock

    def issue(self, user_id: uuid.UUID, role: str) -> IssuedToken:
        """A signed access token for *user_id* with the contract's claims."""
        self.ring.refresh()  # another process may have rotated the key
        key = self.ring.active
        now = int(self.clock())
        jti = uuid.uuid4().hex
        claims = {
            "iss": self.issuer,
            "sub": str(user_id),
            "aud": self.audience,
            "iat": now,
            "exp": now + self.ttl,
            "jti": jti,
            "type": ACCESS,
            "role": role,
        }
        token = jwt.encode(
            claims, key.private_key, algorithm=key.alg, headers={"kid": key.kid, "typ": "JWT"}
        )
        return IssuedToken(token, self.ttl, jti)


@dataclass(frozen=True, slots=True)
class _HeaderCheck:
    key: SigningKey
    verify: Verify


class TokenVerifier:
    """Verifies access tokens of one issuer and audience against a key ring."""

    def __init__(
        self,
        ring: KeyRing,
        *,
        issuer: str,
        audience: str,
        leeway: int = DEFAULT_LEEWAY,
        max_length: int = DEFAULT_MAX_LENGTH,
        token_type: str = ACCESS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not issuer or not audience:
            raise ConfigError("issuer/audience", "must not be empty")
        if not 0 <= leeway <= 300:
            raise ConfigError("leeway", "must be between 0 and 300 seconds")
        if max_length < 256:
            raise ConfigError("max_length", "must be at least 256")
        self.ring = ring
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.max_length = max_length
        self.token_type = token_type
        self.clock = clock
        self._headers: dict[bytes, _HeaderCheck] = {}
        ring.on_reload(self._headers.clear)

    # --- the hot path -------------------------------------------------------------------

    def decode(self, token: str) -> dict[str, Any]:
        """The verified claims of *token*; raises a :class:`TokenError` subclass otherwise."""
        if len(token) > self.max_length:
            raise TokenTooLarge(f"{len(token)} characters")
        try:
            raw = token.encode("ascii")
        except (UnicodeEncodeError, AttributeError):
            raise MalformedToken("not an ASCII string") from None
        signing_input, _, signature_b64 = raw.rpartition(b".")
        header, _, payload_b64 = signing_input.partition(b".")
        if not header or not payload_b64 or not signature_b64:
            raise MalformedToken("not three segments")
        check = self._headers.get(header)  # a cached header passed every check already
        if check is None:
            check = self._check_header(header)
        try:
            check.verify(
                _a2b(
                    signature_b64.translate(_TO_STANDARD) + _PADDING[len(signature_b64) & 3],
                    strict_mode=True,
                ),
                signing_input,
            )
        except ValueError:
            raise MalformedToken("signature is not base64url") from None
        except InvalidSignature:
            # The failure path may be slow: say whether the token was even well formed
            # (a '.' in the payload means four or five segments, e.g. a JWE).
            if raw.translate(None, _BASE64URL) != b"..":
                raise MalformedToken("not a compact JWS") from None
            raise BadSignature("signature does not verify") from None
        # Only now, with the signature verified, is the payload parsed (ASVS 9.1.1), by
        # pydantic-core's Rust parser: twice as fast as the json module, strict UTF-8, no
        # NaN/Infinity, trailing data and deep nesting refused (as ValueError).
        try:
            claims = _from_json(
                _a2b(
                    payload_b64.translate(_TO_STANDARD) + _PADDING[len(payload_b64) & 3],
                    strict_mode=True,
                ),
                allow_inf_nan=False,
            )
        except ValueError:
            raise MalformedToken("payload is not JSON") from None
        if type(claims) is not dict:
            raise MalformedToken("payload is not a JSON object")
        self._check_claims(claims)
        return claims

    def verify_access(self, token: str) -> Principal:
        """The principal an access token stands for (the :class:`AccessVerifier` protocol)."""
        claims = self.decode(token)
        try:
            user_id = uuid.UUID(claims["sub"])
        except ValueError:
            raise InvalidClaim("sub is not a UUID") from None
        return Principal(user_id, claims["role"], claims["jti"])

    def _check_claims(self, claims: dict[str, Any]) -> None:
        try:
            exp = claims["exp"]
            iat = claims["iat"]
            iss = claims["iss"]
            aud = claims["aud"]
            kind = claims["type"]
            sub = claims["sub"]
            jti = claims["jti"]
            role = claims["role"]
        except KeyError as exc:
            raise MissingClaim(f"{exc.args[0]} is required") from None
        now = self.clock()
        leeway = self.leeway
        # NumericDate (RFC 7519 §2): a JSON number; bool is not one, although Python agrees.
        if type(exp) is not int and not _finite(exp):
            raise InvalidClaim("exp is not a number")
        if now >= exp + leeway:
            raise Expired("exp has passed")
        if type(iat) is not int and not _finite(iat):
            raise InvalidClaim("iat is not a number")
        if iat > now + leeway:
            raise IssuedInFuture("iat is in the future")
        nbf = claims.get("nbf")
        if nbf is not None:
            if type(nbf) is not int and not _finite(nbf):
                raise InvalidClaim("nbf is not a number")
            if nbf > now + leeway:
                raise NotYetValid("nbf is in the future")
        if iss != self.issuer:  # exact: no prefix, suffix or case folding
            raise WrongIssuer("iss is not ours")
        if aud != self.audience and not (
            type(aud) is list and self.audience in aud and all(type(a) is str for a in aud)
        ):
            raise WrongAudience("aud does not name us")
        if kind != self.token_type:
            raise WrongTokenType(f"type is not {self.token_type!r}")
        if type(sub) is not str or type(jti) is not str or type(role) is not str or not jti:
            raise InvalidClaim("sub, jti and role must be strings")

    # --- the header, checked once per distinct header -----------------------------------

    def _check_header(self, segment: bytes) -> _HeaderCheck:
        try:
            header = _HEADER_DECODER.decode(_b64decode(segment).decode("utf-8"))
        except (ValueError, RecursionError):
            raise MalformedToken("header is not JSON (UTF-8, no duplicate members)") from None
        if type(header) is not dict:
            raise MalformedToken("header is not a JSON object")
        alg = header.get("alg")
        if alg != self.ring.alg:  # byte-exact: "none", "NONE", "HS256", "es256" all refused
            raise DisallowedAlgorithm(f"alg {str(alg)[:20]!r} is not {self.ring.alg}")
        if "crit" in header:
            raise UnknownCritical("crit lists extensions this verifier does not understand")
        foreign = _KEY_HEADERS.intersection(header)
        if foreign:
            raise ForbiddenHeader(f"key-carrying header {sorted(foreign)[0]!r}")
        if not _ALLOWED_HEADERS.issuperset(header):
            raise ForbiddenHeader("unknown header member")
        typ = header.get("typ")
        if typ is not None and (type(typ) is not str or typ.upper() != "JWT"):
            raise ForbiddenHeader("typ is not JWT")
        kid = header.get("kid")
        if type(kid) is not str or not 0 < len(kid) <= MAX_KID_LENGTH:
            raise UnknownKey("kid missing or not a short string")
        key = self.ring.get(kid)
        if key is None and self.ring.refresh():  # rotated by another process just now?
            key = self.ring.get(kid)
        if key is None or key.alg != alg:
            raise UnknownKey("no key with this kid")
        check = _HeaderCheck(key, _signature_check(key))
        if len(self._headers) >= HEADER_CACHE_SIZE:
            self._headers.clear()  # bounded: forged header variants cannot grow memory
        self._headers[segment] = check
        return check
