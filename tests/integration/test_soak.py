"""A short soak of a real `bastion serve` (bench/soak.py runs the minute-long one).

Real TLS, real tokens, orders created and read back by concurrent keep-alive clients for a
few seconds: no error of any kind, and resident memory (from /proc) grows by less than 10%
after the warm-up.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from bench.soak import RAISED_LIMITS, soak
from tests.conftest import start_server

pytestmark = pytest.mark.integration


def test_a_short_soak_has_no_errors_and_bounded_memory(tmp_path: Path) -> None:
    server = start_server(tmp_path, env=dict(RAISED_LIMITS))
    try:
        verify = server.verify
        assert isinstance(verify, ssl.SSLContext)
        result = asyncio.run(
            soak(server.url, verify, server.process.pid, seconds=4, concurrency=8, warm_up=1.5)
        )
    finally:
        server.stop()
    assert result.requests > 20, result.report()
    assert not result.errors, result.report()
    assert result.throttled == 0, result.report()  # the limits are raised for the soak
    assert result.growth < 0.10, result.report()
    assert "Traceback" not in server.log()
