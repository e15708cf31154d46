"""The probe itself: concurrent, bounded hellos and two real handshakes; returns TLSFacts.

Plan (each phase runs its probes concurrently under one semaphore, each with a short timeout):

1. one hello per protocol (SSLv2 .. TLS 1.3), plus two full handshakes with the ``ssl``
   module: one that accepts any certificate (the leaf a client sees, what a default client
   negotiates) and one that verifies the chain against the system store and ``--ca-file``;
2. for each offered protocol, the accepted cipher suites by elimination (offer a set, note the
   server's pick, offer the rest again, until it refuses); the table is cut into chunks that
   are enumerated in parallel (acceptance of one suite never depends on the others offered);
   in parallel the accepted ECDH groups (same elimination) and the downgrade-SCSV reaction;
3. the server's cipher preference (the same two suites offered in both orders).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import ssl
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bastion.scanner.tls import wire
from bastion.scanner.tls._certs import (
    hostname_matches,
    parse_certificate_quietly,
    pem_anchors,
    strict_validation,
    system_anchors,
)
from bastion.scanner.tls.facts import (
    PROTOCOLS,
    AcceptedSuite,
    CertificateInfo,
    TLSFacts,
    Tri,
    TrustResult,
    Untested,
    unprobed_facts,
)
from bastion.scanner.tls.suites import GROUPS, LEGACY_SUITES, TLS13_SUITES, CipherSuite
from bastion.scanner.tls.wire import VERSIONS, Answer

__all__ = ["probe_tls"]

_CHUNKS = 4  # parallel elimination chains per protocol
# OpenSSL's X509_V_FLAG_NO_CHECK_TIME (not exported by the ssl module): judge the chain of
# trust without the validity dates, which have their own controls.
_X509_V_FLAG_NO_CHECK_TIME = 0x200000


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


@dataclass
class _Run:
    """State shared by the probes of one scan: where, how long, how many at once."""

    host: str
    port: int
    sni: str | None
    timeout: float
    semaphore: asyncio.Semaphore
    share: tuple[int, bytes]
    handshakes: int = 0
    notes: list[str] = field(default_factory=list)

    async def hello(
        self,
        version: int,
        suites: Sequence[int],
        *,
        want_flight: bool = False,
        groups: Sequence[int] = wire.DEFAULT_GROUPS,
        key_share: bool = True,
        fallback_scsv: bool = False,
    ) -> Answer:
        share = self.share if key_share and self.share[0] in groups else None
        message = wire.build_client_hello(
            version,
            suites,
            server_name=self.sni,
            groups=groups,
            key_share=share,
            fallback_scsv=fallback_scsv,
        )
        async with self.semaphore:
            self.handshakes += 1
            return await wire.exchange(
                self.host, self.port, message, deadline_s=self.timeout, want_flight=want_flight
            )

    async def sslv2(self) -> Answer:
        async with self.semaphore:
            self.handshakes += 1
            return await wire.exchange(
                self.host,
                self.port,
                wire.build_sslv2_client_hello(),
                deadline_s=self.timeout,
                sslv2=True,
            )


def _suites_for(version: int) -> tuple[CipherSuite, ...]:
    if version >= 0x0304:
        return TLS13_SUITES
    return tuple(s for s in LEGACY_SUITES if version >= 0x0303 or not s.tls12_only)


def _protocol_result(name: str, answer: Answer) -> Tri:
    wanted = 0x0002 if name == "SSLv2" else VERSIONS[name]
    if answer.kind == "sslv2":
        return True
    if answer.kind == "hello" and answer.hello is not None:
        return answer.hello.version == wanted
    if answer.kind in ("alert", "closed"):
        return False
    return Untested(f"{name} hello got {answer.describe()}")


@dataclass
class _Enumeration:
    accepted: dict[int, CipherSuite] = field(default_factory=dict)
    answers: list[Answer] = field(default_factory=list)
    gap: str | None = None


async def _eliminate(run: _Run, version: int, chunk: Sequence[CipherSuite]) -> _Enumeration:
    """Offer ``chunk``; remove the suite the server picks; repeat until it refuses."""
    result = _Enumeration()
    remaining = {s.code: s for s in chunk}
    while remaining:
        answer = await run.hello(version, list(remaining), want_flight=version < 0x0304)
        if answer.kind in ("alert", "closed"):
            return result  # nothing left that the server accepts
        if answer.kind != "hello" or answer.hello is None:
            result.gap = answer.describe()
            return result
        if answer.hello.version != version or answer.hello.cipher not in remaining:
            result.gap = f"server answered {answer.describe()} to an offer it could not pick"
            return result
        result.answers.append(answer)
        result.accepted[answer.hello.cipher] = remaining.pop(answer.hello.cipher)
    return result


async def _enumerate(run: _Run, version: int) -> _Enumeration:
    candidates = _suites_for(version)
    size = max(1, -(-len(candidates) // _CHUNKS))
    chunks = [candidates[i : i + size] for i in range(0, len(candidates), size)]
    parts = await asyncio.gather(*(_eliminate(run, version, c) for c in chunks))
    merged = _Enumeration()
    for part in parts:
        merged.accepted.update(part.accepted)
        merged.answers.extend(part.answers)
        merged.gap = merged.gap or part.gap
    return merged


async def _groups_tls12(run: _Run, version: int, suites: Sequence[CipherSuite]) -> set[int] | str:
    """ECDH groups accepted below TLS 1.3: offer ECDHE suites with a shrinking group list and
    read the curve from each ServerKeyExchange (RFC 8422 §5.4)."""
    ecdhe = [s.code for s in suites if s.kex == "ECDHE"]
    accepted: set[int] = set()
    remaining = [g.code for g in GROUPS]
    while ecdhe and remaining:
        answer = await run.hello(version, ecdhe, want_flight=True, groups=remaining)
        if answer.kind in ("alert", "closed"):
            break
        if answer.kind != "hello" or answer.server_key_exchange is None:
            return f"group probe got {answer.describe()}"
        parsed = wire.parse_server_key_exchange(answer.server_key_exchange, "ECDHE")
        if parsed is None or parsed[1] not in remaining:
            return f"server chose an ECDH group it was not offered ({parsed})"
        accepted.add(parsed[1])
        remaining.remove(parsed[1])
    return accepted


async def _groups_tls13(run: _Run) -> set[int] | str:
    """TLS 1.3 groups: a ServerHello's key share or a HelloRetryRequest names the group."""
    accepted: set[int] = set()
    remaining = [g.code for g in GROUPS if not g.deprecated] + [256, 257, 258, 259, 260]
    while remaining:
        answer = await run.hello(0x0304, [s.code for s in TLS13_SUITES], groups=remaining)
        if answer.kind in ("alert", "closed"):
            break
        group = answer.hello.key_share_group if answer.hello is not None else None
        if group is None or group not in remaining:
            return f"group probe got {answer.describe()}"
        accepted.add(group)
        remaining.remove(group)
    return accepted


def _client_context(
    *, verify: bool, ca_file: str | None, max_tls12: bool = False
) -> ssl.SSLContext:
    """A client context that can reach old servers: TLS 1.0+ and every suite (SECLEVEL 0), so
    that a weak key or a SHA-1 signature is judged by its own control, not by a failed
    handshake. ``verify`` adds the system store, ``ca_file`` and chain checking (no dates)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False  # judged separately, per RFC 9525, from the parsed SANs
    with warnings.catch_warnings():
        # TLSVersion.TLSv1 is deprecated in the ssl module; reaching such servers is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
    if max_tls12:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ALL:COMPLEMENTOFALL:@SECLEVEL=0")
    if verify:
        context.verify_mode = ssl.CERT_REQUIRED
        _load_system_store(context)
        if ca_file:
            context.load_verify_locations(cafile=ca_file)
        context.verify_flags |= _X509_V_FLAG_NO_CHECK_TIME
    else:
        context.verify_mode = ssl.CERT_NONE
    return context


def _load_system_store(context: ssl.SSLContext) -> None:
    """The system trust store, preferably as the hashed directory: OpenSSL then looks up
    issuers on demand (~15 ms) instead of parsing the whole bundle (~150 ms). Debian's
    update-ca-certificates writes both from the same certificates. An explicit
    SSL_CERT_FILE, or no hashed directory, falls back to the default loading."""
    paths = ssl.get_default_verify_paths()
    capath = paths.capath
    if (
        not os.environ.get(paths.openssl_cafile_env)
        and capath
        and os.path.isdir(capath)
        and any(name.endswith(".0") for name in os.listdir(capath))
    ):
        context.load_verify_locations(capath=capath)
    else:
        context.load_default_certs()


@functools.lru_cache(maxsize=16)
def _cached_context(
    verify: bool, ca_file: str | None, _stamp: tuple[int, int] | None, max_tls12: bool
) -> ssl.SSLContext:
    return _client_context(verify=verify, ca_file=ca_file, max_tls12=max_tls12)


def _context_for(verify: bool, ca_file: str | None, max_tls12: bool = False) -> ssl.SSLContext:
    """Contexts are cached: loading the system store costs ~0.1 s, more than a whole probe
    of a loopback server. The CA file's mtime and size are part of the key."""
    stamp = None
    if ca_file:
        info = os.stat(ca_file)
        stamp = (info.st_mtime_ns, info.st_size)
    return _cached_context(verify, ca_file, stamp, max_tls12)


class _CAFileError(Exception):
    """The --ca-file could not be read or parsed."""


@dataclass
class _Handshake:
    leaf: bytes | None = None
    negotiated: str = ""
    error: BaseException | None = None


async def _handshake(run: _Run, context: ssl.SSLContext) -> _Handshake:
    async with run.semaphore:
        run.handshakes += 1
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(run.timeout):
                _reader, writer = await asyncio.open_connection(
                    run.host,
                    run.port,
                    ssl=context,
                    server_hostname=run.sni or "",
                    ssl_handshake_timeout=run.timeout,
                )
                tls = writer.get_extra_info("ssl_object")
                cipher = tls.cipher() if tls is not None else None
                leaf = tls.getpeercert(binary_form=True) if tls is not None else None
                negotiated = f"{tls.version()} {cipher[0]}" if tls and cipher else ""
                return _Handshake(leaf, negotiated)
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            return _Handshake(error=exc)
        finally:
            if writer is not None:
                await _close(writer, run.timeout)


async def _close(writer: asyncio.StreamWriter, grace: float) -> None:
    """Close a TLS connection without waiting on the server for long: the polite close
    sends close_notify and waits for the peer (asyncio's default shutdown timeout is 30 s),
    which a hostile server can stall."""
    writer.close()
    try:
        async with asyncio.timeout(min(grace, 1.0)):
            await writer.wait_closed()
    except (OSError, ssl.SSLError, TimeoutError):
        writer.transport.abort()


async def _verified_handshake(
    run: _Run, ca_file: str | None, max_tls12: bool = False
) -> _Handshake:
    """The trust handshake; its context is built off the event loop (file I/O, parsing)."""
    try:
        context = await asyncio.to_thread(_context_for, True, ca_file, max_tls12)
    except (OSError, ssl.SSLError) as exc:
        return _Handshake(error=_CAFileError(f"--ca-file could not be loaded: {exc}"))
    return await _handshake(run, context)


def _trust(result: _Handshake, stores: tuple[str, ...]) -> TrustResult:
    error = result.error
    if error is None:
        return TrustResult(True, "", stores)
    if isinstance(error, _CAFileError):
        return TrustResult(Untested(str(error)), "", stores)
    if isinstance(error, ssl.SSLCertVerificationError):
        return TrustResult(
            False, error.verify_message or str(error), stores, verify_code=error.verify_code
        )
    if isinstance(error, TimeoutError):
        return TrustResult(Untested("verifying handshake timed out"), "", stores)
    return TrustResult(Untested(f"verifying handshake failed: {error}"), "", stores)


def _strict(
    chain_der: Sequence[bytes],
    chain: Sequence[CertificateInfo],
    complete: Tri,
    trust: TrustResult,
    name: str,
    ca_file: str | None,
) -> tuple[Tri, str]:
    """Strict (cryptography / sslyze) validation of a chain OpenSSL already trusts."""
    if trust.trusted is not True:
        return Untested("the chain is not trusted (see tls.cert-trust)"), ""
    if not chain or len(chain) != len(chain_der):
        return Untested("no parsed certificate chain"), ""
    if complete is not True and not chain[0].self_signed:
        return Untested("the intermediates were not visible (TLS 1.3 only)"), ""
    try:
        anchors = (pem_anchors(ca_file) if ca_file else ()) + system_anchors()
    except (OSError, ValueError) as exc:
        return Untested(f"trust anchors could not be read: {exc}"), ""
    try:
        error = strict_validation(chain_der, name, anchors)
    except Exception as exc:  # the chain is the target's: a parser surprise is a fact, not a crash
        return Untested(f"the strict validator could not read the chain: {exc}"), ""
    return (error is None), (error or "")


def _flight_answer(answers: Iterable[Answer]) -> Answer | None:
    for answer in answers:
        if answer.kind == "hello" and answer.hello is not None:
            return answer
    return None


def _cipher_order(first: Answer, second: Answer, a: int, b: int) -> Tri:
    if first.hello is None or second.hello is None:
        return Untested(f"order probe got {first.describe()} / {second.describe()}")
    picked = (first.hello.cipher, second.hello.cipher)
    if picked[0] == picked[1]:
        return True  # same pick whatever the client's order: the server decides
    if picked == (a, b):
        return False  # followed the client's first choice both times
    return Untested(f"inconsistent picks {picked[0]:#06x}/{picked[1]:#06x}")


#: RFC 8446 §4.2.7 (and RFC 8422 §5.1.1): NamedGroup x25519 = 0x001D. The key share the
#: TLS 1.3 hellos carry (generated once per scan).
X25519 = 29
#: RFC 7507 §2 / RFC 8446 §6: the inappropriate_fallback alert, the right answer to a
#: downgraded hello carrying TLS_FALLBACK_SCSV.
ALERT_INAPPROPRIATE_FALLBACK = 86
_LEGACY_NAMES = ("SSLv3", "TLSv1.0", "TLSv1.1", "TLSv1.2")


@dataclass(frozen=True)
class _Reach:
    """Phase 1: one hello per protocol and the two full handshakes."""

    hello_answers: tuple[Answer, ...]  # in PROTOCOLS order
    protocols: tuple[tuple[str, Tri], ...]
    offered: tuple[str, ...]
    plain: _Handshake  # any certificate accepted: what a client sees
    verified: _Handshake  # against the system store and --ca-file

    def failure(self, host: str, port: int) -> str | None:
        """Why nothing more can be probed (no protocol and no certificate), or None."""
        if self.offered or self.plain.leaf is not None:
            return None
        last = self.hello_answers[-1]
        kinds = {a.kind for a in self.hello_answers}
        if kinds <= {"refused"}:
            return f"could not connect to {host}:{port}: {last.detail}"
        if kinds & {"garbage"}:
            return f"{host}:{port} does not speak TLS ({last.describe()})"
        return f"no TLS handshake succeeded with {host}:{port} ({self.plain.error})"


@dataclass(frozen=True)
class _Offer:
    """Phase 2: the suites per protocol, the groups, and the downgrade probe's answer."""

    enum_versions: tuple[str, ...]  # offered protocols whose suites were enumerated
    enumerations: dict[str, _Enumeration]
    best_legacy: str | None  # the highest offered protocol below TLS 1.3
    groups12: set[int] | str  # a str says why it is unknown
    groups13: set[int] | str
    fallback_version: str | None  # the second-highest TLS version, for the SCSV probe
    fallback_answer: Answer | None


@dataclass(frozen=True)
class _Legacy:
    """What the TLS 1.2-or-lower ServerHellos showed (extensions, compression, chain)."""

    answers: tuple[Answer, ...]
    compression: Tri
    secure_renegotiation: Tri
    extended_master_secret: Tri
    ocsp_stapling: Tri


@dataclass(frozen=True)
class _KeyExchange:
    dh_bits: int | Untested | None
    ecdh_groups: tuple[int, ...] | Untested


@dataclass(frozen=True)
class _Chain:
    der: tuple[bytes, ...]
    parsed: tuple[CertificateInfo, ...]
    complete: Tri


async def probe_tls(
    host: str,
    port: int,
    *,
    server_name: str | None = None,
    ca_file: str | None = None,
    handshake_timeout: float = 3.0,
    concurrency: int = 12,
) -> TLSFacts:
    """Probe ``host:port`` and return what it offers. Never raises for network trouble.

    ``server_name`` is the SNI to send (default: ``host`` unless it is an IP literal);
    ``handshake_timeout`` bounds each connection; ``concurrency`` the connections in flight.
    """
    started = time.perf_counter()
    host = host.strip("[]")
    sni = server_name if server_name is not None else (None if _is_ip(host) else host)
    share = (
        x25519.X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    stores = ("system",) + ((f"ca-file {ca_file}",) if ca_file else ())
    # Resolve once and keep to one address: every probe then talks to the same server (a
    # name with several addresses could otherwise mix two servers' answers in one report).
    address, problem = await _resolve(host, port, handshake_timeout)
    semaphore = asyncio.Semaphore(max(1, concurrency))
    run = _Run(address or host, port, sni, handshake_timeout, semaphore, (X25519, share))
    if address is None:
        unknown: Tri = Untested(problem)
        unreachable = tuple((name, unknown) for name in PROTOCOLS)
        return _failed(host, port, sni, problem, unreachable, stores, run, started)

    reach = await _probe_protocols(run, ca_file)
    failure = reach.failure(host, port)
    if failure is not None:
        return _failed(host, port, sni, failure, reach.protocols, stores, run, started)
    offer = await _probe_offer(run, reach.offered)
    server_order = await _probe_preference(run, offer)

    accepted = _accepted_suites(offer)
    gaps = tuple(
        (name, gap) for name in offer.enum_versions if (gap := offer.enumerations[name].gap)
    )
    legacy = _legacy_observations(reach, offer)
    fallback = _fallback_verdict(offer, run)  # before the chain: the notes keep their order
    key_exchange = _key_exchange(legacy.answers, accepted, offer)
    chain = _chain(legacy.answers, reach.plain, run)
    name = sni or host
    hostname: Tri = (
        hostname_matches(chain.parsed[0], name)
        if chain.parsed
        else Untested("no certificate to compare")
    )
    trust = _trust(reach.verified, stores)
    strict, strict_error = _strict(
        list(chain.der), list(chain.parsed), chain.complete, trust, name, ca_file
    )

    return TLSFacts(
        host=host,
        address=run.host,
        port=port,
        server_name=sni,
        failure=None,
        protocols=reach.protocols,
        accepted=accepted,
        enumeration_gaps=gaps,
        server_cipher_order=server_order,
        compression=legacy.compression,
        secure_renegotiation=legacy.secure_renegotiation,
        extended_master_secret=legacy.extended_master_secret,
        fallback_scsv=fallback,
        ocsp_stapling=legacy.ocsp_stapling,
        ecdh_groups=key_exchange.ecdh_groups,
        dh_bits=key_exchange.dh_bits,
        chain=chain.parsed,
        chain_complete=chain.complete,
        hostname_match=hostname,
        trust=trust,
        strict_chain=strict,
        strict_chain_error=strict_error,
        negotiated=reach.plain.negotiated,
        handshakes=run.handshakes,
        duration_s=time.perf_counter() - started,
        notes=tuple(run.notes),
    )


async def _probe_protocols(run: _Run, ca_file: str | None) -> _Reach:
    """Phase 1: which protocols; the certificate as a client sees it; trust."""
    async with asyncio.TaskGroup() as group:
        sslv2_task = group.create_task(run.sslv2())
        legacy_tasks = [
            group.create_task(
                run.hello(
                    VERSIONS[name],
                    [s.code for s in _suites_for(VERSIONS[name])],
                    want_flight=True,
                )
            )
            for name in _LEGACY_NAMES
        ]
        tls13_task = group.create_task(run.hello(0x0304, [s.code for s in TLS13_SUITES]))
        plain_task = group.create_task(_handshake(run, _context_for(False, None)))
        verified_task = group.create_task(_verified_handshake(run, ca_file))
    hello_answers = (sslv2_task.result(), *(t.result() for t in legacy_tasks), tls13_task.result())
    plain, verified = plain_task.result(), verified_task.result()
    protocols = tuple(
        (name, _protocol_result(name, answer))
        for name, answer in zip(PROTOCOLS, hello_answers, strict=True)
    )
    offered = tuple(name for name, value in protocols if value is True)
    if "TLSv1.2" in offered or "TLSv1.1" in offered or "TLSv1.0" in offered:
        # A server can choose TLS 1.3 and then fail it (e.g. no TLS 1.3 group in common);
        # clients then retry without 1.3, and so does the probe, so the certificate and
        # trust are still judged.
        if plain.leaf is None and not isinstance(plain.error, ssl.SSLCertVerificationError):
            plain = await _handshake(run, _context_for(False, None, max_tls12=True))
        if verified.error is not None and not isinstance(
            verified.error, (ssl.SSLCertVerificationError, _CAFileError)
        ):
            verified = await _verified_handshake(run, ca_file, max_tls12=True)
            run.notes.append("the TLS 1.3 handshake failed; trust was judged over TLS 1.2")
    return _Reach(hello_answers, protocols, offered, plain, verified)


async def _probe_offer(run: _Run, offered: tuple[str, ...]) -> _Offer:
    """Phase 2: suites per protocol, groups, downgrade protection (all concurrently)."""
    enum_versions = tuple(name for name in offered if name != "SSLv2")
    tls_versions = [n for n in offered if n.startswith("TLS")]
    best_legacy = next((n for n in reversed(_LEGACY_NAMES) if n in offered), None)
    fallback_version = tls_versions[-2] if len(tls_versions) >= 2 else None
    async with asyncio.TaskGroup() as group:
        enum_tasks = {
            name: group.create_task(_enumerate(run, VERSIONS[name])) for name in enum_versions
        }
        groups12_task = (
            group.create_task(
                _groups_tls12(run, VERSIONS[best_legacy], _suites_for(VERSIONS[best_legacy]))
            )
            if best_legacy and best_legacy != "SSLv3"
            else None
        )
        groups13_task = group.create_task(_groups_tls13(run)) if "TLSv1.3" in offered else None
        fallback_task = (
            group.create_task(
                run.hello(
                    VERSIONS[fallback_version],
                    [s.code for s in _suites_for(VERSIONS[fallback_version])],
                    fallback_scsv=True,
                )
            )
            if fallback_version
            else None
        )
    return _Offer(
        enum_versions=enum_versions,
        enumerations={name: task.result() for name, task in enum_tasks.items()},
        best_legacy=best_legacy,
        groups12=groups12_task.result() if groups12_task else set(),
        groups13=groups13_task.result() if groups13_task else set(),
        fallback_version=fallback_version,
        fallback_answer=fallback_task.result() if fallback_task else None,
    )


async def _probe_preference(run: _Run, offer: _Offer) -> Tri:
    """Phase 3: whether the server picks by its own order (two suites offered both ways)."""
    enumerations = offer.enumerations
    best_legacy = offer.best_legacy
    order_version = best_legacy if best_legacy and enumerations.get(best_legacy) else None
    if order_version is None or len(enumerations[order_version].accepted) < 2:
        order_version = "TLSv1.3" if "TLSv1.3" in enumerations else order_version
    if order_version is not None:
        codes = [s.code for s in enumerations[order_version].accepted.values()]
        if len(codes) >= 2:
            a, b = codes[0], codes[-1]
            ordered = await asyncio.gather(
                run.hello(VERSIONS[order_version], [a, b]),
                run.hello(VERSIONS[order_version], [b, a]),
            )
            return _cipher_order(ordered[0], ordered[1], a, b)
    return Untested("fewer than two cipher suites accepted")


def _accepted_suites(offer: _Offer) -> tuple[AcceptedSuite, ...]:
    """Every accepted suite, per protocol, in the suite table's order."""
    order_index = {s.code: i for i, s in enumerate(LEGACY_SUITES + TLS13_SUITES)}
    return tuple(
        AcceptedSuite(name, suite)
        for name in offer.enum_versions
        for suite in sorted(
            offer.enumerations[name].accepted.values(), key=lambda s: order_index[s.code]
        )
    )


def _legacy_observations(reach: _Reach, offer: _Offer) -> _Legacy:
    """What the TLS 1.2-or-lower hellos showed: extensions, compression, stapling."""
    answers = [
        a
        for name in offer.enum_versions
        if name != "TLSv1.3"
        for a in offer.enumerations[name].answers
    ]
    answers += [
        a
        for name, a in zip(PROTOCOLS, reach.hello_answers, strict=True)
        if name in _LEGACY_NAMES and name in reach.offered
    ]
    no_legacy = Untested("no TLS 1.2-or-lower handshake to observe (TLS 1.3 only)")
    ext_answers = [
        a
        for a in answers
        if a.hello is not None and a.hello.version >= 0x0301  # SSLv3 has no extensions
    ]

    def extension_seen(code: int) -> Tri:
        if not ext_answers:
            return no_legacy
        return all(code in a.hello.extensions for a in ext_answers if a.hello is not None)

    stapling: Tri = (
        any(wire.EXT_STATUS_REQUEST in a.hello.extensions for a in ext_answers if a.hello)
        if ext_answers
        else Untested("TLS 1.3 staples inside the encrypted handshake; not observed")
    )
    return _Legacy(
        answers=tuple(answers),
        compression=any(a.hello is not None and a.hello.compression != 0 for a in answers),
        secure_renegotiation=extension_seen(wire.EXT_RENEGOTIATION_INFO),
        extended_master_secret=extension_seen(wire.EXT_EXTENDED_MASTER_SECRET),
        ocsp_stapling=stapling,
    )


def _fallback_verdict(offer: _Offer, run: _Run) -> Tri:
    """Whether a downgraded hello with TLS_FALLBACK_SCSV is refused (RFC 7507)."""
    answer = offer.fallback_answer
    if offer.fallback_version is None:
        return Untested("only one TLS version offered: there is nothing to downgrade to")
    if answer is None or answer.kind not in ("alert", "closed", "hello"):
        detail = answer.describe() if answer else "nothing"
        return Untested(f"downgrade probe got {detail}")
    if answer.kind == "hello":
        return False
    # The same hello without the SCSV was accepted (the version is offered), so refusing it
    # with the SCSV honours RFC 7507. The right alert is inappropriate_fallback, but some
    # stacks (asyncio servers) close without flushing the alert.
    if answer.alert != ALERT_INAPPROPRIATE_FALLBACK:
        run.notes.append(
            f"downgraded hello with TLS_FALLBACK_SCSV refused by {answer.describe()}"
            " rather than the inappropriate_fallback alert"
        )
    return True


def _key_exchange(
    legacy_answers: Sequence[Answer], accepted: Sequence[AcceptedSuite], offer: _Offer
) -> _KeyExchange:
    """The smallest DH group a DHE handshake used, and the ECDH groups accepted."""
    dh_sizes: list[int] = []
    for answer in legacy_answers:
        if answer.hello is None or answer.server_key_exchange is None:
            continue
        picked = LEGACY_BY_CODE.get(answer.hello.cipher)
        if picked is not None and picked.kex == "DHE":
            parsed = wire.parse_server_key_exchange(answer.server_key_exchange, "DHE")
            if parsed is not None:
                dh_sizes.append(parsed[1])
    dhe_accepted = any(a.suite.kex == "DHE" for a in accepted)
    dh_bits: int | Untested | None = min(dh_sizes) if dh_sizes else None
    if dhe_accepted and not dh_sizes:
        dh_bits = Untested("a DHE suite was accepted but no ServerKeyExchange was read")
    ecdh_groups: tuple[int, ...] | Untested
    if isinstance(offer.groups12, str):
        ecdh_groups = Untested(offer.groups12)
    elif isinstance(offer.groups13, str):
        ecdh_groups = Untested(offer.groups13)
    else:
        ecdh_groups = tuple(sorted(offer.groups12 | offer.groups13))
    return _KeyExchange(dh_bits, ecdh_groups)


def _chain(legacy_answers: Sequence[Answer], plain: _Handshake, run: _Run) -> _Chain:
    """The certificate chain: the TLS 1.2 Certificate message when it starts with the leaf
    the default handshake saw (TLS 1.3 encrypts it), else that leaf alone."""
    raw_chain: list[bytes] = next((a.certificates for a in legacy_answers if a.certificates), [])
    chain_der: list[bytes]
    complete: Tri
    if plain.leaf is not None and raw_chain and raw_chain[0] == plain.leaf:
        chain_der, complete = raw_chain, True
    elif plain.leaf is not None:
        chain_der = [plain.leaf]
        complete = Untested(
            "only the leaf was read (TLS 1.3 encrypts the Certificate message)"
            if not raw_chain
            else "the TLS 1.2 chain starts with a different certificate than TLS 1.3 serves"
        )
    else:
        chain_der, complete = raw_chain, bool(raw_chain) or Untested("no certificate read")
    parsed: list[CertificateInfo] = []
    for der in chain_der:
        try:
            parsed.append(parse_certificate_quietly(der))
        except Exception as exc:  # any certificate the server sends is target input
            run.notes.append(f"unparseable certificate in the chain: {exc}")
            break
    return _Chain(tuple(chain_der), tuple(parsed), complete)


LEGACY_BY_CODE = {s.code: s for s in LEGACY_SUITES}


async def _resolve(host: str, port: int, deadline_s: float) -> tuple[str | None, str]:
    """The first address of ``host`` that accepts a TCP connection, or why none did."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(deadline_s):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError) as exc:
        return None, f"cannot resolve {host}: {exc or 'timed out'}"
    last = "no address"
    for *_, sockaddr in infos:
        address = str(sockaddr[0])
        try:
            async with asyncio.timeout(deadline_s):
                _reader, writer = await asyncio.open_connection(address, port)
        except (OSError, TimeoutError) as exc:
            last = str(exc) or "timed out"
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return address, ""
    return None, f"could not connect to {host}:{port}: {last}"


def _failed(
    host: str,
    port: int,
    sni: str | None,
    failure: str,
    protocols: tuple[tuple[str, Tri], ...],
    stores: tuple[str, ...],
    run: _Run,
    started: float,
) -> TLSFacts:
    return unprobed_facts(
        host,
        port,
        failure,
        address=run.host,
        server_name=sni,
        protocols=protocols,
        stores=stores,
        handshakes=run.handshakes,
        duration_s=time.perf_counter() - started,
        notes=tuple(run.notes),
    )
