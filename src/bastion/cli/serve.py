"""``bastion serve``: the reference service over HTTPS, plus the plain-HTTP redirect listener.

This module reads the command line and prepares the data directory; the server runtime —
listeners, TLS, the HTTP protocol with its limits and timeouts, workers — is
:mod:`bastion.server`. Order at start: validate the settings, prepare the data directory
(certificate, signing keys, database schema) once, bind every listening socket (so a busy
port is one clear line, not a traceback), then serve.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

from bastion.config import Settings, load_settings
from bastion.errors import ConfigError
from bastion.server.tls import ensure_self_signed

log = logging.getLogger("bastion.serve")

INSECURE_BANNER = """\
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!! WARNING: --insecure-http: serving PLAIN HTTP on {addr}.
!! Tokens, passwords and cookies cross the network unencrypted unless a
!! TLS-terminating proxy sits in front (list it in BASTION_TRUSTED_PROXIES).
!! Never expose this port directly.
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("serve", help="run the reference orders API over HTTPS")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="HTTPS port (default 8443)")
    p.add_argument("--http-port", type=int, help="plain-HTTP redirect port (default 8080; 0: off)")
    p.add_argument("--cert", type=Path, help="PEM certificate chain (with --key)")
    p.add_argument("--key", type=Path, help="PEM private key (with --cert)")
    p.add_argument(
        "--insecure-http",
        action="store_true",
        default=None,
        help="serve plain HTTP on --port, for use behind a TLS-terminating proxy only",
    )
    p.add_argument("--workers", type=int, help="worker processes (default 1)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(
        host=args.host,
        port=args.port,
        http_port=args.http_port,
        cert=args.cert,
        key=args.key,
        insecure_http=args.insecure_http,
        workers=args.workers,
    )
    if (settings.cert is None) != (settings.key is None):
        raise ConfigError("--cert/--key", "give both a certificate and its key, or neither")
    from bastion.server import serve as server  # the runtime: uvicorn is imported from here

    server.configure_logging(settings)
    _export(settings)  # worker processes rebuild the settings from the environment
    prepare(settings)
    sockets = server.bind(settings)
    if settings.insecure_http:
        print(INSECURE_BANNER.format(addr=f"{settings.host}:{settings.port}"), file=sys.stderr)
    scheme = "http" if settings.insecure_http else "https"
    log.info("bastion serving %s://%s:%d", scheme, _url_host(settings.host), settings.port)
    if server.REDIRECT in sockets:
        log.info("redirecting http://%s:%d to HTTPS", _url_host(settings.host), settings.http_port)
    return server.serve(settings, sockets)


def prepare(settings: Settings) -> None:
    """One-time start-up work done by the parent before any worker exists."""
    from bastion.server.permissions import private_umask, tighten

    private_umask()  # every file written from now on (database, WAL, keys, outbox) is 0600
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    tighten(settings.data_dir)  # what an older run or a pre-made directory left wider
    if settings.workers > 1 and not settings.redis_url:
        log.warning(
            "%d workers without BASTION_REDIS_URL: rate limits and access-token revocations "
            "are per worker process (a logout is seen by one worker only); set "
            "BASTION_REDIS_URL to share them",
            settings.workers,
        )
    if not settings.insecure_http and settings.cert is None:
        ensure_self_signed(settings.data_dir / "tls")
    if settings.cert is not None and settings.key is not None:
        from bastion.server.tls import server_context

        server_context(settings.cert, settings.key)  # a bad pair fails here, in one line

    from bastion.service.main import prepare as prepare_service

    asyncio.run(prepare_service(settings))


def _export(settings: Settings) -> None:
    """Put the effective settings that flags may have changed into the environment."""
    values: dict[str, Any] = {
        "HOST": settings.host,
        "PORT": settings.port,
        "HTTP_PORT": settings.http_port,
        "INSECURE_HTTP": str(settings.insecure_http).lower(),
        "WORKERS": settings.workers,
        "DATA_DIR": settings.data_dir.resolve(),
    }
    if settings.cert is not None and settings.key is not None:
        values["CERT"] = settings.cert.resolve()
        values["KEY"] = settings.key.resolve()
    for name, value in values.items():
        os.environ[f"BASTION_{name}"] = str(value)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


__all__ = ["prepare", "register", "run"]
