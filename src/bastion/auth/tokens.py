"""Access tokens: issued in canonical form, verified by a lean, strict verifier on ``cryptography``.

Why our own verifier: PyJWT (and joserfc) verify the signature well but leave `exp`, the
token type and ``jku``/``x5u``/``jwk`` headers to the caller (PyJWT 2.15 accepts a token
without ``exp`` unless told to require it, and checks no ``typ``; RFC 8725 §3.10-3.11) and
add tens of microseconds of generic Python per call. :class:`TokenVerifier` does only what a
resource server needs, in this order, each check refusing with its own class:

1. size bound, ASCII, three non-empty segments; every segment is decoded by a *strict*
   base64url decoder (RFC 8725bis: no padding, whitespace, '+', '/' or other characters;
   a JWE's five segments never verify and are reported as malformed, RFC 8725 §3.3), and
   its last character must leave the spare bits zero (RFC 4648 §3.5: the canonical form);
2. the header: ``alg`` one of the pinned algorithms (byte-exact: ``none``, ``HS256``,
   ``eS256`` refused — RFC 8725 §3.1/§3.2) and the one its key is bound to; ``kid`` naming
   a key of the source (a dictionary lookup — §3.10; without ``kid``, the only key of that
   algorithm); ``typ`` one of the accepted types when present; ``crit`` refused (no
   extension is understood, RFC 7515 §4.1.11); ``jku``/``x5u``/``jwk``/``x5c`` refused (§3.10:
   a key is never taken from the token); ``x5t`` tolerated and ignored (Entra ID sends it);
   any other member and duplicate members refused. A header that passes is cached
   (bounded), so tokens of one key pay for this once;
3. the signature, with the key's ready check, BEFORE the payload is parsed (ASVS 9.1.1);
   ECDSA signatures must be low-S (s <= n/2), so ``(r, n - s)`` is not a second token.
   A token whose signature verified is remembered by its exact bytes (bounded, and forgotten
   when the key set changes), so the same token presented again skips only the public-key
   operation: the same key, signing input and signature give the same answer every time.
   A client uses one access token for up to 15 minutes, and ES256 verification is most of
   the CPU a protected request costs (``bench/bench_jwt.py``: 63 µs); Envoy's JWT filter
   keeps the same kind of memory (``jwt_cache_config``). Only tokens that verified are
   remembered, so forged ones cannot fill it, and every claim check below still runs on
   every request;
4. the claims: ``exp``, ``iss`` (exact), ``aud`` (string or list naming us; or the claim
   configured instead, such as Cognito's ``client_id``) required;
   ``nbf`` and ``iat`` honoured when present; further required claims as configured;
   a small leeway (30 s by default) on the three times.

One set of claims therefore has exactly one valid token string per signature: no padding,
no spare bits, no high-S twin. :class:`TokenIssuer` signs that way too — ECDSA with
deterministic nonces (RFC 6979) where OpenSSL offers them, normalised to low-S — so the
tokens bastion issues pass the checks any strict verifier applies.

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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
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
)
from bastion.auth.jwk import MAX_KID_LENGTH, VerificationKey, curve_order, half_order
from bastion.auth.keys import KeyRing, SigningKey, b64url
from bastion.auth.keysource import KeySource, RingKeys
from bastion.caching import BoundedDict
from bastion.errors import ConfigError

ACCESS = "access"
DEFAULT_LEEWAY = 30
DEFAULT_MAX_LENGTH = 8192  # bastion's are ~300-700 characters, an IdP's with groups a few KB
HEADER_CACHE_SIZE = 64
# Tokens whose signature verified, remembered by their exact bytes (see TokenVerifier.decode):
# at most 1,024 x 8 KiB = 8 MiB in the worst case, about 0.5 MiB for bastion's own tokens.
VERIFIED_CACHE_SIZE = 1024
DEFAULT_TYPES = ("JWT", "at+jwt")  # RFC 7519 §5.1; RFC 9068 §2.1 (JWT access tokens)
ALWAYS_REQUIRED = ("iss", "aud", "exp")  # "aud": or the audience_claim configured

_BASE64URL = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _strict_table() -> bytes:
    """base64url -> base64 for a strict decoder: '-' and '_' become '+' and '/', while a
    '+', '/' or '=' in the input becomes '!', which the strict decoder refuses."""
    table = bytearray(range(256))
    for src, dst in ((b"-", b"+"), (b"_", b"/"), (b"+", b"!"), (b"/", b"!"), (b"=", b"!")):
        table[src[0]] = dst[0]
    return bytes(table)


def _spare_bits_table(mask: int) -> bytes:
    """A 256-entry table: non-zero for a final character whose spare bits (*mask*) are set."""
    table = bytearray(256)
    for value, char in enumerate(_BASE64URL):
        table[char] = 1 if value & mask else 0
    return bytes(table)


_TO_STANDARD = _strict_table()
# JWS segments carry no padding (RFC 7515 §2); add what the decoder needs, from the length.
# A length of 4n+1 cannot be base64 at all: '!' makes the strict decoder refuse it.
_PADDING = (b"", b"!", b"==", b"=")
# RFC 4648 §3.5: the final character of a 4n+2 segment carries 4 unused bits, of a 4n+3 one
# 2; a decoder ignoring them accepts 16 (or 4) spellings of one segment. Indexed by len & 3.
_NOT_CANONICAL = (bytes(256), bytes(256), _spare_bits_table(0x0F), _spare_bits_table(0x03))
# Headers that would let the token choose its own key (RFC 8725 §3.10; CVE-2018-0114 for jwk).
_KEY_HEADERS = frozenset({"jku", "x5u", "jwk", "x5c"})
# x5t / x5t#S256 name a certificate by its hash (RFC 7515 §4.1.7-8): never used to find a
# key here, but Entra ID puts x5t in every token header.
_ALLOWED_HEADERS = frozenset({"alg", "kid", "typ", "x5t", "x5t#S256"})

_a2b = binascii.a2b_base64


def b64decode(segment: bytes) -> bytes:
    """Decode one unpadded, canonical base64url segment strictly; ValueError otherwise.

    One ``translate`` and one strict C decode: no character outside the base64url alphabet
    (padding, whitespace, '+', '/', '.', JSON) survives it (RFC 8725bis); a final character
    with spare bits set is refused too (RFC 4648 §3.5).
    """
    if segment and _NOT_CANONICAL[len(segment) & 3][segment[-1]]:
        raise ValueError("spare bits set in the final character")
    return _decode(segment)


def _decode(segment: bytes) -> bytes:
    """:func:`b64decode` once the final character is known canonical (the hot path checks
    the signature's and the payload's together, before the signature is verified)."""
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


# --- issuing ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A freshly signed access token and what a client needs to know about it."""

    token: str
    expires_in: int
    token_id: str


Sign = Callable[[bytes], bytes]


def _deterministic_ecdsa_available() -> bool:
    """Whether this OpenSSL signs ECDSA with RFC 6979 nonces (OpenSSL 3.2+)."""
    try:
        probe = ec.generate_private_key(ec.SECP256R1())
        probe.sign(b"", ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    except UnsupportedAlgorithm:
        return False
    return True


def _signer(key: SigningKey, deterministic: bool) -> Sign:
    """A function signing a JWS signing input with *key*, in the token's canonical form."""
    private = key.private_key
    if key.alg == "ES256" and isinstance(private, ec.EllipticCurvePrivateKey):
        ecdsa = ec.ECDSA(hashes.SHA256(), deterministic_signing=deterministic)
        order, half = curve_order("ES256"), half_order("ES256")

        def sign_es256(data: bytes) -> bytes:
            r, s = decode_dss_signature(private.sign(data, ecdsa))
            if s > half:
                s = order - s  # the low-S twin: the verifier accepts only this form
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")

        return sign_es256
    if key.alg == "RS256" and isinstance(private, rsa.RSAPrivateKey):
        pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()
        return lambda data: private.sign(data, pkcs1, sha256)
    if key.alg == "EdDSA" and isinstance(private, ed25519.Ed25519PrivateKey):
        return private.sign
    raise ConfigError("signing key", f"{key.kid} is not a {key.alg} key")


def _subject(value: object) -> str:
    """The ``sub`` claim for *value*: a UUID or an int as text, or a non-empty string."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if type(value) is int:
        return str(value)
    if type(value) is str and value:
        return value
    if isinstance(value, str):
        raise ValueError("subject must not be empty")
    raise TypeError(f"subject must be a UUID, an int or a string, not {type(value).__name__}")


class TokenIssuer:
    """Signs access tokens with the ring's active key, in canonical form (module docstring).

    ``issue(subject, role)`` accepts exactly what the verifier accepts back: the subject
    becomes ``sub`` as a string (a UUID, an int such as ``42``, or any non-empty string),
    the role a non-empty string. Anything else raises ``TypeError``/``ValueError`` at once
    rather than minting a token that would be refused later.
    """

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
        self.deterministic = _deterministic_ecdsa_available()
        self._signers: dict[str, tuple[bytes, Sign]] = {}
        ring.on_reload(self._signers.clear)

    def issue(self, subject: uuid.UUID | int | str, role: str) -> IssuedToken:
        """A signed access token for *subject* with the contract's claims."""
        sub = _subject(subject)
        if type(role) is not str or not role:
            raise TypeError("role must be a non-empty string")
        self.ring.refresh()  # another process may have rotated the key
        key = self.ring.active
        now = int(self.clock())
        jti = uuid.uuid4().hex
        claims = {
            "iss": self.issuer,
            "sub": sub,
            "aud": self.audience,
            "iat": now,
            "exp": now + self.ttl,
            "jti": jti,
            "type": ACCESS,
            "role": role,
        }
        return IssuedToken(self.sign(key, claims), self.ttl, jti)

    def sign(self, key: SigningKey, claims: dict[str, Any]) -> str:
        """The compact JWS of *claims* signed by *key* (header ``alg``, ``kid``, ``typ: JWT``)."""
        prepared = self._signers.get(key.kid)
        if prepared is None:
            header = {"alg": key.alg, "kid": key.kid, "typ": "JWT"}
            head = b64url(json.dumps(header, separators=(",", ":")).encode()).encode()
            prepared = (head, _signer(key, self.deterministic))
            self._signers[key.kid] = prepared
        head, sign = prepared
        payload = b64url(json.dumps(claims, separators=(",", ":")).encode()).encode()
        signing_input = head + b"." + payload
        return (signing_input + b"." + b64url(sign(signing_input)).encode()).decode("ascii")


# --- verifying ----------------------------------------------------------------------------------


def _types(typ: Iterable[str]) -> frozenset[str]:
    """Accepted ``typ`` values, compared case-insensitively without ``application/``
    (RFC 7515 §4.1.9)."""
    if isinstance(typ, str):
        raise ConfigError("typ", "give a list of accepted types, e.g. ['JWT', 'at+jwt']")
    accepted = frozenset(str(t).lower().removeprefix("application/") for t in typ)
    if not accepted or "" in accepted:
        raise ConfigError("typ", "give at least one non-empty type")
    return accepted


class TokenVerifier:
    """Verifies JWTs of one issuer and audience against a key source (rules: module doc).

    *keys* is a :class:`~bastion.auth.keysource.KeySource` (static keys, a remote JWKS) or
    bastion's :class:`~bastion.auth.keys.KeyRing`. *audience* is one string or several (a
    token naming any of them is accepted). *required_claims* are required on top of ``iss``,
    ``aud`` and ``exp``. *typ* lists the accepted ``typ`` header values (absent is fine too).
    *audience_claim* names the claim that must name the audience: ``aud`` (RFC 7519 §4.1.3),
    or e.g. ``client_id`` for issuers whose access tokens carry none (Amazon Cognito).
    """

    def __init__(
        self,
        keys: KeySource | KeyRing,
        *,
        issuer: str,
        audience: str | Sequence[str],
        leeway: int = DEFAULT_LEEWAY,
        max_length: int = DEFAULT_MAX_LENGTH,
        required_claims: Iterable[str] = (),
        typ: Iterable[str] = DEFAULT_TYPES,
        audience_claim: str = "aud",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(audience_claim, str) or not audience_claim:
            raise ConfigError("audience_claim", "must be a claim name such as 'aud'")
        if not isinstance(issuer, str) or not issuer:
            raise ConfigError("issuer", "must be a non-empty string (the tokens' exact iss)")
        audiences = (audience,) if isinstance(audience, str) else tuple(audience)
        if not audiences or not all(isinstance(a, str) and a for a in audiences):
            raise ConfigError("audience", "must be a non-empty string or list of strings")
        if not (isinstance(leeway, int) and 0 <= leeway <= 300):
            raise ConfigError("leeway", "must be between 0 and 300 seconds")
        if not (isinstance(max_length, int) and max_length >= 256):
            raise ConfigError("max_token_length", "must be at least 256")
        if isinstance(required_claims, str):
            raise ConfigError("required_claims", "give a list of claim names, e.g. ['sub']")
        extra = tuple(dict.fromkeys(required_claims))
        if not all(isinstance(name, str) and name for name in extra):
            raise ConfigError("required_claims", "claim names are non-empty strings")
        self.keys: KeySource = RingKeys(keys) if isinstance(keys, KeyRing) else keys
        self.algorithms = frozenset(self.keys.algorithms)
        self.issuer = issuer
        self.audiences = frozenset(audiences)
        self.audience_claim = audience_claim
        self.leeway = leeway
        self.max_length = max_length
        self.required_claims = tuple(n for n in extra if n not in {"iss", "exp", audience_claim})
        self.types = _types(typ)
        self.clock = clock
        # bounded: forged header variants cannot grow memory
        self._headers: BoundedDict[bytes, VerificationKey] = BoundedDict(HEADER_CACHE_SIZE)
        # token bytes -> the key its signature verified with (module doc, step 3)
        self._verified: BoundedDict[bytes, VerificationKey] = BoundedDict(VERIFIED_CACHE_SIZE)
        self._generation = 0  # bumped on every new key set
        self.keys.on_change(self._keys_changed)

    def _keys_changed(self) -> None:
        """A new key set (rotation, refresh): headers checked and signatures verified against
        the old one are dropped (a key removed from the set verifies nothing any more)."""
        self._generation += 1
        self._headers.clear()
        self._verified.clear()

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
        key = self._headers.get(header)  # a cached header passed every check already
        if key is None:
            key = self._check_header(header)
        if (
            _NOT_CANONICAL[len(signature_b64) & 3][signature_b64[-1]]
            or _NOT_CANONICAL[len(payload_b64) & 3][payload_b64[-1]]
        ):
            raise MalformedToken("a segment is not canonical base64url (spare bits set)")
        if self._verified.get(raw) is not key:  # verified before with this very key?
            generation = self._generation
            try:
                key.verify(_decode(signature_b64), signing_input)
            except ValueError:
                raise MalformedToken("signature is not base64url") from None
            except InvalidSignature:
                # The failure path may be slow: say whether the token was even well formed
                # (a '.' in the payload means four or five segments, e.g. a JWE).
                if raw.translate(None, _BASE64URL) != b"..":
                    raise MalformedToken("not a compact JWS") from None
                raise BadSignature("signature does not verify") from None
            if generation == self._generation:
                self._verified.put(raw, key)
        # Only now, with the signature verified, is the payload parsed (ASVS 9.1.1), by
        # pydantic-core's Rust parser: twice as fast as the json module, strict UTF-8, no
        # NaN/Infinity, trailing data and deep nesting refused (as ValueError).
        try:
            claims = _from_json(_decode(payload_b64), allow_inf_nan=False)
        except ValueError:
            raise MalformedToken("payload is not JSON") from None
        if type(claims) is not dict:
            raise MalformedToken("payload is not a JSON object")
        self._check_claims(claims)
        return claims

    def _check_claims(self, claims: dict[str, Any]) -> None:
        try:
            exp = claims["exp"]
            iss = claims["iss"]
            aud = claims[self.audience_claim]
        except KeyError as exc:
            raise MissingClaim(f"{exc.args[0]} is required") from None
        now = self.clock()
        leeway = self.leeway
        # NumericDate (RFC 7519 §2): a JSON number; bool is not one, although Python agrees.
        if type(exp) is not int and not _finite(exp):
            raise InvalidClaim("exp is not a number")
        if now >= exp + leeway:
            raise Expired("exp has passed")
        nbf = claims.get("nbf")
        if nbf is not None:
            if type(nbf) is not int and not _finite(nbf):
                raise InvalidClaim("nbf is not a number")
            if nbf > now + leeway:
                raise NotYetValid("nbf is in the future")
        iat = claims.get("iat")
        if iat is not None:
            if type(iat) is not int and not _finite(iat):
                raise InvalidClaim("iat is not a number")
            if iat > now + leeway:
                raise IssuedInFuture("iat is in the future")
        if iss != self.issuer:  # exact: no prefix, suffix or case folding
            raise WrongIssuer("iss is not the configured issuer")
        if type(aud) is str:
            if aud not in self.audiences:
                raise WrongAudience(f"{self.audience_claim} does not name us")
        elif not (
            type(aud) is list
            and all(type(a) is str for a in aud)
            and not self.audiences.isdisjoint(aud)
        ):
            raise WrongAudience(f"{self.audience_claim} does not name us")
        for name in self.required_claims:
            if name not in claims:
                raise MissingClaim(f"{name} is required")

    # --- the header, checked once per distinct header -----------------------------------

    def _check_header(self, segment: bytes) -> VerificationKey:
        generation = self._generation
        try:
            header = _HEADER_DECODER.decode(b64decode(segment).decode("utf-8"))
        except (ValueError, RecursionError):
            raise MalformedToken(
                "header is not canonical base64url of JSON (UTF-8, no duplicate members)"
            ) from None
        if type(header) is not dict:
            raise MalformedToken("header is not a JSON object")
        alg = header.get("alg")
        # byte-exact: "none", "NONE", "HS256", "es256" all refused (RFC 8725 §3.1, §3.2)
        if type(alg) is not str or alg not in self.algorithms:
            raise DisallowedAlgorithm(f"alg {str(alg)[:20]!r} is not pinned")
        if "crit" in header:
            raise UnknownCritical("crit lists extensions this verifier does not understand")
        foreign = _KEY_HEADERS.intersection(header)
        if foreign:
            raise ForbiddenHeader(f"key-carrying header {sorted(foreign)[0]!r}")
        if not _ALLOWED_HEADERS.issuperset(header):
            raise ForbiddenHeader("unknown header member")
        typ = header.get("typ")
        if typ is not None and (
            type(typ) is not str or typ.lower().removeprefix("application/") not in self.types
        ):
            raise ForbiddenHeader("typ is not an accepted type")
        kid = header.get("kid")
        if kid is not None and (type(kid) is not str or not 0 < len(kid) <= MAX_KID_LENGTH):
            raise UnknownKey("kid is not a short string")
        key = self.keys.get(kid, alg)
        if key is None:
            raise UnknownKey("no key with this kid" if kid is not None else "kid missing")
        if key.alg != alg:  # RFC 8725 §3.1: each key is used with exactly one algorithm
            raise DisallowedAlgorithm(f"the key is bound to {key.alg}, not {alg}")
        if generation == self._generation:  # not if the key set changed meanwhile (a fetch)
            self._headers.put(segment, key)
        return key


__all__ = ["ACCESS", "IssuedToken", "TokenIssuer", "TokenVerifier", "b64decode"]
