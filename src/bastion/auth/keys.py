"""The signing key ring: keys on disk, RFC 7638 key ids, rotation and the JWKS.

Layout of the key directory (``<data dir>/keys``, mode 0700)::

    ring.json        {"keys": [{"kid", "alg", "created", "retired"}, ...]}  (public facts only)
    <kid>.pem        the PKCS#8 private key, mode 0600

The newest key of the configured algorithm that is not retired signs new tokens.
``rotate()`` adds a new key and retires the previous one; a retired key stays in the JWKS
(and keeps verifying) until every token it signed has expired, then it is pruned.

Each key is bound to exactly one algorithm (RFC 8725 §3.1): the ring maps ``kid`` to
(public key object, algorithm), keys are parsed once and cached, and a ``kid`` from a token
is only ever a dictionary lookup — never a path, a query or a URL (RFC 8725 §3.10).

Several worker processes share the directory: writers take an exclusive ``flock`` and
replace ``ring.json`` atomically; readers notice a changed ``ring.json`` (by its mtime and
size, checked at most once per second) and reload.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from bastion.errors import ConfigError

Algorithm = Literal["ES256", "RS256", "EdDSA"]
ALGORITHMS: tuple[Algorithm, ...] = ("ES256", "RS256", "EdDSA")

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

# 3072-bit RSA matches the ~128-bit strength of P-256 and Ed25519 (NIST SP 800-57 Pt 1,
# Table 2); 2048 is the RFC 7518 §3.3 minimum and stays accepted for verification.
DEFAULT_RSA_BITS = 3072
MIN_RSA_BITS = 2048
RING_FILE = "ring.json"
LOCK_FILE = ".lock"
RELOAD_INTERVAL = 1.0  # seconds between checks of ring.json for another process's rotation


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _int_bytes(value: int, length: int | None = None) -> bytes:
    length = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return value.to_bytes(length, "big")


def public_jwk(key: PublicKey) -> dict[str, str]:
    """The required public members of *key* as a JWK (RFC 7518 §6, RFC 8037 §2).

    Only public members are ever produced: there is no code path that could put ``d``,
    ``p``, ``q``, ... into a JWKS.
    """
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ConfigError("signing key", f"unsupported curve {key.curve.name}")
        numbers = key.public_numbers()
        return {
            "kty": "EC",
            "crv": "P-256",
            "x": b64url(_int_bytes(numbers.x, 32)),
            "y": b64url(_int_bytes(numbers.y, 32)),
        }
    if isinstance(key, rsa.RSAPublicKey):
        rsa_numbers = key.public_numbers()
        return {
            "kty": "RSA",
            "n": b64url(_int_bytes(rsa_numbers.n)),
            "e": b64url(_int_bytes(rsa_numbers.e)),
        }
    if isinstance(key, ed25519.Ed25519PublicKey):
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}
    raise ConfigError("signing key", f"unsupported key type {type(key).__name__}")


# RFC 7638 §3.2: the required members of each key type, in lexicographic order.
_THUMBPRINT_MEMBERS = {
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
    "OKP": ("crv", "kty", "x"),
}


def thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url): the ``kid`` of a key."""
    members = _THUMBPRINT_MEMBERS[jwk["kty"]]
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def generate_private_key(alg: Algorithm, *, rsa_bits: int = DEFAULT_RSA_BITS) -> PrivateKey:
    """A fresh private key for *alg*."""
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ConfigError("BASTION_JWT_ALG", f"unsupported algorithm {alg!r}")


def _key_matches(alg: str, key: PublicKey) -> bool:
    """RFC 8725 §3.1: a key is used with exactly one algorithm; check the pair."""
    if alg == "ES256":
        return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
    if alg == "RS256":
        return isinstance(key, rsa.RSAPublicKey) and key.key_size >= MIN_RSA_BITS
    if alg == "EdDSA":
        return isinstance(key, ed25519.Ed25519PublicKey)
    return False


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One key of the ring: its id, algorithm, parsed key objects and life cycle."""

    kid: str
    alg: Algorithm
    private_key: PrivateKey
    public_key: PublicKey
    created: float
    retired: float | None = None

    def public_jwk(self) -> dict[str, str]:
        """The JWKS entry: public members plus ``kid``, ``alg`` and ``use: sig``."""
        return {**public_jwk(self.public_key), "kid": self.kid, "alg": self.alg, "use": "sig"}


class KeyRing:
    """Signing keys of one data directory, parsed once and cached.

    *alg* is the configured algorithm: only keys of that algorithm sign or verify
    (the verifier's algorithm list is pinned to it). *token_ttl* (seconds, plus
    *leeway*) says how long a retired key must keep verifying the tokens it signed.
    *reload_interval* bounds how often ``ring.json`` is checked for another process's
    rotation (and so how often a stream of unknown ``kid`` values can cause disk access).
    *clock* is injectable for tests.
    """

    def __init__(
        self,
        directory: Path,
        *,
        alg: Algorithm = "ES256",
        token_ttl: int = 900,
        leeway: int = 30,
        rsa_bits: int = DEFAULT_RSA_BITS,
        reload_interval: float = RELOAD_INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if alg not in ALGORITHMS:
            raise ConfigError("BASTION_JWT_ALG", f"must be one of {', '.join(ALGORITHMS)}")
        if rsa_bits < MIN_RSA_BITS:
            raise ConfigError("rsa_bits", f"must be at least {MIN_RSA_BITS}")
        self.directory = Path(directory)
        self.alg: Algorithm = alg
        self.token_ttl = token_ttl
        self.leeway = leeway
        self.rsa_bits = rsa_bits
        self.reload_interval = reload_interval
        self.clock = clock
        self._keys: dict[str, SigningKey] = {}
        self._active: SigningKey | None = None
        self._stamp: tuple[int, int] | None = None
        self._next_check = 0.0
        self._listeners: list[Callable[[], None]] = []

    # --- start-up and rotation (writers) ---------------------------------------------------

    def ensure(self) -> SigningKey:
        """Make sure an active key of the configured algorithm exists; create one if not.

        Run once by the parent process before workers start (and harmlessly by anyone
        after): keys are generated under the directory lock, so two starters never create
        two keys.
        """
        with self._locked():
            entries = self._read_entries()
            if self._active_entry(entries) is None:
                self._add_key(entries)
                self._write_entries(entries)
        self.load()
        return self.active

    def rotate(self) -> SigningKey:
        """Add a new signing key and retire the current one (it keeps verifying its tokens)."""
        with self._locked():
            entries = self._read_entries()
            now = self.clock()
            for entry in entries:
                if entry["alg"] == self.alg and entry.get("retired") is None:
                    entry["retired"] = now
            self._add_key(entries)
            self._prune(entries, now)
            self._write_entries(entries)
        self.load()
        return self.active

    def _add_key(self, entries: list[dict[str, Any]]) -> None:
        private = generate_private_key(self.alg, rsa_bits=self.rsa_bits)
        kid = thumbprint(public_jwk(private.public_key()))
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path = self.directory / f"{kid}.pem"
        # O_EXCL + 0600 at creation: the key is never readable by others, not even briefly.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        entries.append({"kid": kid, "alg": self.alg, "created": self.clock(), "retired": None})

    def _prune(self, entries: list[dict[str, Any]], now: float) -> None:
        """Forget retired keys whose tokens have all expired (and delete their files)."""
        keep = []
        for entry in entries:
            retired = entry.get("retired")
            if retired is not None and now > retired + self.token_ttl + self.leeway:
                with contextlib.suppress(FileNotFoundError):
                    (self.directory / f"{entry['kid']}.pem").unlink()
                continue
            keep.append(entry)
        entries[:] = keep

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)
        fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _read_entries(self) -> list[dict[str, Any]]:
        path = self.directory / RING_FILE
        try:
            data = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise ConfigError(
                str(path), f"unreadable key ring ({exc.__class__.__name__})"
            ) from None
        entries = data.get("keys") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise ConfigError(str(path), "unreadable key ring (no 'keys' list)")
        return entries

    def _write_entries(self, entries: list[dict[str, Any]]) -> None:
        path = self.directory / RING_FILE
        tmp = path.with_name(f".{RING_FILE}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"keys": entries}, handle, indent=1)
        os.replace(tmp, path)  # atomic: readers see the old or the new ring, never half

    def _active_entry(self, entries: list[dict[str, Any]]) -> dict[str, Any] | None:
        live = [e for e in entries if e.get("alg") == self.alg and e.get("retired") is None]
        return max(live, key=lambda e: e.get("created", 0)) if live else None

    # --- reading (every process) ------------------------------------------------------------

    def load(self) -> None:
        """(Re)read ring.json and parse keys not seen before; raise ConfigError if unusable."""
        path = self.directory / RING_FILE
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise ConfigError(str(path), "no signing keys (run `bastion serve` once)") from None
        entries = self._read_entries()
        now = self.clock()
        keys: dict[str, SigningKey] = {}
        for entry in entries:
            if entry.get("alg") != self.alg:
                continue  # another algorithm: never used while this one is configured
            retired = entry.get("retired")
            if retired is not None and now > retired + self.token_ttl + self.leeway:
                continue
            kid = str(entry["kid"])
            known = self._keys.get(kid)
            if known is not None:  # parsed before: keep the key objects, update the dates
                keys[kid] = dataclasses.replace(known, retired=retired)
            else:
                keys[kid] = self._parse(kid, float(entry.get("created", 0)), retired)
        active = self._active_entry(entries)
        if active is None or str(active["kid"]) not in keys:
            raise ConfigError(str(path), f"no active {self.alg} signing key")
        self._keys = keys
        self._active = keys[str(active["kid"])]
        self._stamp = (stat.st_mtime_ns, stat.st_size)
        self._next_check = time.monotonic() + self.reload_interval
        for listener in self._listeners:
            listener()

    def _parse(self, kid: str, created: float, retired: float | None) -> SigningKey:
        path = self.directory / f"{kid}.pem"
        try:
            private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(
                str(path), f"unreadable signing key ({exc.__class__.__name__})"
            ) from None
        public = private.public_key()
        if not _key_matches(self.alg, public):  # type: ignore[arg-type]
            raise ConfigError(str(path), f"not a {self.alg} key")
        if thumbprint(public_jwk(public)) != kid:  # type: ignore[arg-type]
            raise ConfigError(str(path), "key does not match its kid")
        return SigningKey(kid, self.alg, private, public, created, retired)  # type: ignore[arg-type]

    def refresh(self) -> bool:
        """Reload if another process rotated (checked at most once per second); True if so."""
        now = time.monotonic()
        if now < self._next_check:
            return False
        self._next_check = now + self.reload_interval
        try:
            stat = (self.directory / RING_FILE).stat()
        except OSError:
            return False
        if (stat.st_mtime_ns, stat.st_size) == self._stamp:
            return False
        self.load()
        return True

    def on_reload(self, listener: Callable[[], None]) -> None:
        """Call *listener* after every (re)load (the verifier drops its header cache)."""
        self._listeners.append(listener)

    @property
    def active(self) -> SigningKey:
        """The key that signs new tokens."""
        if self._active is None:
            self.load()  # sets it or raises ConfigError
        return self._active  # type: ignore[return-value]

    def get(self, kid: str) -> SigningKey | None:
        """The key with this id, or ``None``: a plain lookup, whatever the string holds."""
        return self._keys.get(kid)

    def verifying_keys(self) -> list[SigningKey]:
        """Keys that currently verify, newest first."""
        if self._active is None:
            self.load()
        return list(reversed(self._keys.values()))  # ring.json lists keys in creation order

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The JSON Web Key Set (RFC 7517 §5): public members only, with kid, alg, use."""
        return {"keys": [key.public_jwk() for key in self.verifying_keys()]}
