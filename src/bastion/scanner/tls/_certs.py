"""Certificate facts with ``cryptography``: parsing, the hostname rule, key and signature.

Hostname matching follows RFC 9525 (which obsoletes RFC 6125): only subjectAltName
identifiers count (no fallback to the subject CN, §6.3), a wildcard is accepted only as the
whole left-most label and matches exactly one label (§6.3 rule 2), and an IP address target
matches only an iPAddress SAN (§6.3 rule 4). Browsers behave the same way.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import ipaddress
import os
import ssl
import warnings
from collections.abc import Sequence
from contextlib import suppress

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, ExtensionOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from bastion.scanner.tls.facts import CertificateInfo

__all__ = [
    "hostname_matches",
    "parse_certificate",
    "parse_certificate_quietly",
    "strict_validation",
    "system_anchors",
]


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
    except (x509.ExtensionNotFound, x509.DuplicateExtension, ValueError):
        return None


def _self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def parse_certificate_quietly(der: bytes) -> CertificateInfo:
    """:func:`parse_certificate`, with the warnings ``cryptography`` emits for odd
    certificates (a negative serial number, ...) kept in ``notes`` instead of printed on
    stderr: the certificate is the target's, its oddities are facts for the report."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        info = parse_certificate(der)
    notes = tuple(sorted({str(w.message) for w in caught}))
    return dataclasses.replace(info, notes=notes) if notes else info


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
    with suppress(x509.ExtensionNotFound, x509.DuplicateExtension, ValueError):
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
            if d.access_method == AuthorityInformationAccessOID.OCSP
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


def _load_pem_bundle(data: bytes) -> tuple[x509.Certificate, ...]:
    with warnings.catch_warnings():
        # some public roots have a negative serial; they still anchor chains (cryptography warns)
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        return tuple(x509.load_pem_x509_certificates(data))


@functools.lru_cache(maxsize=4)
def _bundle(path: str, _stamp: tuple[int, int]) -> tuple[x509.Certificate, ...]:
    with open(path, "rb") as handle:
        return _load_pem_bundle(handle.read())


def pem_anchors(path: str) -> tuple[x509.Certificate, ...]:
    """Certificates of a PEM file (a --ca-file), cached by path, mtime and size."""
    info = os.stat(path)
    return _bundle(path, (info.st_mtime_ns, info.st_size))


def system_anchors() -> tuple[x509.Certificate, ...]:
    """The system CA bundle as ``cryptography`` certificates (Rust parser: a few ms)."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and os.path.exists(candidate):
            return pem_anchors(candidate)
    return ()


def strict_validation(
    chain: Sequence[bytes], name: str, anchors: Sequence[x509.Certificate]
) -> str | None:
    """Validate with ``cryptography``'s RFC 5280 / CA/B-profile verifier; the error, or None.

    This is the validator sslyze 6 uses, stricter than OpenSSL: it requires, for example, an
    authorityKeyIdentifier on every certificate it does not take from the trust store as is.
    Dates and the host name are judged by their own controls, so the check runs at a moment
    inside the chain's validity and against a name the leaf covers.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # parse_certificate_quietly already noted them
        certs = [x509.load_der_x509_certificate(der) for der in chain]
    leaf, intermediates = certs[0], certs[1:]
    start = max(c.not_valid_before_utc for c in certs)
    end = min(c.not_valid_after_utc for c in certs)
    now = dt.datetime.now(dt.UTC)
    moment = now if start <= now <= end else start + (end - start) / 2
    subject = _subject_for(leaf, name)
    try:
        builder = PolicyBuilder().store(Store(list(anchors))).time(moment)
        builder.build_server_verifier(subject).verify(leaf, intermediates)
    except VerificationError as exc:
        return str(exc)
    except ValueError as exc:  # e.g. an empty store
        return str(exc)
    return None


def _subject_for(leaf: x509.Certificate, name: str) -> x509.DNSName | x509.IPAddress:
    info_dns: list[str] = []
    info_ips: list[str] = []
    san = _extension(leaf, x509.SubjectAlternativeName)
    if isinstance(san, x509.SubjectAlternativeName):
        info_dns = list(san.get_values_for_type(x509.DNSName))
        info_ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    target = name.strip("[]")
    try:
        ip = ipaddress.ip_address(target)
    except ValueError:
        ip = None
    if ip is not None and str(ip) in info_ips:
        return x509.IPAddress(ip)
    if ip is None and target.lower() in (d.lower() for d in info_dns):
        return x509.DNSName(target)
    # a mismatch is tls.cert-hostname's finding: validate against a name the leaf does cover
    if info_dns:
        first = info_dns[0]
        return x509.DNSName("bastion-scan" + first[1:] if first.startswith("*.") else first)
    if info_ips:
        return x509.IPAddress(ipaddress.ip_address(info_ips[0]))
    if ip is not None:
        return x509.IPAddress(ip)
    return x509.DNSName(target)
