"""Server-side TLS: the hardened context and the self-signed development certificate.

The context follows the contract (and Mozilla's "intermediate" profile minus TLS 1.2 CBC):
TLS 1.2 and 1.3 only (RFC 8996 deprecates 1.0/1.1), TLS 1.2 suites limited to ECDHE key
exchange with AEAD ciphers (AES-GCM, ChaCha20-Poly1305), no compression (CRIME), no
client-initiated renegotiation.

The generated certificate is a *leaf*, not a CA: TLS scanners such as sslyze reject a
certificate that is its own CA, and browsers refuse a CA certificate as a server identity.
So it carries ``CA:FALSE``, ``serverAuth``, and subjectAltNames for ``localhost``,
``127.0.0.1`` and ``::1``, on an ECDSA P-256 key written with mode 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bastion.errors import ConfigError

# OpenSSL names: ECDHE key exchange (forward secrecy) with AEAD ciphers only, for TLS 1.2.
# TLS 1.3 suites are all AEAD and forward-secret; OpenSSL configures them separately.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!SHA1:!SHA256:!SHA384"
CERT_VALIDITY_DAYS = 365
RENEW_BEFORE_DAYS = 30


@dataclass(frozen=True, slots=True)
class CertPaths:
    """Where a certificate and its private key live."""

    cert: Path
    key: Path


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server SSLContext for *cert*/*key* with bastion's protocol and cipher policy."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    harden(ctx)
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            "--cert/--key", f"cannot load certificate {cert} with key {key}: {exc}"
        ) from None
    return ctx


def harden(ctx: ssl.SSLContext) -> ssl.SSLContext:
    """Apply the protocol, cipher and option policy to an existing server context."""
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    ctx.options |= ssl.OP_SINGLE_ECDH_USE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def ensure_self_signed(directory: Path, hostnames: tuple[str, ...] = ("localhost",)) -> CertPaths:
    """Return the development certificate in *directory*, creating or renewing it when needed.

    An existing certificate is reused while it is valid for more than 30 days, so clients
    that pinned it (``curl --cacert``, a browser exception) keep working across restarts.
    """
    paths = CertPaths(directory / "cert.pem", directory / "key.pem")
    if paths.cert.exists() and paths.key.exists() and not _needs_renewal(paths.cert):
        return paths
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _self_signed_leaf(key, hostnames)
    _write_private(
        paths.key,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return paths


def _needs_renewal(cert_path: Path) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError):
        return True
    remaining = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
    return remaining < dt.timedelta(days=RENEW_BEFORE_DAYS)


def _self_signed_leaf(
    key: ec.EllipticCurvePrivateKey, hostnames: tuple[str, ...]
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])])
    sans: list[x509.GeneralName] = [x509.DNSName(h) for h in hostnames]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", "::1")]
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CERT_VALIDITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        # RFC 5280 §4.2.1.1: strict validators (sslyze 6, cryptography's verifier) require it.
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def _write_private(path: Path, data: bytes) -> None:
    """Write a secret with mode 0600 from the first byte (no window where others can read)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)
