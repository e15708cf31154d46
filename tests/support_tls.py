"""TLS helpers shared by the tests and bench/bench_scan.py: key files, nginx TLS configs and the
sslyze mapping."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes


def private_key_pem(key: PrivateKeyTypes) -> bytes:
    """``key`` as unencrypted PKCS#8 PEM, the form nginx, uvicorn and ``ssl`` load."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_nginx_tls_conf(tmp: Path, port: int, cert: Path, key: Path, tls: str) -> Path:
    """An nginx.conf in ``tmp`` for one foreground TLS server on 127.0.0.1:``port`` that
    answers "ok"; ``tls`` holds the server block's ssl_* lines (indented 8 spaces), which is
    all that differs between the deployments the scanner is compared on."""
    (tmp / "temp").mkdir(exist_ok=True)
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"""daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/temp;
    proxy_temp_path {tmp}/temp;
    fastcgi_temp_path {tmp}/temp;
    uwsgi_temp_path {tmp}/temp;
    scgi_temp_path {tmp}/temp;
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name localhost;
        ssl_certificate {cert};
        ssl_certificate_key {key};
{tls}
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""
    )
    return conf


# Mozilla compliance issues (sslyze's checker) -> the bastion controls that must fail for them.
# tls_curves maps to the informational profile control (X448/P-521 are not weak, RFC 8422).
# Used by tests/integration/test_tls_compare.py (the assertion) and bench/bench_scan.py (the
# report), so the two cannot drift apart.
MOZILLA_TO_BASTION: dict[str, tuple[str, ...]] = {
    "tls_versions": (
        "tls.protocol-sslv2", "tls.protocol-sslv3", "tls.protocol-tls10", "tls.protocol-tls11",
    ),
    "ciphers": (
        "tls.cipher-cbc", "tls.cipher-static-kex", "tls.cipher-null", "tls.cipher-anonymous",
        "tls.cipher-rc4", "tls.cipher-3des", "tls.cipher-low-strength",
    ),
    "tls_curves": ("tls.ecdh-curves-profile", "tls.ecdh-curves"),
    "ecdh_param_size": ("tls.ecdh-curves",),
    "dh_param_size": ("tls.dh-params",),
    "certificate_path_validation": (
        "tls.cert-trust", "tls.cert-expired", "tls.cert-hostname", "tls.cert-strict-chain",
    ),
    "rsa_key_size": ("tls.cert-key-size",),
    "certificate_signatures": ("tls.cert-signature",),
    "maximum_certificate_lifespan": ("tls.cert-lifespan",),
    "tls_vulnerability_compression": ("tls.compression",),
    "tls_vulnerability_fallback_scsv": ("tls.fallback-scsv",),
    "tls_vulnerability_renegotiation": ("tls.secure-renegotiation",),
    "tls_vulnerability_extended_master_secret": ("tls.extended-master-secret",),
}  # fmt: skip
