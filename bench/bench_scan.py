"""Wall time of a full passive ``bastion scan`` next to sslyze and testssl.sh, same targets.

Run: ``.venv/bin/python bench/bench_scan.py [--repeat N] [--no-testssl] [--no-nginx]``.

Targets, all on loopback:

* a real ``bastion serve`` (subprocess, its own data dir; scanned with ``--ca-file`` pointing
  at the certificate it generated, and ``--http-url`` for its redirect listener);
* a deliberately weak nginx (TLS 1.0-1.3 where the local OpenSSL allows, CBC and static-RSA
  suites, a 1024-bit expired self-signed certificate), when nginx is installed.

For each target it prints the wall time of bastion (full passive scan in-process, the TLS
probe alone, and the CLI as a subprocess with interpreter start-up), of sslyze's default scan
(Python API) and, for ``bastion serve``, of testssl.sh's default run; then every problem
sslyze's Mozilla-intermediate check reports and the bastion control that found it.
Goal: full passive scan < 3 s while finding every TLS problem sslyze finds.
sslyze is AGPL-3.0: it is a test/bench dependency only, never imported by bastion.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bastion.scanner.context import ScanOptions
from bastion.scanner.runner import scan
from bastion.scanner.tls import probe_tls
from tests.support import free_port
from tests.support_tls import MOZILLA_TO_BASTION, private_key_pem, write_nginx_tls_conf

# CBC suites, static-RSA key exchange; SECLEVEL 0 lets OpenSSL 3 load a 1024-bit key
WEAK_CIPHERS = (
    "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-SHA384:ECDHE-RSA-AES128-SHA:"
    "AES128-SHA:AES256-GCM-SHA384:@SECLEVEL=0"
)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (OSError, httpx.HTTPError):
            pass
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


@contextmanager
def bastion_serve(tmp: Path) -> Iterator[tuple[int, int, Path]]:
    port, http_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    env["BASTION_DATA_DIR"] = str(tmp / "data")
    log = (tmp / "serve.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bastion",
            "serve",
            "--port",
            str(port),
            "--http-port",
            str(http_port),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp,
    )
    cert = tmp / "data" / "tls" / "cert.pem"
    try:
        wait_for(
            lambda: (
                cert.exists()
                and httpx.get(f"https://localhost:{port}/healthz", verify=str(cert)).status_code
                == 200
            ),
            "bastion serve",
        )
        yield port, http_port, cert
    finally:
        process.terminate()
        process.wait(15)
        log.close()


def weak_certificate(tmp: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=60))
        .not_valid_after(now - dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "weak.pem", tmp / "weak.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(private_key_pem(key))
    return cert_path, key_path


@contextmanager
def weak_nginx(tmp: Path) -> Iterator[int]:
    nginx = shutil.which("nginx")
    if nginx is None:
        raise FileNotFoundError("nginx")
    port = free_port()
    cert, key = weak_certificate(tmp)
    tls = f"""        ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;
        ssl_ciphers "{WEAK_CIPHERS}";"""
    conf = write_nginx_tls_conf(tmp, port, cert, key, tls)
    with (tmp / "stderr.log").open("wb") as stderr:
        process = subprocess.Popen(
            [nginx, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:

        def listening() -> bool:
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", port)) == 0

        wait_for(listening, "nginx")
        yield port
    finally:
        process.terminate()
        process.wait(10)


def timed(fn: Callable[[], Any], repeat: int) -> tuple[list[float], Any]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return times, result


def run_sslyze(port: int, ca_file: Path | None) -> Any:
    from sslyze import (
        CertificateInfoExtraArgument,
        ScanCommandsExtraArguments,
        Scanner,
        ServerNetworkLocation,
        ServerScanRequest,
    )

    extra = ScanCommandsExtraArguments(
        certificate_info=CertificateInfoExtraArgument(custom_ca_file=ca_file) if ca_file else None
    )
    scanner = Scanner()
    scanner.queue_scans(
        [
            ServerScanRequest(
                server_location=ServerNetworkLocation("localhost", port, "127.0.0.1"),
                scan_commands_extra_arguments=extra,
            )
        ]
    )
    (result,) = list(scanner.get_results())
    return result


def mozilla_issues(result: Any) -> dict[str, str]:
    from sslyze.mozilla_tls_profile.tls_config_checker import (
        MozillaTlsConfiguration,
        ServerNotCompliantWithTlsConfiguration,
        TlsConfigurationEnum,
        check_server_against_tls_configuration,
    )

    config = MozillaTlsConfiguration.get(TlsConfigurationEnum.MOZILLA_INTERMEDIATE)
    try:
        check_server_against_tls_configuration(result, config)
    except ServerNotCompliantWithTlsConfiguration as exc:
        return dict(exc.issues)
    return {}


def run_testssl(port: int, tmp: Path) -> tuple[float, int] | None:
    testssl = shutil.which("testssl") or shutil.which("testssl.sh")
    if testssl is None:
        return None
    out = tmp / "testssl.json"
    started = time.perf_counter()
    subprocess.run(
        [testssl, "--quiet", "--warnings", "off", "--color", "0", "--ip", "127.0.0.1",
         "--jsonfile", str(out), f"https://localhost:{port}"],
        check=False, capture_output=True, timeout=600,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    findings = json.loads(out.read_text()) if out.exists() else []
    return elapsed, len(findings)


def fmt(times: list[float]) -> str:
    if len(times) == 1:
        return f"{times[0]:.2f} s"
    return f"{statistics.median(times):.2f} s (min {min(times):.2f})"


Target = tuple[int, Path | None, str | None]  # port, --ca-file, --http-url


@contextmanager
def _scan_target(
    open_target: Callable[[], AbstractContextManager[Target]], shared: Target, fresh: bool
) -> Iterator[Target]:
    if fresh:
        with open_target() as target:
            yield target
    else:
        yield shared


def bench_target(
    label: str,
    open_target: Callable[[], AbstractContextManager[Target]],
    *,
    fresh: bool,
    repeat: int,
    tmp: Path,
    testssl: bool,
) -> list[tuple[str, str, str]]:
    """``fresh``: every timed scan gets a new server. bastion serve rate-limits its API
    (100 requests / 15 min, slow-down after 50, contract): a second scan from the same
    address within 15 minutes is slowed down by design, which is not the scanner's cost."""
    rows: list[tuple[str, str, str]] = []
    with open_target() as shared:
        times: list[float] = []
        cli_times: list[float] = []
        report = None
        for _ in range(repeat):
            with _scan_target(open_target, shared, fresh) as (port, ca_file, http_url):
                options = ScanOptions(ca_file=str(ca_file) if ca_file else None, http_url=http_url)
                started = time.perf_counter()
                report = asyncio.run(scan(f"https://localhost:{port}/", options))
                times.append(time.perf_counter() - started)
            with _scan_target(open_target, shared, fresh) as (port, ca_file, http_url):
                cli = [sys.executable, "-m", "bastion", "scan", f"https://localhost:{port}/"]
                cli += ["--format", "json"]
                cli += ["--ca-file", str(ca_file)] if ca_file else []
                cli += ["--http-url", http_url] if http_url else []
                started = time.perf_counter()
                subprocess.run(cli, capture_output=True, check=False)
                cli_times.append(time.perf_counter() - started)
        assert report is not None
        tls = [f for f in report.findings if f.category == "tls"]
        rows.append(
            (
                label,
                "bastion scan (full passive, in-process)",
                f"{fmt(times)}; grade {report.grade} {report.score}; "
                f"{len(report.findings)} controls, {report.requests} HTTP requests",
            )
        )
        port, ca_file, _http_url = shared
        ca = str(ca_file) if ca_file else None
        probe_times, facts = timed(
            lambda: asyncio.run(probe_tls("localhost", port, ca_file=ca)), repeat
        )
        rows.append(
            (
                label,
                "bastion TLS probe alone",
                f"{fmt(probe_times)}; {facts.handshakes} connections",
            )
        )
        rows.append((label, "bastion CLI (subprocess, incl. start-up)", fmt(cli_times)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sslyze_times, sslyze_result = timed(lambda: run_sslyze(port, ca_file), repeat)
            issues = mozilla_issues(sslyze_result)
        rows.append((label, "sslyze default scan (Python API)", f"{fmt(sslyze_times)}; TLS only"))
        if testssl:
            outcome = run_testssl(port, tmp)
            text = (
                "not installed" if outcome is None else f"{outcome[0]:.1f} s; {outcome[1]} findings"
            )
            rows.append((label, "testssl.sh default run", text))

    failing = {f.id for f in tls if f.status == "fail"}
    for key, message in sorted(issues.items()):
        found = [c for c in MOZILLA_TO_BASTION.get(key, ()) if c in failing]
        verdict = f"found by {', '.join(found)}" if found else "MISSED by bastion"
        rows.append((label, f"sslyze: {key}", f"{message[:70]} -> {verdict}"))
    if not issues:
        rows.append((label, "sslyze: Mozilla intermediate", "compliant (no problem to find)"))
    rows.append((label, "bastion TLS failures", ", ".join(sorted(failing)) or "none"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-testssl", action="store_true", help="skip the ~60-90 s testssl run")
    parser.add_argument("--no-nginx", action="store_true", help="skip the weak nginx target")
    args = parser.parse_args()
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-scan-") as name:
        tmp = Path(name)

        @contextmanager
        def serve_target() -> Iterator[Target]:
            with bastion_serve(Path(tempfile.mkdtemp(dir=tmp))) as (port, http_port, cert):
                yield port, cert, f"http://localhost:{http_port}"

        rows += bench_target(
            "bastion serve",
            serve_target,
            fresh=True,
            repeat=args.repeat,
            tmp=tmp,
            testssl=not args.no_testssl,
        )
        if not args.no_nginx and shutil.which("nginx"):

            @contextmanager
            def nginx_target() -> Iterator[Target]:
                with weak_nginx(Path(tempfile.mkdtemp(dir=tmp))) as port:
                    yield port, None, None

            rows += bench_target(
                "weak nginx", nginx_target, fresh=False, repeat=args.repeat, tmp=tmp, testssl=False
            )
        elif not args.no_nginx:
            rows.append(("weak nginx", "skipped", "nginx is not installed"))
    width = max(len(r[1]) for r in rows)
    current = ""
    for target, what, value in rows:
        if target != current:
            print(f"\n== {target} ==")
            current = target
        print(f"  {what:<{width}}  {value}")


if __name__ == "__main__":
    main()
