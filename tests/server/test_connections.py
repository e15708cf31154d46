"""Connection caps, the warning throttle and the client address (server/connections.py).

The caps' behaviour against real sockets is in tests/integration/test_transport_serve.py;
here, the bookkeeping: a place per connection, given back exactly once, no entry kept per
address ever seen, and warnings bounded whatever the flood.
"""

from __future__ import annotations

import logging

import pytest

from bastion.server.connections import ConnectionCaps, WarningThrottle, client_address


def _caps(per_client: int = 2, total: int = 3) -> ConnectionCaps:
    return ConnectionCaps(per_client=per_client, total=total)


def test_each_address_gets_its_cap_and_the_process_its_own() -> None:
    caps = _caps()
    first = [caps.admit("10.0.0.1", 0.0) for _ in range(2)]
    assert all(first)
    assert caps.admit("10.0.0.1", 0.0) is None  # over the per-client cap
    assert caps.admit("10.0.0.2", 0.0) is not None
    assert caps.admit("10.0.0.3", 0.0) is None  # over the process cap
    assert caps.open == 3


def test_release_is_idempotent_and_forgets_empty_addresses() -> None:
    caps = _caps()
    connection = caps.admit("10.0.0.1", 0.0)
    assert connection is not None
    connection.release()
    connection.release()  # the handshake failure and connection_lost may both call it
    assert caps.open == 0
    assert caps.by_address == {}  # no memory per address once its connections are gone


def test_many_addresses_come_and_go_without_growth() -> None:
    caps = _caps(per_client=1, total=10)
    for n in range(10_000):
        connection = caps.admit(f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}", 0.0)
        assert connection is not None
        connection.release()
    assert caps.by_address == {} and caps.open == 0


def test_refusals_are_warned_at_most_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    throttle = WarningThrottle(logging.getLogger("test.throttle"), interval=3600)
    caps = ConnectionCaps(per_client=1, total=100, throttle=throttle)
    assert caps.admit("10.0.0.1", 0.0) is not None
    with caplog.at_level(logging.WARNING, logger="test.throttle"):
        for _ in range(1000):
            assert caps.admit("10.0.0.1", 0.0) is None
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert "10.0.0.1" in lines[0] and "BASTION_MAX_CONNECTIONS_PER_CLIENT" in lines[0]


def test_a_warning_after_the_interval_says_how_many_were_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    throttle = WarningThrottle(logging.getLogger("test.throttle2"), interval=0)
    with caplog.at_level(logging.WARNING, logger="test.throttle2"):
        throttle.warn("k", "first")
        throttle.interval = 3600
        throttle.warn("k", "second")
        throttle.warn("k", "third")
        throttle.interval = 0
        throttle.warn("k", "fourth")
    assert [r.getMessage() for r in caplog.records] == [
        "first",
        "fourth (2 more since the last warning)",
    ]


@pytest.mark.parametrize(
    ("peer", "address"),
    [
        (("127.0.0.1", 5000), "127.0.0.1"),
        (("::ffff:192.0.2.7", 5000, 0, 0), "192.0.2.7"),  # IPv4 on a dual-stack socket
        (("2001:db8::1", 5000, 0, 0), "2001:db8::1"),
        (("::ffff:zz", 1), "::ffff:zz"),
    ],
)
def test_client_address(peer: tuple[object, ...], address: str) -> None:
    assert client_address(peer) == address
