"""The depth flags on the command line: --openapi, --operation-budget, --token-b/--auth-b,
--origin, --login-email, --expired-token. Bad values are one line and exit 2; a real scan of
a loopback TLS server with two identities reports BOLA, the coverage, and no secret."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.scanner.apps import mint
from tests.scanner.depth_apps import FRONT_END, KNOWN_EMAIL, orders_api, spec_document
from tests.scanner.servers import Certs, Running, make_certs, running
from tests.scanner.test_cli_scan import bastion, bind_capsys, one_line_error

__all__ = ["bind_capsys"]  # the autouse fixture the in-process CLI helper needs


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--origin", "example.com"], "expected scheme://host[:port]"),
        (["--origin", "https://app.example/path"], "expected scheme://host[:port]"),
        (["--token-b", "x", "--auth-b", "X-Api-Key: y"], "give --token-b or --auth-b, not both"),
        (["--auth-b", "NoColon"], "expected 'Name: value'"),
        (["--openapi", "/nonexistent/openapi.json"], "no such file"),
        (["--openapi", "https://elsewhere.example/openapi.json"], "not on the scanned origin"),
        (["--login-email", "nobody"], "not an e-mail address"),
        (["--operation-budget", "-1"], "--operation-budget must be an integer"),
    ],
)
def test_bad_depth_flags_are_one_line_and_exit_2(args: list[str], expected: str) -> None:
    assert expected in one_line_error(bastion("https://127.0.0.1:1/", *args))


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def bola_server(certs: Certs) -> Iterator[Running]:
    with running(orders_api(mount="/svc", bola=True, spec=False).app, certs=certs) as server:
        yield server


def test_two_identities_on_the_command_line(
    bola_server: Running, certs: Certs, tmp_path: Path
) -> None:
    document = tmp_path / "openapi.json"
    document.write_text(json.dumps(spec_document()))
    token_a, token_b = mint(sub="user-1"), mint(sub="user-2")
    expired = mint(sub="user-1", lifetime=-3600)
    result = bastion(
        bola_server.url + "svc/api/v1/",
        "--format",
        "json",
        "--ca-file",
        str(certs.ca),
        "--openapi",
        str(document),
        "--token",
        token_a,
        "--token-b",
        token_b,
        "--expired-token",
        expired,
        "--origin",
        FRONT_END,
        "--login-email",
        KNOWN_EMAIL,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    status = {f["id"]: f["status"] for f in report["findings"]}
    assert status["auth.bola"] == "fail"
    assert status["jwt.expired"] == "pass"
    assert status["cors.trusted-origin-variants"] == "pass"
    assert report["coverage"]["source"] == f"openapi {document}"
    assert report["coverage"]["probed"] == 3
    for secret in (token_a, token_b, expired):
        assert secret not in result.stdout
        assert secret.split(".")[2] not in result.stdout
