"""`bastion nginx-config`: validated inputs, a config nginx accepts, and a real proxy in front."""

from __future__ import annotations

import json
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bastion.cli.nginx import render
from bastion.errors import ConfigError
from bastion.server.tls import ensure_self_signed
from tests.conftest import Server, start_server
from tests.support import free_port, require_program, wait_until


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"server_name": "api.example.com; evil"}, "--server-name"),
        ({"server_name": "api.example.com\nserver_name x"}, "--server-name"),
        ({"upstream": "ftp://127.0.0.1:21"}, "--upstream"),
        ({"upstream": "http://127.0.0.1:8000/path"}, "--upstream"),
        ({"upstream": "http://user@127.0.0.1:8000"}, "--upstream"),
        ({"upstream": "https://127.0.0.1:8000"}, "--upstream-ca"),
        ({"cert": "/etc/x.pem; include /etc/shadow"}, "--cert"),
        ({"https_port": 0}, "--https-port"),
    ],
)
def test_unsafe_values_are_refused_naming_the_flag(kwargs: dict[str, Any], flag: str) -> None:
    args: dict[str, Any] = {
        "server_name": "api.example.com",
        "upstream": "http://127.0.0.1:8000",
    }
    args.update(kwargs)
    with pytest.raises(ConfigError) as info:
        render(**args)
    assert info.value.name == flag


def test_config_overwrites_forwarding_headers_and_limits_tls() -> None:
    text = render("api.example.com", "http://127.0.0.1:8000")
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in text
    assert "$proxy_add_x_forwarded_for" not in text  # appending would keep a forged hop
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in text
    assert "server_tokens off;" in text
    assert "/etc/letsencrypt/live/api.example.com/fullchain.pem" in text


def _nginx_conf(tmp: Path, site: str) -> Path:
    (tmp / "site.conf").write_text(site)
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / sub).mkdir(exist_ok=True)
    main = tmp / "nginx.conf"
    main.write_text(
        f"""daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {tmp}/site.conf;
}}
"""
    )
    return main


def test_nginx_accepts_the_generated_config(tmp_path: Path) -> None:
    nginx = require_program("nginx")
    tls = ensure_self_signed(tmp_path / "tls")
    site = render(
        "localhost",
        "http://127.0.0.1:8000",
        cert=str(tls.cert),
        key=str(tls.key),
        https_port=free_port(),
        http_port=free_port(),
    )
    conf = _nginx_conf(tmp_path, site)
    result = subprocess.run(
        [nginx, "-t", "-c", str(conf)], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[tuple[Server, int, int, Path]]:
    """bastion behind nginx: nginx terminates TLS, bastion trusts only nginx's forwarding."""
    nginx = require_program("nginx")
    backend = start_server(
        tmp_path, insecure_http=True, env={"BASTION_TRUSTED_PROXIES": "127.0.0.1"}
    )
    tls = ensure_self_signed(tmp_path / "edge-tls")
    https_port, http_port = free_port(), free_port()
    site = render(
        "localhost",
        backend.url,
        cert=str(tls.cert),
        key=str(tls.key),
        https_port=https_port,
        http_port=http_port,
    )
    conf = _nginx_conf(tmp_path, site)
    process = subprocess.Popen([nginx, "-c", str(conf)], stderr=subprocess.DEVNULL)
    ctx = ssl.create_default_context(cafile=str(tls.cert))
    try:
        wait_until(
            lambda: (
                httpx.get(f"https://localhost:{https_port}/healthz", verify=ctx).status_code == 200
            ),
            what="nginx in front of bastion",
        )
        yield backend, https_port, http_port, tls.cert
    finally:
        process.terminate()
        process.wait(10)
        backend.stop()


@pytest.mark.integration
def test_requests_through_the_proxy_carry_bastions_headers(
    proxied: tuple[Server, int, int, Path],
) -> None:
    _backend, https_port, _http_port, cert = proxied
    ctx = ssl.create_default_context(cafile=str(cert))
    response = httpx.get(f"https://localhost:{https_port}/healthz", verify=ctx)
    assert response.status_code == 200
    assert response.headers["strict-transport-security"].startswith("max-age=31536000")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "server" not in response.headers or "nginx/" not in response.headers["server"]


@pytest.mark.integration
def test_plain_http_at_the_edge_redirects_safe_methods_only(
    proxied: tuple[Server, int, int, Path],
) -> None:
    _backend, https_port, http_port, _cert = proxied
    get = httpx.get(f"http://localhost:{http_port}/api/v1/orders?x=1")
    assert get.status_code == 301
    assert get.headers["location"] == f"https://localhost:{https_port}/api/v1/orders?x=1"
    post = httpx.post(f"http://localhost:{http_port}/api/v1/auth/login", json={})
    assert post.status_code == 403
    assert json.loads(post.text) == {"error": "HTTPS required"}


@pytest.mark.integration
def test_trace_is_refused_at_the_edge(proxied: tuple[Server, int, int, Path]) -> None:
    _backend, https_port, _http_port, cert = proxied
    ctx = ssl.create_default_context(cafile=str(cert))
    assert httpx.request("TRACE", f"https://localhost:{https_port}/", verify=ctx).status_code == 405
