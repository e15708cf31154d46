"""The start-up check of BASTION_REDIS_URL against real password-protected and TLS Redis."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from bastion.errors import ConfigError
from bastion.service.redis_check import check_redis
from tests.support import free_port
from tests.support_redis import PrivateRedis, start_redis

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    server = start_redis(tmp_path_factory.mktemp("redis-check"))
    try:
        yield server
    finally:
        server.stop()


def check(url: str) -> None:
    asyncio.run(check_redis(url, socket_timeout=1.0))


def test_the_right_url_passes(locked: PrivateRedis) -> None:
    check(locked.url)


@pytest.mark.parametrize(
    "credentials", ["", ":wrong-password@", "default:wrong-password@", "nobody:{password}@"]
)
def test_credentials_redis_refuses_are_one_line_without_the_url(
    locked: PrivateRedis, credentials: str
) -> None:
    url = locked.url.replace(
        f":{quote(locked.password, safe='')}@",
        credentials.format(password=quote(locked.password, safe="")),
    )
    assert url != locked.url
    with pytest.raises(ConfigError) as refused:
        check(url)
    message = str(refused.value)
    assert message.startswith("BASTION_REDIS_URL: Redis refused the credentials")
    assert "wrong-password" not in message and locked.password not in message
    assert "\n" not in message


def test_a_certificate_the_client_does_not_trust_is_one_line(locked: PrivateRedis) -> None:
    if not locked.tls:
        pytest.skip("this redis-server was built without TLS")
    with pytest.raises(ConfigError, match=r"TLS certificate is not trusted .*ssl_ca_certs"):
        check(locked.url.split("?", 1)[0])


def test_a_redis_that_does_not_answer_is_only_a_warning(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    with caplog.at_level(logging.WARNING, logger="bastion.serve"):
        check(f"redis://:secret-password@127.0.0.1:{free_port()}/0")
    assert "Redis does not answer yet (ConnectionError)" in caplog.text
    assert "secret-password" not in caplog.text


def test_a_malformed_url_is_one_line() -> None:
    with pytest.raises(ConfigError, match=r"^BASTION_REDIS_URL: not a usable Redis URL"):
        check("redis://127.0.0.1:notaport/0")
