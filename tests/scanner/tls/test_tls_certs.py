"""Certificate facts and the RFC 9525 host-name rule."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from bastion.scanner.tls import CertificateInfo, hostname_matches, parse_certificate
from tests.scanner.tls.tlsfixtures import ec_key, issue, make_ca, rsa_key


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def test_leaf_facts() -> None:
    ca = make_ca()
    leaf = issue(issuer=ca, must_staple=True, key=ec_key())
    info = parse_certificate(_der(leaf.cert))
    assert info.dns_names == ("localhost",)
    assert info.ip_addresses == ("127.0.0.1",)
    assert (info.key_type, info.key_bits, info.curve) == ("EC", 256, "secp256r1")
    assert info.signature_hash == "sha256"
    assert not info.is_ca and not info.self_issued and not info.self_signed
    assert info.server_auth_eku is True
    assert info.must_staple is True
    assert info.issuer == "CN=bastion test root"
    assert 89 < info.lifespan_days < 92


def test_self_signed_and_ca_flags() -> None:
    info = parse_certificate(_der(make_ca().cert))
    assert info.is_ca and info.self_issued and info.self_signed
    assert info.server_auth_eku is None  # no EKU extension at all
    weak = parse_certificate(_der(issue(key=rsa_key(1024)).cert))
    assert (weak.key_type, weak.key_bits) == ("RSA", 1024)


def test_self_issued_but_signed_by_another_key_is_not_self_signed() -> None:
    """Same subject and issuer names but a different signer: a name collision, not a root."""
    impostor = issue("bastion test root", dns=(), ips=(), issuer=make_ca(), key=rsa_key(2048, 5))
    info = parse_certificate(_der(impostor.cert))
    assert info.self_issued and not info.self_signed


def _with_names(dns: tuple[str, ...] = (), ips: tuple[str, ...] = ()) -> CertificateInfo:
    base = parse_certificate(_der(issue().cert))
    return dataclasses.replace(base, dns_names=dns, ip_addresses=ips)


@pytest.mark.parametrize(
    ("dns", "name", "expected"),
    [
        (("api.example.com",), "api.example.com", True),
        (("API.Example.COM",), "api.example.com.", True),  # case and trailing dot
        (("*.example.com",), "api.example.com", True),
        (("*.example.com",), "a.b.example.com", False),  # one label only (RFC 9525 §6.3)
        (("*.example.com",), "example.com", False),
        (("w*.example.com",), "www.example.com", False),  # partial wildcard refused
        (("*.com",), "example.com", False),  # a whole TLD never matches
        (("example.com",), "evilexample.com", False),
        (("xn--bcher-kva.example",), "bücher.example", True),  # IDNA A-label comparison
    ],
)
def test_dns_matching(dns: tuple[str, ...], name: str, expected: bool) -> None:
    assert hostname_matches(_with_names(dns=dns), name) is expected


def test_ip_targets_need_an_ip_san_and_the_cn_is_never_used() -> None:
    assert hostname_matches(_with_names(ips=("127.0.0.1",)), "127.0.0.1")
    assert not hostname_matches(_with_names(dns=("127.0.0.1",)), "127.0.0.1")
    assert hostname_matches(_with_names(ips=("::1",)), "[::1]")
    assert hostname_matches(_with_names(ips=("::1",)), "0:0:0:0:0:0:0:1")
    no_san = parse_certificate(_der(issue("localhost", dns=(), ips=()).cert))
    assert no_san.subject == "CN=localhost"
    assert not hostname_matches(no_san, "localhost")  # RFC 9525 §6.3: no CN-ID fallback


def test_expired_dates_are_read_in_utc() -> None:
    now = dt.datetime.now(dt.UTC)
    old = issue(not_before=now - dt.timedelta(days=10), not_after=now - dt.timedelta(days=1))
    info = parse_certificate(_der(old.cert))
    assert info.not_after < now and info.not_after.tzinfo is not None


def test_an_odd_certificate_is_a_note_not_a_warning_on_stderr() -> None:
    """A negative serial number (RFC 5280 §4.1.2.2 forbids it) makes cryptography warn on
    stderr; the scanner keeps the warning as a note of the report instead (this test runs
    with warnings as errors, so a leaked warning fails it)."""
    from bastion.scanner.tls import parse_certificate_quietly

    der = _der(issue(issuer=make_ca(), key=ec_key()).cert)
    info = parse_certificate(der)
    serial = bytes.fromhex(info.serial.rjust(len(info.serial) + len(info.serial) % 2, "0"))
    field = bytes([0x02, len(serial)]) + serial
    negative = bytes([serial[0] | 0x80]) + serial[1:]  # same length, sign bit set
    odd = der.replace(field, bytes([0x02, len(serial)]) + negative, 1)
    assert odd != der
    parsed = parse_certificate_quietly(odd)
    assert parsed.serial.startswith("-")
    assert len(parsed.notes) == 1 and "serial number which wasn't positive" in parsed.notes[0]
    assert "(parser: Parsed a serial number which wasn't positive" in parsed.describe()
    assert parse_certificate_quietly(der).notes == ()
