"""Property-based fuzzing of the published OpenAPI document against a real ``bastion serve``.

schemathesis reads ``/openapi.json`` from the running server (served because
``BASTION_EXPOSE_DOCS=true``), generates schema-valid and schema-invalid requests for every
operation, sends them over TLS with a real access token, and runs all its checks on each
response: no 5xx, status codes, content types, headers and bodies as documented, valid data
accepted, invalid data refused, and operations that declare bearer security really refusing
requests without it.

The number of examples per operation and mode is ``BASTION_FUZZ_EXAMPLES`` (default 25, a
regression run well under a minute; ``make fuzz`` sets 2000). Failing examples are reported
unshrunk (each shrink step is a network round trip); set ``BASTION_FUZZ_SHRINK=1`` for minimal
ones.

Why not ``schemathesis.pytest.from_fixture``: the lazy loader of schemathesis 4.32 reads
``request.node._nodeid``, which pytest 9.2 no longer has. The public pieces used here
(``openapi.from_url``, ``APIOperation.as_strategy``, ``Case.call_and_validate``) are what that
loader drives for its fuzzing phase.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.core.errors import InvalidSchema
from schemathesis.core.result import Err, Ok

from tests.conftest import Server
from tests.integration.orders_auth import GENEROUS_LIMITS, new_user

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("BASTION_FUZZ_EXAMPLES", "25"))
SHRINK = os.environ.get("BASTION_FUZZ_SHRINK", "") == "1"
POLICY_CHECKED_BODIES = r"^/api/v1/(auth/register|password-reset/confirm)$"
# schemathesis' own annotation of what get_all_operations() yields.
Operation = schemathesis.APIOperation[Any, Any, Any, Any]


@pytest.fixture
def live(serve: Callable[..., Server]) -> tuple[schemathesis.BaseSchema, Server]:
    """The live server's own document, configured with a real token and its certificate."""
    server = serve(env={**GENEROUS_LIMITS, "BASTION_EXPOSE_DOCS": "true"})
    with server.client() as client:
        token = new_user(client)["Authorization"].removeprefix("Bearer ")
    config = SchemathesisConfig.from_dict(
        {
            "base-url": server.url,
            "tls-verify": str(server.cert_path),
            "auth": {"openapi": {"bearerAuth": {"bearer": token}}, "auto-signup": False},
            "generation": {"max-examples": EXAMPLES, "database": "none"},
            "operations": [
                {
                    # Password rules (NIST 800-63B-4: common-password list, repetition) are
                    # not expressible in JSON Schema, so a schema-valid password may rightly
                    # get 400 here. Every other check still runs on these operations.
                    "include-path-regex": POLICY_CHECKED_BODIES,
                    "checks": {"positive_data_acceptance": {"enabled": False}},
                }
            ],
        }
    )
    schema = schemathesis.openapi.from_url(
        f"{server.url}/openapi.json", config=config, verify=str(server.cert_path), timeout=10
    )
    return schema, server


def loaded(result: Ok[Operation] | Err[InvalidSchema]) -> Operation:
    """The operation, or the schema error that kept schemathesis from building it."""
    if isinstance(result, Err):
        raise result.err()
    return result.ok()


def fuzz(operation: Operation, mode: GenerationMode) -> str | None:
    """Run *operation* with generated cases; the failure report, or None."""
    try:
        strategy = operation.as_strategy(generation_mode=mode)
    except Exception as exc:  # e.g. nothing in the operation can be made invalid
        return None if mode is GenerationMode.NEGATIVE else f"cannot generate: {exc!r}"
    phases = [Phase.explicit, Phase.generate] + ([Phase.shrink] if SHRINK else [])

    @given(case=strategy)
    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=phases,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case[Operation]) -> None:
        case.call_and_validate()

    try:
        run()
    except hypothesis.errors.Unsatisfiable:
        return None if mode is GenerationMode.NEGATIVE else "no valid example could be built"
    except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup is the latter
        return f"{type(exc).__name__}: {exc}"
    return None


def test_the_api_keeps_the_promises_of_its_openapi_document(
    live: tuple[schemathesis.BaseSchema, Server],
) -> None:
    schema, server = live
    operations = [loaded(result) for result in schema.get_all_operations()]
    labels = {op.label for op in operations}
    # the document really is the live one, with the orders API in it
    assert {"POST /api/v1/orders", "GET /api/orders/{order_id}"} <= labels
    failures = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            report = fuzz(operation, mode)
            if report is not None:
                failures.append(f"== {operation.label} ({mode.value})\n{report}")
    assert not failures, "\n\n".join(failures)
    # The fuzzer really got through: authenticated, schema-valid orders were created.
    created = [
        line
        for line in server.log().splitlines()
        if '"path":"/api/v1/orders"' in line and '"status":201' in line
    ]
    assert len(created) >= min(EXAMPLES, 10)
