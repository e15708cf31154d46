"""The open-file limit is raised to what the connection cap needs (server/files.py).

Only the soft limit is lowered here (a process can raise it back up to the hard limit); the
case of a hard limit too low is run against a real `bastion serve` started with one
(tests/integration/test_transport_serve.py).
"""

from __future__ import annotations

import resource
from collections.abc import Iterator

import pytest

from bastion.server.files import RESERVED, open_file_budget


@pytest.fixture
def low_soft_limit() -> Iterator[int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 512 + RESERVED:
        pytest.skip(f"hard open-file limit {hard} is too low for this test")
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    try:
        yield hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_soft_limit_is_raised_to_the_cap_plus_the_reserve(low_soft_limit: int) -> None:
    budget = open_file_budget(512)
    assert budget.connections == 512 and budget.warning is None
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == 512 + RESERVED


def test_without_raising_the_budget_is_what_fits_and_says_why(low_soft_limit: int) -> None:
    budget = open_file_budget(4096, raise_limit=False)
    assert budget.connections == 256 - RESERVED
    assert budget.warning is not None
    assert "BASTION_MAX_CONNECTIONS=4096" in budget.warning and "ulimit -Hn" in budget.warning
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == 256  # untouched
