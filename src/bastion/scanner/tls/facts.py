"""What the TLS probe established about one endpoint: plain frozen dataclasses ("facts").

A fact the probe could not establish is an :class:`Untested` carrying the reason (the local
OpenSSL cannot attempt it, the server did not answer, the chain is hidden by TLS 1.3...). It
refuses to be used as a boolean, so a control cannot mistake "could not test" for "no" and
pass silently: it must look at the reason and report ``skip``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from bastion.scanner.tls.suites import CipherSuite, group_name

__all__ = [
    "PROTOCOLS",
    "AcceptedSuite",
    "CertificateInfo",
    "TLSFacts",
    "Tri",
    "TrustResult",
    "Untested",
    "is_untested",
    "unprobed_facts",
]

PROTOCOLS: tuple[str, ...] = ("SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3")
"""Protocol names, oldest first (the names OpenSSL and sslyze print)."""


@dataclass(frozen=True, slots=True)
class Untested:
    """A fact the probe could not establish, and why."""

    reason: str

    def __bool__(self) -> bool:
        # Truth-testing an unknown is a bug that would turn "could not test" into a pass.
        raise TypeError(f"could not test: {self.reason} (check is_untested() first)")

    def __str__(self) -> str:
        return f"could not test: {self.reason}"


Tri = bool | Untested
"""True, False, or could-not-test with a reason."""


def is_untested(value: object) -> bool:
    return isinstance(value, Untested)


@dataclass(frozen=True, slots=True)
class AcceptedSuite:
    """A cipher suite the server selected when offered, with the protocol it was offered in."""

    protocol: str
    suite: CipherSuite


@dataclass(frozen=True)
class CertificateInfo:
    """One certificate as the server sent it, parsed with ``cryptography``."""

    der: bytes = field(repr=False)
    subject: str
    issuer: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    is_ca: bool  # basicConstraints cA=TRUE
    key_type: str  # RSA, EC, Ed25519, Ed448, DSA
    key_bits: int
    curve: str | None
    signature_algorithm: str  # e.g. sha256WithRSAEncryption
    signature_hash: str | None  # sha256, sha1, md5; None for Ed25519/Ed448
    self_issued: bool  # subject == issuer
    self_signed: bool  # self-issued and its own key verifies its signature
    server_auth_eku: bool | None  # None: no extendedKeyUsage extension (any use allowed)
    must_staple: bool  # TLS Feature status_request (RFC 7633)
    sct_count: int  # embedded Signed Certificate Timestamps (RFC 6962)
    ocsp_urls: tuple[str, ...]
    crl_urls: tuple[str, ...]
    sha256: str
    # What the parser complained about (e.g. a negative serial number): facts for the report,
    # never warnings on the scanner's stderr.
    notes: tuple[str, ...] = ()

    @property
    def lifespan_days(self) -> float:
        return (self.not_after - self.not_before).total_seconds() / 86400

    def describe(self) -> str:
        """One line of evidence: who, issued by whom, valid when, which key."""
        key = f"{self.key_type} {self.key_bits}" + (f" ({self.curve})" if self.curve else "")
        notes = f" (parser: {'; '.join(self.notes)})" if self.notes else ""
        return (
            f"subject={self.subject!r} issuer={self.issuer!r} "
            f"valid {self.not_before:%Y-%m-%d %H:%M}Z..{self.not_after:%Y-%m-%d %H:%M}Z "
            f"key={key} sig={self.signature_algorithm}{notes}"
        )


@dataclass(frozen=True)
class TrustResult:
    """Whether the chain builds to a trusted anchor (system store plus ``--ca-file``).

    Validity dates are left to the expiry controls (OpenSSL runs with
    ``X509_V_FLAG_NO_CHECK_TIME``), so an expired but otherwise good chain is "trusted" here
    and "expired" there: one problem, one finding.
    """

    trusted: Tri
    reason: str  # OpenSSL's verify message when not trusted
    stores: tuple[str, ...]  # "system", "ca-file <path>"
    verify_code: int | None = None


@dataclass(frozen=True)
class TLSFacts:
    """Everything the TLS controls judge, gathered once per scan."""

    host: str
    address: str  # the one IP address every probe connected to
    port: int
    server_name: str | None  # the SNI sent; None for an IP literal (RFC 6066 §3)
    failure: str | None  # the endpoint could not be probed at all (refused, not TLS...)
    protocols: tuple[tuple[str, Tri], ...]
    accepted: tuple[AcceptedSuite, ...]
    enumeration_gaps: tuple[tuple[str, str], ...]  # (protocol, why its suites are incomplete)
    server_cipher_order: Tri
    compression: Tri
    secure_renegotiation: Tri
    extended_master_secret: Tri
    fallback_scsv: Tri
    ocsp_stapling: Tri
    ecdh_groups: tuple[int, ...] | Untested
    dh_bits: int | Untested | None  # smallest finite-field DH prime; None when no DHE suite
    chain: tuple[CertificateInfo, ...]  # as received, leaf first; () when no certificate
    chain_complete: Tri  # False when the chain was not visible (TLS 1.3 only: leaf from ssl)
    hostname_match: Tri
    trust: TrustResult
    strict_chain: Tri  # also valid under cryptography's strict RFC 5280 verifier (as sslyze)
    strict_chain_error: str  # that verifier's message when not
    negotiated: str  # what a default modern client negotiates, e.g. "TLSv1.3 TLS_AES_256_..."
    handshakes: int
    duration_s: float
    notes: tuple[str, ...] = ()

    # -- convenience ------------------------------------------------------------------
    def protocol(self, name: str) -> Tri:
        for proto, value in self.protocols:
            if proto == name:
                return value
        return Untested(f"{name} was not probed")

    def offered_protocols(self) -> tuple[str, ...]:
        return tuple(p for p, v in self.protocols if v is True)

    @property
    def leaf(self) -> CertificateInfo | None:
        return self.chain[0] if self.chain else None

    def suites(self, protocol: str | None = None) -> tuple[AcceptedSuite, ...]:
        return tuple(a for a in self.accepted if protocol is None or a.protocol == protocol)

    def groups_description(self) -> str:
        if isinstance(self.ecdh_groups, Untested):
            return str(self.ecdh_groups)
        return ", ".join(group_name(g) for g in self.ecdh_groups) or "none"


def unprobed_facts(
    host: str,
    port: int,
    failure: str,
    *,
    address: str,
    server_name: str | None,
    protocols: tuple[tuple[str, Tri], ...],
    stores: tuple[str, ...] = (),
    handshakes: int = 0,
    duration_s: float = 0.0,
    notes: tuple[str, ...] = (),
) -> TLSFacts:
    """Facts for an endpoint that could not be probed: ``failure`` is set and every fact past
    the protocol list is ``Untested(failure)``, so each control reports that reason."""
    unknown = Untested(failure)
    return TLSFacts(
        host=host,
        address=address,
        port=port,
        server_name=server_name,
        failure=failure,
        protocols=protocols,
        accepted=(),
        enumeration_gaps=(),
        server_cipher_order=unknown,
        compression=unknown,
        secure_renegotiation=unknown,
        extended_master_secret=unknown,
        fallback_scsv=unknown,
        ocsp_stapling=unknown,
        ecdh_groups=unknown,
        dh_bits=unknown,
        chain=(),
        chain_complete=unknown,
        hostname_match=unknown,
        trust=TrustResult(unknown, "", stores),
        strict_chain=unknown,
        strict_chain_error="",
        negotiated="",
        handshakes=handshakes,
        duration_s=duration_s,
        notes=notes,
    )
