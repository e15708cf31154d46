"""``BASTION_REDIS_URL`` checked once at start, before anything is served.

A Redis that refuses the URL's credentials, or whose TLS certificate is not trusted, is a
setting to fix: one line and exit status 2, like any bad setting. A Redis that does not answer
is only a warning: it may come up after bastion, and the limits' failure policy
(``BASTION_RATELIMIT_STORE_FAILURE``) covers an outage at any time. Messages never repeat the
URL, which may hold a password.
"""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisError
from redis.retry import Retry

from bastion.errors import ConfigError

__all__ = ["check_redis"]

log = logging.getLogger("bastion.serve")

SETTING = "BASTION_REDIS_URL"


async def check_redis(url: str, *, socket_timeout: float = 3.0) -> None:
    """Raise ConfigError for credentials or a certificate Redis or TLS refuses; else return."""
    try:
        client = Redis.from_url(
            url,
            socket_connect_timeout=socket_timeout,
            socket_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 0),
        )
    except (ValueError, TypeError) as exc:
        raise ConfigError(SETTING, f"not a usable Redis URL ({exc})") from None
    try:
        await client.ping()
    except AuthenticationError:
        await _settle()
        raise ConfigError(
            SETTING,
            "Redis refused the credentials (give the password in the URL, percent-encoded: "
            "redis://:PASSWORD@host:6379/0)",
        ) from None
    except RedisError as exc:
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            await _settle()
            raise ConfigError(
                SETTING,
                "the Redis server's TLS certificate is not trusted (for a private CA add "
                "?ssl_ca_certs=/path/to/ca.pem to the URL)",
            ) from None
        log.warning(
            "Redis does not answer yet (%s): the rate limits follow "
            "BASTION_RATELIMIT_STORE_FAILURE until it does",
            exc.__class__.__name__,
        )
    finally:
        await client.aclose()


async def _settle() -> None:
    """Let a refused TLS connection finish closing before the caller's loop ends.

    redis-py drops the connection and returns while the TLS close is still under way; a loop
    that ends at once (the start-up stops right after this check) leaves the socket to the
    garbage collector, which warns about it.
    """
    await asyncio.sleep(0.05)
