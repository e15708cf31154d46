"""The development certificate and the server TLS policy (src/bastion/server/tls.py)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from bastion.errors import ConfigError
from bastion.server.tls import ensure_self_signed, server_context


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_certificate_is_a_leaf_not_a_ca(tmp_path: Path) -> None:
    # sslyze and browsers reject a server certificate that is its own CA.
    cert = _load(ensure_self_signed(tmp_path).cert)
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical is True
    assert basic.value.ca is False
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature is True
    assert usage.key_cert_sign is False
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_certificate_carries_key_identifiers_strict_validators_need(tmp_path: Path) -> None:
    cert = _load(ensure_self_signed(tmp_path).cert)
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest  # self-issued: the authority key is its own


def test_certificate_names_localhost_and_loopback_addresses(tmp_path: Path) -> None:
    cert = _load(ensure_self_signed(tmp_path).cert)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }


def test_key_is_ecdsa_p256_and_private(tmp_path: Path) -> None:
    paths = ensure_self_signed(tmp_path)
    key = _load(paths.cert).public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert key.curve.name == "secp256r1"
    assert stat.S_IMODE(paths.key.stat().st_mode) == 0o600
    assert not list(tmp_path.glob("*.tmp"))


def test_certificate_is_reused_across_starts(tmp_path: Path) -> None:
    first = ensure_self_signed(tmp_path).cert.read_bytes()
    assert ensure_self_signed(tmp_path).cert.read_bytes() == first


def test_certificate_close_to_expiry_is_renewed(tmp_path: Path) -> None:
    paths = ensure_self_signed(tmp_path)
    # Replace it by one that expires in 10 days (signed with the same key, issued by itself).
    from cryptography.hazmat.primitives import hashes, serialization

    key = serialization.load_pem_private_key(paths.key.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    old = _load(paths.cert)
    now = dt.datetime.now(dt.UTC)
    short = (
        x509.CertificateBuilder()
        .subject_name(old.subject)
        .issuer_name(old.issuer)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=10))
        .sign(key, hashes.SHA256())
    )
    paths.cert.write_bytes(short.public_bytes(serialization.Encoding.PEM))
    renewed = _load(ensure_self_signed(tmp_path).cert)
    assert renewed.not_valid_after_utc - now > dt.timedelta(days=300)


def test_server_context_allows_only_tls12_and_13_with_aead_ecdhe(tmp_path: Path) -> None:
    paths = ensure_self_signed(tmp_path)
    ctx = server_context(paths.cert, paths.key)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    tls12 = [c for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12, "no TLS 1.2 suite left"
    for suite in tls12:
        assert suite["kea"] == "kx-ecdhe", suite["name"]
        assert suite["aead"] is True, suite["name"]
    assert ctx.options & ssl.OP_NO_COMPRESSION


def test_bad_certificate_pair_is_a_config_error(tmp_path: Path) -> None:
    paths = ensure_self_signed(tmp_path / "a")
    other = ensure_self_signed(tmp_path / "b")
    with pytest.raises(ConfigError, match="cannot load certificate"):
        server_context(paths.cert, other.key)
