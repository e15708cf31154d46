"""The signing key ring: RFC 7638 key ids, rotation and the JWKS, over a key store.

The ring holds the policy: the newest key of the configured algorithm that is not retired
signs new tokens; ``rotate()`` adds a new key and retires the previous one; a retired key
stays in the JWKS (and keeps verifying) until every token it signed has expired, then it is
pruned. Where the keys are kept is a :class:`KeyStore`:

* :class:`DirectoryKeyStore` (one host, the default): ``<data dir>/keys``, mode 0700::

      ring.json        {"keys": [{"kid", "alg", "created", "retired"}, ...]}  (public facts only)
      <kid>.pem        the PKCS#8 private key, mode 0600

  Worker processes share the directory: writers take an exclusive ``flock`` and replace
  ``ring.json`` atomically; readers notice a changed ``ring.json`` by its mtime and size.
* the service's database store (:mod:`bastion.service.signing_keys`): one ring for every
  host of a deployment, private keys sealed with a key-encryption key.

Each key is bound to exactly one algorithm (RFC 8725 §3.1): the ring maps ``kid`` to
(public key object, algorithm), keys are parsed once and cached, and a ``kid`` from a token
is only ever a dictionary lookup — never a path, a query or a URL (RFC 8725 §3.10).

Reloading: ``refresh()`` asks the store whether the ring changed at most once per
``reload_interval``. A store may answer that from memory (the database store's watcher polls
in the background, so issuing a token never waits on the database); after a lookup miss — a
``kid`` this process does not know, perhaps rotated on another host a moment ago — the next
``refresh()`` asks the store itself, again at most once per interval, so a flood of made-up
``kid`` values costs at most one store read per interval.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from bastion.errors import ConfigError

log = logging.getLogger("bastion.keys")

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
RELOAD_INTERVAL = 1.0  # seconds between checks of the store for another process's rotation


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


# --- storage -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """The public facts a store keeps about one key (its private key is kept apart)."""

    kid: str
    alg: str
    created: float
    retired: float | None = None


class RingChange:
    """What a writer edits under the store's lock: the stored records, and new private keys.

    ``records`` is the ring as stored; the writer may replace items (retire a key), drop
    them (prune: the store deletes their private keys) or :meth:`add` a new key.
    """

    def __init__(self, records: list[KeyRecord]) -> None:
        self.records = list(records)
        self.new_keys: dict[str, PrivateKey] = {}

    def add(self, record: KeyRecord, private_key: PrivateKey) -> None:
        if any(r.kid == record.kid for r in self.records):
            raise ConfigError("signing keys", f"key {record.kid} is already in the ring")
        self.records.append(record)
        self.new_keys[record.kid] = private_key


@runtime_checkable
class KeyStore(Protocol):
    """Where a :class:`KeyRing` keeps its keys (one directory, or a deployment's database).

    Every method may raise :class:`~bastion.errors.ConfigError` naming what is wrong (the
    file, the database row, the setting), which the command line prints as one line.
    """

    def describe(self, kid: str | None = None) -> str:
        """Where the ring (or the key *kid*) is kept, for messages."""
        ...

    def stamp(self, *, fresh: bool) -> Hashable | None:
        """A value that changes whenever the ring does (``None``: no ring stored yet).

        With ``fresh=False`` the store may answer from memory (what a background watcher
        saw last); with ``fresh=True`` it looks, within a short bound.
        """
        ...

    def read(self) -> tuple[Hashable, list[KeyRecord]] | None:
        """The ring as stored now with its stamp, or ``None`` when nothing is stored."""
        ...

    def private_key(self, record: KeyRecord) -> PrivateKey:
        """The private key of a record returned by the last :meth:`read`."""
        ...

    def update(self, change: Callable[[RingChange], None]) -> None:
        """Run *change* under a lock exclusive across every process (and host) sharing the
        store, then persist what it did; if *change* raises, nothing is written."""
        ...

    def close(self) -> None:
        """Release connections and threads (a no-op for files)."""
        ...


class DirectoryKeyStore:
    """The ring in one directory: ``ring.json`` (public facts) and one ``<kid>.pem`` per key."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def describe(self, kid: str | None = None) -> str:
        return str(self.directory / (RING_FILE if kid is None else f"{kid}.pem"))

    def stamp(self, *, fresh: bool = True) -> Hashable | None:
        # A stat() is as cheap as any memory a watcher could keep: always look.
        try:
            stat = (self.directory / RING_FILE).stat()
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    def read(self) -> tuple[Hashable, list[KeyRecord]] | None:
        stamp = self.stamp()
        if stamp is None:
            return None
        return stamp, self._records(self._read_entries())

    def private_key(self, record: KeyRecord) -> PrivateKey:
        path = self.directory / f"{record.kid}.pem"
        try:
            private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(
                str(path), f"unreadable signing key ({exc.__class__.__name__})"
            ) from None
        if not isinstance(private, PrivateKey):
            raise ConfigError(str(path), f"unsupported key type {type(private).__name__}")
        return private

    def update(self, change: Callable[[RingChange], None]) -> None:
        with self._locked():
            before = self._records(self._read_entries())
            edit = RingChange(before)
            change(edit)
            for kid, private in edit.new_keys.items():
                self._write_private(kid, private)
            self._write_entries(
                [
                    {"kid": r.kid, "alg": r.alg, "created": r.created, "retired": r.retired}
                    for r in edit.records
                ]
            )
            kept = {r.kid for r in edit.records}
            for record in before:
                if record.kid not in kept:
                    with contextlib.suppress(FileNotFoundError):
                        (self.directory / f"{record.kid}.pem").unlink()

    def close(self) -> None:
        pass

    def retire(self) -> None:
        """Stop using this directory: ``ring.json`` becomes ``ring.imported.json`` (a record
        of what was there) and the private key files are deleted.

        Called once its keys have been copied to the database: a key kept in clear on one
        host's disk would defeat sealing it in the shared database.
        """
        with self._locked():
            for pem in self.directory.glob("*.pem"):
                with contextlib.suppress(FileNotFoundError):
                    pem.unlink()
            with contextlib.suppress(FileNotFoundError):
                os.replace(self.directory / RING_FILE, self.directory / "ring.imported.json")

    # --- files ------------------------------------------------------------------------------

    def _write_private(self, kid: str, private: PrivateKey) -> None:
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        # O_EXCL + 0600 at creation: the key is never readable by others, not even briefly.
        fd = os.open(self.directory / f"{kid}.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)

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

    def _records(self, entries: list[dict[str, Any]]) -> list[KeyRecord]:
        try:
            return [
                KeyRecord(
                    kid=str(e["kid"]),
                    alg=str(e["alg"]),
                    created=float(e.get("created") or 0),
                    retired=None if e.get("retired") is None else float(e["retired"]),
                )
                for e in entries
            ]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(
                self.describe(), f"unreadable key ring ({exc.__class__.__name__})"
            ) from None

    def _write_entries(self, entries: list[dict[str, Any]]) -> None:
        path = self.directory / RING_FILE
        tmp = path.with_name(f".{RING_FILE}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"keys": entries}, handle, indent=1)
        os.replace(tmp, path)  # atomic: readers see the old or the new ring, never half


# --- the ring ------------------------------------------------------------------------------


class KeyRing:
    """Signing keys of one store (a directory by default), parsed once and cached.

    *store* is a :class:`KeyStore`, or a directory path for a :class:`DirectoryKeyStore`.
    *alg* is the configured algorithm: only keys of that algorithm sign or verify
    (the verifier's algorithm list is pinned to it). *token_ttl* (seconds, plus
    *leeway*) says how long a retired key must keep verifying the tokens it signed.
    *reload_interval* bounds how often the store is asked whether another process or host
    rotated (and so how often a stream of unknown ``kid`` values can cause a store read).
    *clock* is injectable for tests.
    """

    def __init__(
        self,
        store: KeyStore | Path | str,
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
        if isinstance(store, str | os.PathLike):
            store = DirectoryKeyStore(Path(store))
        if not isinstance(store, KeyStore):
            raise ConfigError("store", "must be a KeyStore or a directory path")
        self.store: KeyStore = store
        #: The key directory when the ring is kept in one (``None`` for a database ring).
        self.directory: Path | None = getattr(store, "directory", None)
        self.alg: Algorithm = alg
        self.token_ttl = token_ttl
        self.leeway = leeway
        self.rsa_bits = rsa_bits
        self.reload_interval = reload_interval
        self.clock = clock
        self._keys: dict[str, SigningKey] = {}
        self._active: SigningKey | None = None
        self._stamp: Hashable | None = None
        self._next_check = 0.0
        self._missed = False  # a get() found no key since the store was last asked directly
        self._next_fresh_check = 0.0
        self._failure: str | None = None
        self._listeners: list[Callable[[], None]] = []

    # --- start-up and rotation (writers) ---------------------------------------------------

    def ensure(self) -> SigningKey:
        """Make sure an active key of the configured algorithm exists; create one if not.

        Run once by the parent process before workers start (and harmlessly by anyone
        after): keys are generated under the store's lock, so two starters never create
        two keys.
        """

        def change(edit: RingChange) -> None:
            if self._active_record(edit.records) is None:
                self._add_key(edit)

        self.store.update(change)
        self.load()
        return self.active

    def rotate(self) -> SigningKey:
        """Add a new signing key and retire the current one (it keeps verifying its tokens)."""

        def change(edit: RingChange) -> None:
            now = self.clock()
            edit.records = [
                dataclasses.replace(r, retired=now)
                if r.alg == self.alg and r.retired is None
                else r
                for r in edit.records
            ]
            self._add_key(edit)
            # Forget retired keys whose tokens have all expired (the store deletes them).
            edit.records = [r for r in edit.records if not self.is_expired(r, now)]

        self.store.update(change)
        self.load()
        return self.active

    def _add_key(self, edit: RingChange) -> None:
        private = generate_private_key(self.alg, rsa_bits=self.rsa_bits)
        kid = thumbprint(public_jwk(private.public_key()))
        edit.add(KeyRecord(kid, self.alg, self.clock(), None), private)

    def is_expired(self, record: KeyRecord, now: float) -> bool:
        """True once every token the (retired) key signed is past its ``exp`` and leeway."""
        return record.retired is not None and now > record.retired + self.token_ttl + self.leeway

    def _active_record(self, records: list[KeyRecord]) -> KeyRecord | None:
        live = [r for r in records if r.alg == self.alg and r.retired is None]
        return max(live, key=lambda r: (r.created, r.kid)) if live else None

    # --- reading (every process) ------------------------------------------------------------

    def load(self) -> None:
        """(Re)read the store and parse keys not seen before; raise ConfigError if unusable."""
        snapshot = self.store.read()
        if snapshot is None:
            raise ConfigError(self.store.describe(), "no signing keys (run `bastion serve` once)")
        stamp, records = snapshot
        now = self.clock()
        keys: dict[str, SigningKey] = {}
        for record in sorted(records, key=lambda r: r.created):  # stable: ties keep store order
            if record.alg != self.alg:
                continue  # another algorithm: never used while this one is configured
            if self.is_expired(record, now):
                continue
            known = self._keys.get(record.kid)
            if known is not None:  # parsed before: keep the key objects, update the dates
                keys[record.kid] = dataclasses.replace(known, retired=record.retired)
            else:
                keys[record.kid] = self._parse(record)
        active = self._active_record(records)
        if active is None or active.kid not in keys:
            raise ConfigError(self.store.describe(), f"no active {self.alg} signing key")
        self._keys = keys
        self._active = keys[active.kid]
        self._stamp = stamp
        self._next_check = time.monotonic() + self.reload_interval
        self._failure = None
        for listener in self._listeners:
            listener()

    def _parse(self, record: KeyRecord) -> SigningKey:
        where = self.store.describe(record.kid)
        private = self.store.private_key(record)
        public = private.public_key()
        if not _key_matches(self.alg, public):
            raise ConfigError(where, f"not a {self.alg} key")
        if thumbprint(public_jwk(public)) != record.kid:
            raise ConfigError(where, "key does not match its kid")
        return SigningKey(record.kid, self.alg, private, public, record.created, record.retired)

    def refresh(self) -> bool:
        """Reload if another process or host rotated; True if the keys changed.

        The store is asked at most once per ``reload_interval``; after a lookup miss, once
        more per interval and directly (see the module docstring). A store that fails (a
        database outage, a ring altered into something unusable) is logged and the keys
        already loaded stay in use: they were checked when they were loaded.
        """
        now = time.monotonic()
        fresh = self._missed and now >= self._next_fresh_check
        if not fresh and now < self._next_check:
            return False
        self._next_check = now + self.reload_interval
        if fresh:
            self._missed = False
            self._next_fresh_check = now + self.reload_interval
        try:
            stamp = self.store.stamp(fresh=fresh)
            if stamp is None or stamp == self._stamp:
                return False
            self.load()
        except ConfigError as exc:
            if str(exc) != self._failure:  # once per distinct problem, not once per second
                self._failure = str(exc)
                log.error("signing keys not reloaded, still using the loaded ones: %s", exc)
            return False
        return True

    def on_reload(self, listener: Callable[[], None]) -> None:
        """Call *listener* after every (re)load (the verifier drops its header cache)."""
        self._listeners.append(listener)

    def close(self) -> None:
        """Release what the store holds (a database store's connections and thread)."""
        self.store.close()

    @property
    def active(self) -> SigningKey:
        """The key that signs new tokens."""
        if self._active is None:
            self.load()  # sets it or raises ConfigError
        return self._active  # type: ignore[return-value]

    def get(self, kid: str) -> SigningKey | None:
        """The key with this id, or ``None``: a plain lookup, whatever the string holds."""
        key = self._keys.get(kid)
        if key is None:
            self._missed = True  # the next refresh() asks the store directly (bounded)
        return key

    def verifying_keys(self) -> list[SigningKey]:
        """Keys that currently verify, newest first."""
        if self._active is None:
            self.load()
        return list(reversed(self._keys.values()))  # loaded oldest first

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The JSON Web Key Set (RFC 7517 §5): public members only, with kid, alg, use."""
        return {"keys": [key.public_jwk() for key in self.verifying_keys()]}
