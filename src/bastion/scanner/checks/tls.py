"""TLS and certificate controls (category ``tls``).

Every control judges the :class:`~bastion.scanner.tls.TLSFacts` gathered once per scan
(``await ctx.tls_facts(TLSFacts)``); none sends an HTTP request (``max_requests=0``). A fact
the probe could not establish makes the control ``skip`` with the probe's reason, never ``pass``.

One source per control, cited in its references. Where these sources disagree the choice is
written in the docstring: server cipher order follows Mozilla (which does not require it)
rather than testssl.sh (which rates its absence HIGH); TLS 1.3-only servers follow Mozilla's
*modern* profile rather than RFC 9325's "MUST support TLS 1.2".
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Iterable

from bastion.scanner.check import Result, check
from bastion.scanner.context import ScanContext
from bastion.scanner.tls import AcceptedSuite, CertificateInfo, TLSFacts, Untested
from bastion.scanner.tls.suites import DEPRECATED_GROUPS, group_name

MOZILLA = "https://wiki.mozilla.org/Security/Server_Side_TLS"
SSL_LABS = "https://github.com/ssllabs/research/wiki/SSL-Server-Rating-Guide"
TESTSSL = "https://testssl.sh/doc/testssl.1.html"
RFC9325 = "https://www.rfc-editor.org/rfc/rfc9325"

EXPIRY_WARNING_DAYS = 30
LIFESPAN_MAX_DAYS = 398  # CA/Browser Forum Baseline Requirements §6.3.2 (since 2020-09-01)
MIN_RSA_BITS = 2048
MIN_EC_BITS = 256
MIN_DH_BITS = 2048


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def _facts(ctx: ScanContext) -> TLSFacts | Result:
    """The scan's TLS facts, or the Result every control returns when there are none."""
    if not ctx.is_https:
        return Result.skipped("the target is plain HTTP: no TLS to judge")
    facts = await ctx.tls_facts(TLSFacts)
    if facts.failure:
        return Result.errored(f"TLS probe failed: {facts.failure}")
    return facts


def _endpoint(facts: TLSFacts) -> str:
    sni = f"SNI {facts.server_name}" if facts.server_name else "no SNI: IP literal"
    at = f", address {facts.address}" if facts.address != facts.host else ""
    return f"{facts.host}:{facts.port} ({sni}{at})"


def _suite_list(suites: Iterable[AcceptedSuite], limit: int = 8) -> str:
    items = [f"{a.protocol} {a.suite.name}" for a in suites]
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def _gaps(facts: TLSFacts) -> str:
    if not facts.enumeration_gaps:
        return ""
    return "; enumeration incomplete: " + "; ".join(
        f"{p}: {why}" for p, why in facts.enumeration_gaps
    )


# -- protocol versions --------------------------------------------------------------------


async def _protocol_refused(ctx: ScanContext, name: str) -> Result:
    facts = await _facts(ctx)
    if isinstance(facts, Result):
        return facts
    value = facts.protocol(name)
    hello = f"ClientHello offering only {name} to {_endpoint(facts)}"
    if isinstance(value, Untested):
        return Result.skipped(f"{name}: {value.reason}")
    if value:
        suites = facts.suites(name)
        listed = f"; accepted suites: {_suite_list(suites)}" if suites else ""
        return Result.failed(f"{hello} -> ServerHello {name}{listed}", reason=f"{name} is accepted")
    return Result.passed(f"{hello} -> refused (alert or connection closed)")


@check(
    id="tls.protocol-sslv2",
    title="SSL 2.0 is not accepted",
    category="tls",
    severity="critical",
    references=("https://www.rfc-editor.org/rfc/rfc6176",),
    remediation="Disable SSL 2.0 entirely (RFC 6176 prohibits it); upgrade the TLS library.",
    max_requests=0,
)
async def sslv2(ctx: ScanContext) -> Result:
    """SSL 2.0 has no handshake integrity and export-grade ciphers (DROWN). Probe: an SSLv2
    CLIENT-HELLO on the wire; an SSLv2 SERVER-HELLO means it is accepted."""
    return await _protocol_refused(ctx, "SSLv2")


@check(
    id="tls.protocol-sslv3",
    title="SSL 3.0 is not accepted",
    category="tls",
    severity="high",
    references=("https://www.rfc-editor.org/rfc/rfc7568",),
    remediation="Disable SSL 3.0 (RFC 7568): e.g. nginx `ssl_protocols TLSv1.2 TLSv1.3;`.",
    max_requests=0,
)
async def sslv3(ctx: ScanContext) -> Result:
    """SSL 3.0 is broken by POODLE (CBC padding oracle) and RFC 7568 forbids it. Probe: a
    ClientHello pinned to 3.0 offering every suite (built by hand, so it is tested even though
    the local OpenSSL cannot speak SSL 3.0)."""
    return await _protocol_refused(ctx, "SSLv3")


@check(
    id="tls.protocol-tls10",
    title="TLS 1.0 is not accepted",
    category="tls",
    severity="medium",
    cap="B",
    references=("https://www.rfc-editor.org/rfc/rfc8996",),
    remediation="Disable TLS 1.0 (deprecated by RFC 8996): offer TLS 1.2 and 1.3 only.",
    max_requests=0,
)
async def tls10(ctx: ScanContext) -> Result:
    """RFC 8996 deprecates TLS 1.0 (SHA-1 handshake signatures, CBC-only suites, BEAST).
    Probe: a ClientHello pinned to TLS 1.0."""
    return await _protocol_refused(ctx, "TLSv1.0")


@check(
    id="tls.protocol-tls11",
    title="TLS 1.1 is not accepted",
    category="tls",
    severity="medium",
    cap="B",
    references=("https://www.rfc-editor.org/rfc/rfc8996",),
    remediation="Disable TLS 1.1 (deprecated by RFC 8996): offer TLS 1.2 and 1.3 only.",
    max_requests=0,
)
async def tls11(ctx: ScanContext) -> Result:
    """RFC 8996 deprecates TLS 1.1 for the same reasons as 1.0. Probe: a ClientHello pinned
    to TLS 1.1."""
    return await _protocol_refused(ctx, "TLSv1.1")


@check(
    id="tls.protocol-current",
    title="A current protocol version (TLS 1.2 or 1.3) is offered",
    category="tls",
    severity="high",
    references=(MOZILLA,),
    remediation="Enable TLS 1.2 and TLS 1.3.",
    max_requests=0,
)
async def protocol_current(ctx: ScanContext) -> Result:
    """Without TLS 1.2 or 1.3 a modern client cannot connect securely. Source: Mozilla's
    Server Side TLS (intermediate: 1.2 + 1.3; modern: 1.3 only, so a TLS 1.3-only server
    passes; RFC 9325's "MUST support 1.2" is not applied)."""
    facts = await _facts(ctx)
    if isinstance(facts, Result):
        return facts
    tls12, tls13 = facts.protocol("TLSv1.2"), facts.protocol("TLSv1.3")
    offered = [name for name, value in (("TLSv1.2", tls12), ("TLSv1.3", tls13)) if value is True]
    evidence = f"{_endpoint(facts)} offers {', '.join(facts.offered_protocols()) or 'nothing'}"
    if offered:
        return Result.passed(evidence)
    unknown = [v for v in (tls12, tls13) if isinstance(v, Untested)]
    if unknown:
        return Result.skipped(str(unknown[0]), evidence)
    return Result.failed(evidence, reason="neither TLS 1.2 nor TLS 1.3 is offered")


@check(
    id="tls.protocol-tls13",
    title="TLS 1.3 is offered",
    category="tls",
    severity="low",
    references=(RFC9325 + "#section-3.1.1",),
    remediation="Enable TLS 1.3 (nginx >= 1.13 with OpenSSL >= 1.1.1: `ssl_protocols TLSv1.2 "
    "TLSv1.3;`).",
    max_requests=0,
)
async def tls13(ctx: ScanContext) -> Result:
    """RFC 9325 §3.1.1: implementations SHOULD support TLS 1.3 (encrypted handshake, only
    forward-secret AEAD suites, downgrade protection). Probe: a ClientHello whose
    supported_versions lists only TLS 1.3."""
    facts = await _facts(ctx)
    if isinstance(facts, Result):
        return facts
    value = facts.protocol("TLSv1.3")
    hello = f"ClientHello with supported_versions=[TLSv1.3] to {_endpoint(facts)}"
    if isinstance(value, Untested):
        return Result.skipped(value.reason)
    if value:
        return Result.passed(f"{hello} -> TLSv1.3; suites: {_suite_list(facts.suites('TLSv1.3'))}")
    return Result.failed(f"{hello} -> refused", reason="TLS 1.3 is not offered")


# -- cipher suites ------------------------------------------------------------------------


def _suite_control(
    facts: TLSFacts, predicate: Callable[[AcceptedSuite], bool], what: str
) -> Result:
    bad = [a for a in facts.accepted if predicate(a)]
    enumerated = ", ".join(sorted({a.protocol for a in facts.accepted})) or "none"
    if bad:
        return Result.failed(
            f"{_endpoint(facts)} accepted {len(bad)} {what}: {_suite_list(bad)}{_gaps(facts)}",
            reason=f"{what} accepted",
        )
    if facts.enumeration_gaps:
        return Result.skipped(
            f"no {what} found, but the enumeration was incomplete{_gaps(facts)}",
        )
    total = len(facts.accepted)
    return Result.passed(
        f"{_endpoint(facts)}: {total} accepted suites across {enumerated}, none are {what}"
    )


def _suite_check(
    *,
    id: str,
    title: str,
    severity: str,
    reference: str,
    remediation: str,
    predicate: Callable[[AcceptedSuite], bool],
    what: str,
    doc: str,
    cap: str | None = None,
) -> None:
    async def probe(ctx: ScanContext) -> Result:
        facts = await _facts(ctx)
        if isinstance(facts, Result):
            return facts
        return _suite_control(facts, predicate, what)

    probe.__doc__ = doc
    probe.__name__ = id.replace(".", "_").replace("-", "_")
    check(
        id=id,
        title=title,
        category="tls",
        severity=severity,  # type: ignore[arg-type]
        references=(reference,),
        remediation=remediation,
        max_requests=0,
        cap=cap,
    )(probe)


_ENUMERATION = (
    " Probe: every suite of the protocol offered by hand-built ClientHellos; the suite the"
    " server picks is removed and the rest offered again until it refuses (suites the local"
    " OpenSSL no longer implements are tested too)."
)

_suite_check(
    id="tls.cipher-null",
    title="No NULL-encryption cipher suites",
    severity="critical",
    reference=RFC9325 + "#section-4.1",
    remediation="Remove eNULL suites from the cipher list (OpenSSL string `!eNULL`).",
    predicate=lambda a: a.suite.null_cipher,
    what="NULL-encryption suites",
    doc="NULL suites send application data in clear text; RFC 9325 §4.1: MUST NOT negotiate."
    + _ENUMERATION,
)
_suite_check(
    id="tls.cipher-anonymous",
    title="No anonymous (unauthenticated) cipher suites",
    severity="critical",
    reference=RFC9325 + "#section-4.1",
    remediation="Remove anonymous suites from the cipher list (OpenSSL string `!aNULL`).",
    predicate=lambda a: a.suite.anonymous,
    what="anonymous (DH_anon/ECDH_anon) suites",
    doc="Anonymous key exchange authenticates nobody: any on-path attacker can impersonate "
    "the server. RFC 9325 §4.1: MUST NOT negotiate." + _ENUMERATION,
)
_suite_check(
    id="tls.cipher-low-strength",
    title="No EXPORT or other sub-112-bit cipher suites",
    severity="critical",
    reference=RFC9325 + "#section-4.1",
    remediation="Remove EXPORT, DES and RC2 suites (OpenSSL `!EXPORT:!LOW:!DES:!RC2`).",
    predicate=lambda a: 0 < a.suite.bits < 112 or a.suite.export,
    what="suites under 112 bits (EXPORT/DES/RC2)",
    doc="40- and 56-bit ciphers are brute-forced in hours (FREAK, Logjam exploit EXPORT "
    "suites). RFC 9325 §4.1: MUST NOT negotiate suites offering less than 112 bits." + _ENUMERATION,
)
_suite_check(
    id="tls.cipher-rc4",
    title="No RC4 cipher suites",
    severity="high",
    cap="B",
    reference="https://www.rfc-editor.org/rfc/rfc7465",
    remediation="Remove RC4 suites (OpenSSL `!RC4`).",
    predicate=lambda a: a.suite.rc4,
    what="RC4 suites",
    doc="RC4 keystream biases allow plaintext recovery; RFC 7465 prohibits RC4 in TLS."
    + _ENUMERATION,
)
_suite_check(
    id="tls.cipher-3des",
    title="No 3DES cipher suites (SWEET32)",
    severity="medium",
    cap="C",
    reference="https://sweet32.info/",
    remediation="Remove 3DES suites (OpenSSL `!3DES`).",
    predicate=lambda a: a.suite.triple_des,
    what="3DES suites",
    doc="3DES has 64-bit blocks: birthday collisions after ~32 GB on one connection recover "
    "cookies (SWEET32, CVE-2016-2183). SSL Labs caps such servers at C." + _ENUMERATION,
)
_suite_check(
    id="tls.cipher-cbc",
    title="Only AEAD cipher suites (no CBC)",
    severity="low",
    reference=MOZILLA,
    remediation="Offer only ECDHE with AES-GCM or ChaCha20-Poly1305 on TLS 1.2 (Mozilla "
    "intermediate), e.g. nginx `ssl_ciphers ECDHE+AESGCM:ECDHE+CHACHA20;`.",
    predicate=lambda a: a.suite.cbc,
    what="CBC-mode suites",
    doc="CBC suites use MAC-then-encrypt, the root of padding oracles (Lucky13, POODLE-TLS). "
    "Mozilla's intermediate configuration allows none. Source: Mozilla Server Side TLS "
    "(testssl.sh rates them LOW as well)." + _ENUMERATION,
)
_suite_check(
    id="tls.cipher-static-kex",
    title="No key exchange without forward secrecy (static RSA, DH or ECDH)",
    severity="medium",
    reference=RFC9325 + "#section-4.1",
    remediation="Remove `kRSA`, `kDH`, `kECDH` suites; offer ECDHE (and TLS 1.3) only.",
    predicate=lambda a: not a.suite.forward_secret,
    what="non-forward-secret suites",
    doc="With static RSA key transport (or static DH) a stolen server key decrypts every "
    "recorded session, and RSA key transport is the ROBOT attack surface. RFC 9325 §4.1: "
    "SHOULD NOT negotiate RSA key transport." + _ENUMERATION,
)


@check(
    id="tls.forward-secrecy",
    title="Forward secrecy is available",
    category="tls",
    severity="medium",
    cap="B",
    references=(SSL_LABS,),
    remediation="Offer ECDHE suites on TLS 1.2 and enable TLS 1.3.",
    max_requests=0,
)
async def forward_secrecy(ctx: ScanContext) -> Result:
    """At least one forward-secret suite (ECDHE/DHE, or any TLS 1.3 suite) must exist, or no
    client can get forward secrecy at all. SSL Labs caps such a server at B."""
    facts = await _facts(ctx)
    if isinstance(facts, Result):
        return facts
    good = [a for a in facts.accepted if a.suite.forward_secret]
    if good:
        return Result.passed(f"{_endpoint(facts)} forward-secret suites: {_suite_list(good, 4)}")
    if facts.enumeration_gaps or not facts.accepted:
        return Result.skipped(
            f"no forward-secret suite found{_gaps(facts) or ' (none enumerated)'}"
        )
    return Result.failed(
        f"{_endpoint(facts)} accepted only: {_suite_list(facts.accepted)}",
        reason="no forward-secret cipher suite",
    )


@check(
    id="tls.cipher-aead",
    title="An AEAD cipher suite is offered",
    category="tls",
    severity="medium",
    cap="B",
    references=(SSL_LABS,),
    remediation="Offer AES-GCM or ChaCha20-Poly1305 suites (TLS 1.2) and TLS 1.3.",
    max_requests=0,
)
async def aead(ctx: ScanContext) -> Result:
    """Without any AEAD suite every connection uses CBC or RC4. SSL Labs caps at B when no
    AEAD suite is offered."""
    facts = await _facts(ctx)
    if isinstance(facts, Result):
        return facts
    good = [a for a in facts.accepted if a.suite.aead]
    if good:
        return Result.passed(f"{_endpoint(facts)} AEAD suites: {_suite_list(good, 4)}")
    if facts.enumeration_gaps or not facts.accepted:
        return Result.skipped(f"no AEAD suite found{_gaps(facts) or ' (none enumerated)'}")
    return Result.failed(
        f"{_endpoint(facts)} accepted only: {_suite_list(facts.accepted)}",
        reason="no AEAD cipher suite",
    )


@check(
    id="tls.cipher-order",
    title="Server cipher preference (informational)",
    category="tls",
    severity="info",
    references=(MOZILLA,),
    remediation="Nothing required when only strong suites are offered (Mozilla: "
    "`ssl_prefer_server_ciphers off`); otherwise enforce a server order.",
    max_requests=0,
)
async def cipher_order(ctx: ScanContext) -> Result:
    """Reports whether the server imposes its own cipher order. The sources disagree:
    testssl.sh rates "no server order" HIGH, Mozilla's intermediate and modern profiles set
    ``server_preferred_order: false`` because every offered suite is strong. Bastion follows
    Mozilla: this control is informational and passes either way. Probe: the same two
    accepted suites offered in both orders."""
    facts = await _facts(ctx)
    if isinstance(facts, Result):
        return facts
    value = facts.server_cipher_order
    if isinstance(value, Untested):
        return Result.skipped(value.reason)
    which = "the server's own order" if value else "the client's order"
    return Result.passed(f"{_endpoint(facts)} picks suites in {which}")


# -- key exchange parameters --------------------------------------------------------------


@check(
    id="tls.dh-params",
    title="Finite-field DH groups are at least 2048 bits (Logjam)",
    category="tls",
    severity="medium",
    references=(MOZILLA,),
    remediation="Use a 2048-bit or larger DH group (RFC 7919 ffdhe2048) or drop DHE suites.",
    max_requests=0,
)
async def dh_params(ctx: ScanContext) -> Result:
    """DHE with a prime under 2048 bits is within reach of precomputation (Logjam). Mozilla
    recommends ffdhe2048 at least. Probe: the prime's length read from the ServerKeyExchange of
    each accepted DHE suite."""
    facts = await _facts(ctx)
    if isinstance(facts, Result):
        return facts
    bits = facts.dh_bits
    if isinstance(bits, Untested):
        return Result.skipped(bits.reason)
    if bits is None:
        return Result.passed(f"{_endpoint(facts)} accepts no DHE suite")
    evidence = f"{_endpoint(facts)} ServerKeyExchange: DH prime of {bits} bits"
    if bits < MIN_DH_BITS:
        return Result.failed(evidence, reason=f"DH group of {bits} bits (< {MIN_DH_BITS})")
    return Result.passed(evidence)


@check(
    id="tls.ecdh-curves",
    title="No deprecated elliptic curves",
    category="tls",
    severity="low",
    references=("https://www.rfc-editor.org/rfc/rfc8422#section-5.1.1",),
    remediation="Limit the groups to X25519, P-256 and P-384 (nginx `ssl_ecdh_curve "
    "X25519:prime256v1:secp384r1;`).",
    max_requests=0,
)
async def ecdh_curves(ctx: ScanContext) -> Result:
    """RFC 8422 §5.1.1 deprecates every curve but P-256/P-384/P-521 (and X25519/X448): the
    others are small (sect163, secp192/224) or little-studied. Probe: ECDHE hellos with a
    shrinking supported_groups list; the curve is read from each ServerKeyExchange (TLS 1.2)
    or the key share / HelloRetryRequest (TLS 1.3)."""
    facts = await _facts(ctx)
    if isinstance(facts, Result):
        return facts
    groups = facts.ecdh_groups
    if isinstance(groups, Untested):
        return Result.skipped(groups.reason)
    evidence = f"{_endpoint(facts)} accepts groups: {facts.groups_description()}"
    bad = [group_name(g) for g in groups if g in DEPRECATED_GROUPS]
    if bad:
        return Result.failed(evidence, reason=f"deprecated curves accepted: {', '.join(bad)}")
    return Result.passed(evidence)


MOZILLA_INTERMEDIATE_CURVES = frozenset({29, 23, 24})  # X25519, prime256v1, secp384r1


@check(
    id="tls.ecdh-curves-profile",
    title="Only the elliptic curves of Mozilla's profile (informational)",
    category="tls",
    severity="info",
    references=(MOZILLA,),
    remediation="Optionally limit the groups to X25519, P-256 and P-384 (nginx `ssl_ecdh_curve "
    "X25519:prime256v1:secp384r1;`).",
    max_requests=0,
)
async def ecdh_curves_profile(ctx: ScanContext) -> Result:
    """Mozilla's intermediate and modern profiles list X25519, P-256 and P-384 only; sslyze's
    compliance check flags any other curve (OpenSSL's defaults add X448 and P-521). Those
    are not weak, so this control is informational (no deduction); weak or deprecated curves
    are ``tls.ecdh-curves``' finding. Finite-field groups (RFC 7919) are not judged here."""
    facts = await _facts(ctx)
    if isinstance(facts, Result):
        return facts
    groups = facts.ecdh_groups
    if isinstance(groups, Untested):
        return Result.skipped(groups.reason)
    evidence = f"{_endpoint(facts)} accepts groups: {facts.groups_description()}"
    extra = [group_name(g) for g in groups if g < 256 and g not in MOZILLA_INTERMEDIATE_CURVES]
    if extra:
        return Result.failed(
            evidence, reason=f"curves outside Mozilla's profile: {', '.join(extra)}"
        )
    return Result.passed(evidence)


# -- handshake features -------------------------------------------------------------------


@check(
    id="tls.compression",
    title="TLS compression is disabled (CRIME)",
    category="tls",
    severity="high",
    cap="C",
    references=(RFC9325 + "#section-3.3",),
    remediation="Disable TLS-level compression (OpenSSL SSL_OP_NO_COMPRESSION; default in "
    "every current library).",
    max_requests=0,
)
async def compression(ctx: ScanContext) -> Result:
    """Compressing secrets together with attacker-chosen data leaks them through the length
    (CRIME). RFC 9325 §3.3: MUST disable TLS-level compression. Probe: every TLS 1.2-and-below
    hello offers DEFLATE next to null compression; TLS 1.3 has no compression."""
    facts = await _facts(ctx)
    if isinstance(facts, Result):
        return facts
    value = facts.compression
    if isinstance(value, Untested):
        return Result.skipped(value.reason)
    if value:
        return Result.failed(
            f"{_endpoint(facts)} ServerHello selected compression method DEFLATE",
            reason="TLS compression is enabled",
        )
    return Result.passed(f"{_endpoint(facts)} always selected null compression")


@check(
    id="tls.secure-renegotiation",
    title="Secure renegotiation (RFC 5746) is supported",
    category="tls",
    severity="medium",
    references=(RFC9325 + "#section-3.5",),
    remediation="Upgrade the TLS library (every library since 2010 supports RFC 5746).",
    max_requests=0,
)
async def secure_renegotiation(ctx: ScanContext) -> Result:
    """Without the renegotiation_info extension an attacker can splice its own prefix into a
    victim's session (CVE-2009-3555). RFC 9325 §3.5: MUST support and use it. TLS 1.3 has no
    renegotiation, so a TLS 1.3-only server passes. Probe: the extension in every TLS 1.0+
    ServerHello (the hello carries the RFC 5746 SCSV)."""
    facts = await _facts(ctx)
    if isinstance(facts, Result):
        return facts
    value = facts.secure_renegotiation
    legacy = [p for p in facts.offered_protocols() if p != "TLSv1.3"]
    if isinstance(value, Untested):
        if not legacy and facts.protocol("TLSv1.3") is True:
            return Result.passed(f"{_endpoint(facts)} offers only TLS 1.3 (no renegotiation)")
        return Result.skipped(value.reason)
    if value:
        return Result.passed(f"{_endpoint(facts)} ServerHello carries renegotiation_info")
    return Result.failed(
        f"{_endpoint(facts)} ServerHello lacks renegotiation_info although the hello sent "
        "TLS_EMPTY_RENEGOTIATION_INFO_SCSV",
        reason="secure renegotiation is not supported",
    )


@check(
    id="tls.extended-master-secret",
    title="Extended Master Secret (RFC 7627) is supported",
    category="tls",
    severity="low",
    references=("https://www.rfc-editor.org/rfc/rfc7627",),
    remediation="Upgrade the TLS library or stop disabling the extension.",
    max_requests=0,
)
async def extended_master_secret(ctx: ScanContext) -> Result:
    """Without EMS a TLS 1.2 session's master secret is not bound to its handshake, enabling
    the triple-handshake attack (RFC 7627). TLS 1.3 always binds it. Probe: the extension in
    the ServerHellos of TLS 1.0-1.2 hellos that offered it."""
    facts = await _facts(ctx)
    if isinstance(facts, Result):
        return facts
    value = facts.extended_master_secret
    if isinstance(value, Untested):
        legacy = [p for p in facts.offered_protocols() if p != "TLSv1.3"]
        if not legacy and facts.protocol("TLSv1.3") is True:
            return Result.passed(f"{_endpoint(facts)} offers only TLS 1.3 (EMS built in)")
        return Result.skipped(value.reason)
    if value:
        return Result.passed(f"{_endpoint(facts)} ServerHello carries extended_master_secret")
    return Result.failed(
        f"{_endpoint(facts)} ServerHello lacks extended_master_secret although it was offered",
        reason="extended master secret is not supported",
    )


@check(
    id="tls.fallback-scsv",
    title="Protocol downgrade is refused (TLS_FALLBACK_SCSV)",
    category="tls",
    severity="low",
    references=("https://www.rfc-editor.org/rfc/rfc7507",),
    remediation="Upgrade the TLS library (OpenSSL >= 1.0.1j honours the SCSV).",
    max_requests=0,
)
async def fallback_scsv(ctx: ScanContext) -> Result:
    """A server offering several versions must refuse a hello that signals a fallback below
    its best version (RFC 7507), or a forced-downgrade attack can push clients to the older
    one. Probe: a hello at the second-best version with TLS_FALLBACK_SCSV; the right answer is
    the inappropriate_fallback alert."""
    facts = await _facts(ctx)
    if isinstance(facts, Result):
        return facts
    value = facts.fallback_scsv
    if isinstance(value, Untested):
        return Result.skipped(value.reason)
    if value:
        how = next((n for n in facts.notes if "TLS_FALLBACK_SCSV" in n), "")
        return Result.passed(
            f"{_endpoint(facts)} refused a hello at its second-best version carrying "
            "TLS_FALLBACK_SCSV (the same hello without it is accepted)"
            + (f"; {how}" if how else " with the inappropriate_fallback alert")
        )
    return Result.failed(
        f"{_endpoint(facts)} completed a ServerHello for a downgraded hello carrying "
        "TLS_FALLBACK_SCSV",
        reason="TLS_FALLBACK_SCSV is ignored",
    )


# -- certificate --------------------------------------------------------------------------


async def _certificate(ctx: ScanContext) -> tuple[TLSFacts, CertificateInfo] | Result:
    """The scan's TLS facts with the leaf certificate, or the Result a certificate control
    returns when there is no TLS to judge or no certificate was read."""
    facts = await _facts(ctx)
    if isinstance(facts, Result):
        return facts
    if facts.leaf is None:
        return Result.skipped("no certificate was read from the server")
    return facts, facts.leaf


@check(
    id="tls.cert-expired",
    title="The certificates are within their validity period",
    category="tls",
    severity="critical",
    references=(SSL_LABS,),
    remediation="Renew the certificate (and any expired intermediate); automate renewal (ACME).",
    max_requests=0,
)
async def cert_expired(ctx: ScanContext) -> Result:
    """An expired (or not yet valid) certificate makes every client refuse the connection or
    trains users to click through warnings. SSL Labs grades it T (untrusted). Judged for the
    leaf and every certificate the server sent."""
    found = await _certificate(ctx)
    if isinstance(found, Result):
        return found
    facts, leaf = found
    now = _now()
    bad = [
        c
        for c in facts.chain
        if not c.self_signed or c is leaf
        if c.not_after < now or c.not_before > now
    ]
    if bad:
        first = bad[0]
        state = "expired" if first.not_after < now else "not yet valid"
        return Result.failed(
            "; ".join(c.describe() for c in bad),
            reason=f"certificate {state}: {first.subject} (notAfter {first.not_after:%Y-%m-%d})",
        )
    return Result.passed(leaf.describe())


@check(
    id="tls.cert-expiring",
    title="The certificate does not expire within 30 days",
    category="tls",
    severity="medium",
    references=(TESTSSL,),
    remediation="Renew now and automate renewal well before expiry (ACME renews at 30 days).",
    max_requests=0,
)
async def cert_expiring(ctx: ScanContext) -> Result:
    """A certificate that expires within 30 days signals broken or missing renewal; testssl.sh
    rates "< 30 days" HIGH. An already expired one is judged by ``tls.cert-expired``."""
    found = await _certificate(ctx)
    if isinstance(found, Result):
        return found
    _, leaf = found
    now = _now()
    if leaf.not_after < now:
        return Result.skipped("already expired (see tls.cert-expired)", leaf.describe())
    left = leaf.not_after - now
    evidence = f"{leaf.describe()}; {left.days} days left"
    if left < dt.timedelta(days=EXPIRY_WARNING_DAYS):
        return Result.failed(evidence, reason=f"certificate expires in {left.days} days")
    return Result.passed(evidence)


@check(
    id="tls.cert-hostname",
    title="The certificate matches the host name",
    category="tls",
    severity="high",
    references=("https://www.rfc-editor.org/rfc/rfc9525#section-6.3",),
    remediation="Issue the certificate with a subjectAltName for every name (and IP address) "
    "clients use.",
    max_requests=0,
)
async def cert_hostname(ctx: ScanContext) -> Result:
    """Clients check the target name against the subjectAltName entries only (RFC 9525 §6.3:
    no fallback to the subject CN; a wildcard covers exactly one left-most label; an IP target
    needs an iPAddress SAN). A mismatch is a hard error in every browser."""
    found = await _certificate(ctx)
    if isinstance(found, Result):
        return found
    facts, leaf = found
    name = facts.server_name or facts.host
    sans = [f"DNS:{n}" for n in leaf.dns_names] + [f"IP:{ip}" for ip in leaf.ip_addresses]
    evidence = (
        f"target {name!r}; subjectAltName: {', '.join(sans) or 'none'}; subject {leaf.subject}"
    )
    value = facts.hostname_match
    if isinstance(value, Untested):
        return Result.skipped(value.reason, evidence)
    if value:
        return Result.passed(evidence)
    return Result.failed(evidence, reason=f"certificate does not cover {name!r}")


@check(
    id="tls.cert-trust",
    title="The certificate chain is trusted",
    category="tls",
    severity="high",
    cap="C",
    references=(SSL_LABS,),
    remediation="Serve a certificate from a publicly trusted CA with its intermediates; for a "
    "private deployment scan with --ca-file to grade it against your CA.",
    max_requests=0,
)
async def cert_trust(ctx: ScanContext) -> Result:
    """The chain must build to a trusted root: the system store plus ``--ca-file`` (OpenSSL's
    own chain building; validity dates are judged by ``tls.cert-expired``). Self-signed and
    unknown-CA certificates fail; with ``--insecure`` the user accepted that, so the control
    reports ``warn`` with the reason instead (contract). SSL Labs grades untrusted as T."""
    facts = await _facts(ctx)
    if isinstance(facts, Result):
        return facts
    trust = facts.trust
    leaf = facts.leaf
    against = " + ".join(trust.stores)
    subject = f"{leaf.subject} issued by {leaf.issuer}" if leaf else "no certificate read"
    if isinstance(trust.trusted, Untested):
        return Result.skipped(trust.trusted.reason, subject)
    if trust.trusted:
        return Result.passed(f"{subject}: chain verified against {against}")
    self_signed = " (self-signed)" if leaf is not None and leaf.self_signed else ""
    evidence = f"{subject}{self_signed}: OpenSSL verify against {against}: {trust.reason}"
    reason = f"untrusted certificate: {trust.reason}{self_signed}"
    if ctx.options.insecure:
        return Result.warned(evidence, reason=reason + " (accepted with --insecure)")
    return Result.failed(evidence, reason=reason)


@check(
    id="tls.cert-strict-chain",
    title="The chain also passes strict RFC 5280 validation",
    category="tls",
    severity="low",
    references=("https://www.rfc-editor.org/rfc/rfc5280#section-4.2.1.1",),
    remediation="Issue certificates with the extensions strict validators require: "
    "authorityKeyIdentifier (RFC 5280 §4.2.1.1; also on a self-signed leaf that clients pin), "
    "subjectKeyIdentifier, subjectAltName, keyUsage and extendedKeyUsage serverAuth.",
    max_requests=0,
)
async def cert_strict_chain(ctx: ScanContext) -> Result:
    """OpenSSL (and browsers) accept chains that stricter validators refuse: ``cryptography``'s
    RFC 5280 / CA/B-profile verifier, used by sslyze 6 and Python tools built on it, requires
    e.g. an authorityKeyIdentifier on every certificate (RFC 5280 §4.2.1.1). Run only on a
    chain OpenSSL already trusts, against the same anchors, with dates and host name left to
    their own controls, so a failure here is purely a certificate-profile problem."""
    facts = await _facts(ctx)
    if isinstance(facts, Result):
        return facts
    value = facts.strict_chain
    if isinstance(value, Untested):
        return Result.skipped(value.reason)
    subjects = " <- ".join(c.subject for c in facts.chain)
    if value:
        return Result.passed(f"{subjects}: accepted by cryptography's X.509 verifier")
    return Result.failed(
        f"{subjects}: cryptography's X.509 verifier: {facts.strict_chain_error}",
        reason=f"strict validation fails: {facts.strict_chain_error}",
    )


@check(
    id="tls.cert-ca-leaf",
    title="The server certificate is not a CA certificate",
    category="tls",
    severity="medium",
    references=("https://www.rfc-editor.org/rfc/rfc5280#section-4.2.1.9",),
    remediation="Issue the server certificate with basicConstraints CA:FALSE (note: "
    "`openssl req -x509` defaults to CA:TRUE) and extendedKeyUsage serverAuth.",
    max_requests=0,
)
async def cert_ca_leaf(ctx: ScanContext) -> Result:
    """A leaf with basicConstraints cA=TRUE could sign certificates for any name if its key
    leaked, and strict validators (sslyze, the CA/B profile) reject it as an end-entity
    certificate (RFC 5280 §4.2.1.9)."""
    found = await _certificate(ctx)
    if isinstance(found, Result):
        return found
    _, leaf = found
    eku = {None: "no EKU", True: "EKU serverAuth", False: "EKU without serverAuth"}
    evidence = f"{leaf.subject}: basicConstraints cA={leaf.is_ca}, {eku[leaf.server_auth_eku]}"
    if leaf.is_ca:
        return Result.failed(evidence, reason="the server certificate asserts CA:TRUE")
    return Result.passed(evidence)


@check(
    id="tls.cert-key-size",
    title="The certificate key is strong (RSA >= 2048, EC >= 256 bits)",
    category="tls",
    severity="high",
    references=(MOZILLA,),
    remediation="Reissue with an RSA 2048+ or ECDSA P-256+ key.",
    max_requests=0,
)
async def cert_key_size(ctx: ScanContext) -> Result:
    """RSA keys under 2048 bits are within reach of factoring (1024-bit is deprecated since
    2013); Mozilla's profiles require RSA 2048 or ECDSA P-256 at least."""
    found = await _certificate(ctx)
    if isinstance(found, Result):
        return found
    _, leaf = found
    evidence = f"{leaf.subject}: {leaf.key_type} {leaf.key_bits} bits" + (
        f" ({leaf.curve})" if leaf.curve else ""
    )
    weak = (leaf.key_type in ("RSA", "DSA") and leaf.key_bits < MIN_RSA_BITS) or (
        leaf.key_type == "EC" and leaf.key_bits < MIN_EC_BITS
    )
    if weak:
        return Result.failed(evidence, reason=f"weak {leaf.key_type} key of {leaf.key_bits} bits")
    if leaf.key_type == "unknown":
        return Result.skipped("the certificate key type could not be read", evidence)
    return Result.passed(evidence)


@check(
    id="tls.cert-signature",
    title="No SHA-1 or MD5 signatures in the chain",
    category="tls",
    severity="high",
    references=(MOZILLA,),
    remediation="Reissue the certificate (and intermediates) signed with SHA-256 or better.",
    max_requests=0,
)
async def cert_signature(ctx: ScanContext) -> Result:
    """SHA-1 and MD5 certificate signatures can be forged with chosen-prefix collisions
    (SHAttered, the 2008 rogue CA). Judged for the leaf and every intermediate the server
    sent; a self-signed root's own signature is not used by clients and is not judged."""
    found = await _certificate(ctx)
    if isinstance(found, Result):
        return found
    facts, leaf = found
    judged = [c for c in facts.chain if c is leaf or not c.self_signed]
    bad = [c for c in judged if c.signature_hash in ("sha1", "md5")]
    evidence = "; ".join(f"{c.subject}: {c.signature_algorithm}" for c in judged)
    if bad:
        return Result.failed(
            evidence, reason=f"{bad[0].signature_hash} signature on {bad[0].subject}"
        )
    return Result.passed(evidence)


@check(
    id="tls.cert-lifespan",
    title="The certificate lifetime is at most 398 days",
    category="tls",
    severity="low",
    references=("https://cabforum.org/working-groups/server/baseline-requirements/requirements/",),
    remediation="Issue certificates valid for 398 days or less (90 with ACME) and automate "
    "renewal.",
    max_requests=0,
)
async def cert_lifespan(ctx: ScanContext) -> Result:
    """The CA/Browser Forum Baseline Requirements (§6.3.2) cap publicly trusted certificates
    at 398 days; browsers reject longer ones. The rule binds public CAs only, so a chain
    trusted only through ``--ca-file`` or not trusted at all is skipped (private PKI)."""
    found = await _certificate(ctx)
    if isinstance(found, Result):
        return found
    facts, leaf = found
    evidence = f"{leaf.describe()}; lifetime {leaf.lifespan_days:.0f} days"
    if facts.trust.trusted is not True or ctx.options.ca_file:
        return Result.skipped(
            "not a publicly trusted chain: lifetime limits bind public CAs", evidence
        )
    if leaf.lifespan_days > LIFESPAN_MAX_DAYS:
        return Result.failed(evidence, reason=f"lifetime of {leaf.lifespan_days:.0f} days")
    return Result.passed(evidence)


@check(
    id="tls.cert-chain-order",
    title="The chain is sent in issuing order",
    category="tls",
    severity="low",
    references=("https://www.rfc-editor.org/rfc/rfc5246#section-7.4.2",),
    remediation="Serve leaf first, then each intermediate that issued the one before it "
    "(nginx: concatenate leaf + intermediates in `ssl_certificate`).",
    max_requests=0,
)
async def cert_chain_order(ctx: ScanContext) -> Result:
    """RFC 5246 §7.4.2: each certificate must directly certify the one preceding it; a
    misordered or padded chain breaks strict clients. Probe: the Certificate message of a
    TLS 1.2-or-lower handshake (TLS 1.3 hides it, then this control skips)."""
    facts = await _facts(ctx)
    if isinstance(facts, Result):
        return facts
    if isinstance(facts.chain_complete, Untested):
        return Result.skipped(facts.chain_complete.reason)
    chain = facts.chain
    if not chain:
        return Result.skipped("no certificate was read from the server")
    evidence = " <- ".join(c.subject for c in chain)
    for child, parent in itertools.pairwise(chain):
        if child.issuer != parent.subject:
            return Result.failed(
                evidence,
                reason=f"{parent.subject!r} does not issue the preceding {child.subject!r}",
            )
    return Result.passed(f"{len(chain)} certificate(s): {evidence}")


@check(
    id="tls.ocsp-must-staple",
    title="A must-staple certificate is served with a stapled OCSP response",
    category="tls",
    severity="medium",
    references=("https://www.rfc-editor.org/rfc/rfc7633",),
    remediation="Enable OCSP stapling (nginx `ssl_stapling on; ssl_stapling_verify on;`) or "
    "reissue without the TLS Feature extension.",
    max_requests=0,
)
async def ocsp_must_staple(ctx: ScanContext) -> Result:
    """A certificate with the TLS Feature status_request (RFC 7633 "must-staple") is refused
    by Firefox when the server does not staple. Evidence also reports stapling, the OCSP
    responder and embedded SCTs (Certificate Transparency) for information."""
    found = await _certificate(ctx)
    if isinstance(found, Result):
        return found
    facts, leaf = found
    stapling = facts.ocsp_stapling
    stapled = str(stapling) if isinstance(stapling, Untested) else ("yes" if stapling else "no")
    evidence = (
        f"{leaf.subject}: must-staple={leaf.must_staple}, stapling={stapled}, "
        f"OCSP responders={list(leaf.ocsp_urls) or 'none'}, embedded SCTs={leaf.sct_count}"
    )
    if not leaf.must_staple:
        return Result.passed(evidence)
    if isinstance(stapling, Untested):
        return Result.skipped(stapling.reason, evidence)
    if stapling:
        return Result.passed(evidence)
    return Result.failed(evidence, reason="must-staple certificate served without stapling")
