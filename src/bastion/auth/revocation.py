"""Access-token revocation: a per-user "not before" second, read from process memory.

An access token is a signed JWT checked without a database; what makes it revocable is one
number per user, the second of that user's latest revocation (logout, password reset,
refresh-token reuse). A token whose ``iat`` is at or before it is refused, so every token
issued before the revocation dies with it (tokens issued in the same second too: ``iat`` has
one-second resolution, and refusing them is the safe side).

Why not a ``jti`` deny-list: logout would have to name every access token of the user (their
``jti`` are never stored), and the list grows with tokens rather than with users.

The check is a dict lookup in the process (no I/O on the request path): the cost on
``GET /me`` is measured by ``bench/`` (see the README). Entries older than the access-token
lifetime (plus leeway) are dropped: every token they could refuse has expired anyway.

* :class:`MemoryRevocations`: one process (the memory store's deployment).
* :class:`RedisRevocations`: every process and host sharing a Redis. A revocation is written
  to one sorted set (``ZADD GT``: member user id, score the second; one key, so Redis Cluster
  needs no cross-slot work) and published on a channel; each process listens, applies what it
  hears in milliseconds, and reloads the whole set after every (re)subscription, so nothing
  published while it was disconnected is lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger("bastion.auth")

__all__ = ["MemoryRevocations", "RedisRevocations", "Revocations"]

LEEWAY = 60  # seconds beyond the token lifetime an entry is kept (verifier clock skew)


class Revocations(Protocol):
    def not_before(self, user_id: uuid.UUID) -> int:
        """The second of *user_id*'s latest revocation (``-1`` when none is live)."""
        ...

    async def revoke(self, user_id: uuid.UUID, moment: float) -> None:
        """Refuse every access token of *user_id* issued at or before *moment*."""
        ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


class MemoryRevocations:
    """In-process revocations (one process)."""

    def __init__(self, *, ttl: int, clock: Callable[[], float] = time.time) -> None:
        self.keep = ttl + LEEWAY
        self.clock = clock
        self._seconds: dict[uuid.UUID, int] = {}

    def not_before(self, user_id: uuid.UUID) -> int:
        return self._seconds.get(user_id, -1)

    def _apply(self, user_id: uuid.UUID, second: int) -> None:
        if second > self._seconds.get(user_id, -1):
            self._seconds[user_id] = second

    async def revoke(self, user_id: uuid.UUID, moment: float) -> None:
        self._apply(user_id, int(moment))
        self._prune()

    def _prune(self) -> None:
        horizon = int(self.clock()) - self.keep
        stale = [user for user, second in self._seconds.items() if second < horizon]
        for user in stale:
            del self._seconds[user]

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


class RedisRevocations(MemoryRevocations):
    """Revocations shared through Redis: a sorted set plus a pub/sub channel."""

    def __init__(
        self,
        url: str,
        *,
        ttl: int,
        key: str = "bastion:revoked",
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(ttl=ttl, clock=clock)
        from redis.asyncio import Redis

        self.url = url
        self.key = key
        self.channel = key + ":events"
        self._redis: Any = Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
        # The subscriber blocks in reads by design: no read timeout, a PING every 5 s instead
        # (a dead connection is noticed and the set reloaded after resubscribing).
        self._subscriber: Any = Redis.from_url(
            url, socket_connect_timeout=3, health_check_interval=5
        )
        self._listener: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def revoke(self, user_id: uuid.UUID, moment: float) -> None:
        second = int(moment)
        self._apply(user_id, second)  # this process at once
        member = str(user_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zadd(self.key, {member: second}, gt=True)
            pipe.zremrangebyscore(self.key, "-inf", f"({int(self.clock()) - self.keep}")
            pipe.publish(self.channel, f"{member} {second}")
            await pipe.execute()

    async def start(self) -> None:
        """Subscribe and load the live set; waits (at most 5 s) for the first load."""
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="bastion-revocations")
        try:
            async with asyncio.timeout(5):
                await self._ready.wait()
        except TimeoutError:
            log.error("revocations: Redis not reached yet; retrying in the background")

    async def _load(self) -> None:
        horizon = int(self.clock()) - self.keep
        entries = await self._redis.zrange(self.key, horizon, "+inf", byscore=True, withscores=True)
        for member, score in entries:
            self._apply(uuid.UUID(member.decode()), int(score))

    async def _listen(self) -> None:
        from redis.exceptions import RedisError

        delay = 0.1
        while True:
            try:
                async with self._subscriber.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self.channel)
                    await self._load()  # after subscribing: nothing falls in between
                    self._ready.set()
                    delay = 0.1
                    while True:
                        message = await pubsub.get_message(timeout=1.0)
                        if message is not None and message.get("type") == "message":
                            self._on_message(message["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, TimeoutError) as exc:
                name = type(exc).__name__
                log.warning("revocations: Redis subscription lost (%s); resubscribing", name)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _on_message(self, data: bytes) -> None:
        try:
            member, second = data.decode().split(" ")
            self._apply(uuid.UUID(member), int(second))
        except ValueError:
            log.warning("revocations: malformed message ignored")

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        await self._redis.aclose()
        await self._subscriber.aclose()
