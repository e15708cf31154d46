"""Where a verifier's keys come from: a fixed set, bastion's own key ring, or an issuer's JWKS.

A key source answers one question on the hot path — "which key has this ``kid``?" — with a
dictionary lookup and never any I/O. A source whose keys can change (a remote JWKS,
:mod:`bastion.auth.jwks`) also offers :meth:`KeySource.refetch`, which the caller may await
off the event loop when a token names a key it does not know, under the source's own
throttle. Listeners registered with :meth:`KeySource.on_change` hear of every new key set
(the verifier drops the headers it had checked against the old one).
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from bastion.auth.jwk import KeySet, VerificationKey, key_set, pinned_algorithms
from bastion.auth.keys import KeyRing
from bastion.errors import ConfigError


class KeySource(Protocol):
    """The keys a verifier may use."""

    algorithms: tuple[str, ...]

    def get(self, kid: str | None, alg: str) -> VerificationKey | None:
        """The key for this token header, or ``None``; never blocks on the network."""
        ...

    def poll(self) -> None:
        """Called once per verification: a cheap chance to start a due background refresh."""
        ...

    def refetch(self) -> concurrent.futures.Future[bool] | None:
        """A fetch of fresh keys, started now or already in flight; ``None`` when none may
        start (throttled, or a source that never changes). The future gives True when a new
        key set was installed."""
        ...

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call *listener* whenever the key set is replaced."""
        ...


class StaticKeys:
    """A key set given in code (``BearerAuth(jwks={"keys": [...]})``): checked at start."""

    def __init__(
        self, jwks: Mapping[str, Any], algorithms: Sequence[str], *, low_s: bool = True
    ) -> None:
        self.algorithms = pinned_algorithms(algorithms)
        try:
            self._keys = key_set(dict(jwks), self.algorithms, low_s=low_s, source="jwks")
        except (TypeError, ValueError) as exc:
            raise ConfigError("jwks", str(exc)) from None
        if not self._keys.by_kid and not self._keys.sole:
            raise ConfigError("jwks", "no usable verification key (see the log for why)")

    def get(self, kid: str | None, alg: str) -> VerificationKey | None:
        return self._keys.get(kid, alg)

    def poll(self) -> None:
        return None

    def refetch(self) -> concurrent.futures.Future[bool] | None:
        return None

    def on_change(self, listener: Callable[[], None]) -> None:
        return None  # never changes


class RingKeys:
    """bastion's own key ring (:class:`bastion.auth.keys.KeyRing`) as a key source.

    An unknown ``kid`` makes the ring check for another process's rotation (at most once per
    its reload interval, a local read) before the token is refused, as it always did.
    """

    def __init__(self, ring: KeyRing, *, low_s: bool = True) -> None:
        self.ring = ring
        self.algorithms: tuple[str, ...] = (ring.alg,)
        self.low_s = low_s
        self._keys: dict[str, VerificationKey] = {}
        self._listeners: list[Callable[[], None]] = []
        ring.on_reload(self._reloaded)

    def _reloaded(self) -> None:
        self._keys = {}
        for listener in self._listeners:
            listener()

    def get(self, kid: str | None, alg: str) -> VerificationKey | None:
        if kid is None:
            return None  # bastion's tokens always name their key
        known = self._keys.get(kid)
        if known is not None:
            return known
        key = self.ring.get(kid)
        if key is None and self.ring.refresh():  # rotated by another process just now?
            key = self.ring.get(kid)
        if key is None:
            return None
        verification = VerificationKey.build(key.kid, key.alg, key.public_key, low_s=self.low_s)
        self._keys[kid] = verification
        return verification

    def poll(self) -> None:
        return None

    def refetch(self) -> concurrent.futures.Future[bool] | None:
        return None  # get() already re-reads the ring when a kid is unknown

    def on_change(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)


__all__ = ["KeySet", "KeySource", "RingKeys", "StaticKeys"]
