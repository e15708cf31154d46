"""Certificate facts with ``cryptography``: parsing, the hostname rule, key and signature.

Hostname matching follows RFC 9525 (which obsoletes RFC 6125): only subjectAltName
identifiers count (no fallback to the subject CN, §6.3), a wildcard is accepted only as the
whole left-most label and matches exactly one label (§6.3 rule 2), and an IP address target
matches only an iPAddress SAN (§6.3 rule 4). Browsers behave the same way.
"""

from __future__ import annotations

import ipaddress
from contextlib import suppress

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from bastion.scanner.tls.facts import CertificateInfo

__all__ = ["hostname_matches", "parse_certificate"]


def _key(cert: x509.Certificate) -> tuple[str, int, str | None]:
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return "unknown", 0, None
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size, None
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC", key.curve.key_size, key.curve.name
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256, None
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 456, None
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size, None
    return type(key).__name__, 0, None


def _extension(cert: x509.Certificate, cls: type[x509.ExtensionType]) -> x509.ExtensionType | None:
    try:
        return cert.extensions.get_extension_for_class(cls).value
    except (x509.ExtensionNotFound, ValueError):
        return None


def _self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def parse_certificate(der: bytes) -> CertificateInfo:
    """Parse one DER certificate into the facts the certificate controls judge."""
    cert = x509.load_der_x509_certificate(der)
    key_type, key_bits, curve = _key(cert)
    dns_names: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    san = _extension(cert, x509.SubjectAlternativeName)
    if isinstance(san, x509.SubjectAlternativeName):
        dns_names = tuple(san.get_values_for_type(x509.DNSName))
        ips = tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    constraints = _extension(cert, x509.BasicConstraints)
    is_ca = isinstance(constraints, x509.BasicConstraints) and constraints.ca
    eku = _extension(cert, x509.ExtendedKeyUsage)
    server_auth = (
        ExtendedKeyUsageOID.SERVER_AUTH in eku if isinstance(eku, x509.ExtendedKeyUsage) else None
    )
    feature = _extension(cert, x509.TLSFeature)
    must_staple = isinstance(feature, x509.TLSFeature) and (
        x509.TLSFeatureType.status_request in feature
    )
    sct_count = 0
    with suppress(x509.ExtensionNotFound, ValueError):
        scts = cert.extensions.get_extension_for_oid(
            ExtensionOID.PRECERT_SIGNED_CERTIFICATE_TIMESTAMPS
        ).value
        sct_count = len(scts)  # type: ignore[arg-type]
    ocsp: tuple[str, ...] = ()
    aia = _extension(cert, x509.AuthorityInformationAccess)
    if isinstance(aia, x509.AuthorityInformationAccess):
        ocsp = tuple(
            d.access_location.value
            for d in aia
            if d.access_method == x509.AuthorityInformationAccessOID.OCSP
            and isinstance(d.access_location, x509.UniformResourceIdentifier)
        )
    crls: list[str] = []
    cdp = _extension(cert, x509.CRLDistributionPoints)
    if isinstance(cdp, x509.CRLDistributionPoints):
        for point in cdp:
            for name in point.full_name or ():
                if isinstance(name, x509.UniformResourceIdentifier):
                    crls.append(name.value)
    try:
        sig_hash = cert.signature_hash_algorithm
        signature_hash = sig_hash.name if sig_hash is not None else None
    except UnsupportedAlgorithm:
        signature_hash = "unknown"
    oid = cert.signature_algorithm_oid
    return CertificateInfo(
        der=der,
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        dns_names=dns_names,
        ip_addresses=ips,
        is_ca=is_ca,
        key_type=key_type,
        key_bits=key_bits,
        curve=curve,
        signature_algorithm=getattr(oid, "_name", None) or oid.dotted_string,
        signature_hash=signature_hash,
        self_issued=cert.issuer == cert.subject,
        self_signed=_self_signed(cert),
        server_auth_eku=server_auth,
        must_staple=must_staple,
        sct_count=sct_count,
        ocsp_urls=ocsp,
        crl_urls=tuple(crls),
        sha256=cert.fingerprint(hashes.SHA256()).hex(),
    )


def _dns_match(pattern: str, host: str) -> bool:
    pattern = pattern.rstrip(".").lower()
    if pattern == host:
        return True
    if not pattern.startswith("*."):
        return False  # partial wildcards ("w*.example.com") are not accepted (RFC 9525 §6.3)
    suffix = pattern[1:]  # ".example.com"
    if suffix.count(".") < 2:
        return False  # "*.com": a wildcard must not cover a whole top-level domain
    label, _, rest = host.partition(".")
    return bool(label) and "." + rest == suffix


def hostname_matches(cert: CertificateInfo, name: str) -> bool:
    """Whether ``name`` (DNS name or IP literal) is covered by the certificate's SANs."""
    target = name.strip("[]")
    try:
        ip = ipaddress.ip_address(target)
    except ValueError:
        ip = None
    if ip is not None:
        return any(ipaddress.ip_address(value) == ip for value in cert.ip_addresses)
    try:
        host = target.rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        host = target.rstrip(".").lower()
    return any(_dns_match(pattern, host) for pattern in cert.dns_names)
