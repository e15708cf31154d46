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
    p.add_argument(
        "--migrate",
        action="store_true",
        help="upgrade an outdated database schema before serving (as `bastion db upgrade`)",
    )
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
    prepare(settings, migrate=args.migrate)
    sockets = server.bind(settings)
    if settings.metrics_port is not None:
        from bastion.service import metrics

        metrics.prepare_directory(settings)  # before any worker: they inherit the variable
        metrics.start_exposition(settings)
    if settings.insecure_http:
        print(INSECURE_BANNER.format(addr=f"{settings.host}:{settings.port}"), file=sys.stderr)
    log.info("%s", startup_line(settings, redirect=server.REDIRECT in sockets))
    return server.serve(settings, sockets)


def startup_line(settings: Settings, *, redirect: bool) -> str:
    """What is running, in one line: URLs, workers, database, store, mailer (no secret)."""
    host = _url_host(settings.host)
    scheme = "http" if settings.insecure_http else "https"
    urls = [f"{scheme}://{host}:{settings.port}"]
    if redirect:
        urls.append(f"http://{host}:{settings.http_port} (redirect to HTTPS)")
    if settings.metrics_port is not None:
        urls.append(f"http://{_url_host(settings.metrics_host)}:{settings.metrics_port}/metrics")
    workers = f"{settings.workers} worker{'s' if settings.workers != 1 else ''}"
    store = _without_secret(settings.redis_url) if settings.redis_url else "memory (one process)"
    if settings.mailer == "smtp":
        mailer = (
            f"smtp {settings.smtp_host}:{settings.smtp_effective_port} ({settings.smtp_security})"
        )
    else:
        mailer = f"outbox {settings.data_dir.resolve() / 'outbox.jsonl'}"
    return (
        f"bastion serving {', '.join(urls)}; {workers}; database "
        f"{_without_secret(settings.database)}; rate-limit store {store}; mailer {mailer}"
    )


def _without_secret(url: str) -> str:
    """*url* with its user and password removed (a Redis URL may hold only a password)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.hostname is None:  # a SQLite file: nothing secret, and urlunsplit would drop a /
        return url
    netloc = _url_host(parts.hostname) + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc, query=""))


def prepare(settings: Settings, *, migrate: bool = False) -> None:
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

    asyncio.run(prepare_service(settings, migrate=migrate))


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


__all__ = ["prepare", "register", "run", "startup_line"]
