"""TLS probing for ``bastion scan``: what a server offers, and its certificate, as facts.

Mechanism, and why
------------------
* **Capabilities** (protocol versions, cipher suites, ECDH groups, DH size, compression,
  secure renegotiation, extended master secret, OCSP stapling, downgrade SCSV, cipher order)
  come from hand-built ClientHellos whose ServerHello is read and the connection dropped
  (:mod:`.wire`). A capability is the server's *choice* among what was offered, so the hello
  says it all; no handshake is completed and no key material is needed.
  Measured on this machine: the ``ssl`` module over the local OpenSSL 3.0 can still
  negotiate TLS 1.0 and 1.1 (with ``@SECLEVEL=0`` and ``minimum_version``), but has no SSLv2,
  no SSLv3 (``ssl.HAS_SSLv3`` is False) and no RC4, DES, 3DES, EXPORT, SEED or IDEA suites
  at any security level (Debian builds ``no-weak-ssl-ciphers``). An ``ssl``-only probe would
  have to answer "could not test" for exactly the suites that matter most; a raw hello can
  offer them all, whatever the local library supports.
* **Trust and the certificate a client sees** come from two real handshakes with the
  ``ssl`` module: one accepting any certificate (the leaf, what a default client
  negotiates), one verifying against the system store plus ``--ca-file`` with OpenSSL's own
  chain building, dates excluded (they have their own controls).
* **Certificate parsing** uses ``cryptography`` (:mod:`._certs`); hostname matching follows
  RFC 9525.
* **Not sslyze**: it is the better-known tool, but AGPL-3.0 (bastion is MIT) and it pulls a
  private OpenSSL build (nassl). It is used only as the comparison oracle in tests and bench.

Cost: every probe is concurrent under one semaphore with a short timeout; on loopback the
whole probe of a TLS 1.2/1.3 server takes ~0.1-0.3 s (about 20-60 connections, more for a
server accepting many suites), see ``bench/bench_scan.py``.

Not attempted (facts say so, they never pass silently): client-initiated renegotiation,
Heartbleed, ROBOT and CCS injection (these need crafted post-hello messages), and OCSP
stapling over TLS 1.3 (inside the encrypted handshake).
"""

from __future__ import annotations

from typing import Protocol

from bastion.scanner.tls._certs import (
    hostname_matches,
    parse_certificate,
    parse_certificate_quietly,
)
from bastion.scanner.tls._probe import probe_tls
from bastion.scanner.tls.facts import (
    PROTOCOLS,
    AcceptedSuite,
    CertificateInfo,
    TLSFacts,
    Tri,
    TrustResult,
    Untested,
    is_untested,
    unprobed_facts,
)

__all__ = [
    "PROTOCOLS",
    "AcceptedSuite",
    "CertificateInfo",
    "Endpoint",
    "TLSFacts",
    "Tri",
    "TrustResult",
    "Untested",
    "collect",
    "hostname_matches",
    "is_untested",
    "parse_certificate",
    "parse_certificate_quietly",
    "plain_http_facts",
    "probe_tls",
]

HANDSHAKE_TIMEOUT = 3.0  # per connection; loopback answers in milliseconds


class Endpoint(Protocol):
    """What :func:`collect` reads of the endpoint it is given
    (:class:`bastion.scanner.context.TLSEndpoint` is one)."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def https(self) -> bool: ...
    @property
    def ca_file(self) -> str | None: ...
    @property
    def timeout(self) -> float: ...


async def collect(endpoint: Endpoint, /) -> TLSFacts:
    """The scanner's TLS-facts provider (a :class:`bastion.scanner.context.TLSFactsProvider`,
    which the runner gives the scan context; ``ctx.tls_facts(TLSFacts)`` calls it once)."""
    if not endpoint.https:
        return plain_http_facts(endpoint.host, endpoint.port)
    return await probe_tls(
        endpoint.host,
        endpoint.port,
        ca_file=endpoint.ca_file,
        handshake_timeout=min(endpoint.timeout, HANDSHAKE_TIMEOUT),
    )


def plain_http_facts(host: str, port: int) -> TLSFacts:
    """Facts for an ``http://`` target: nothing probed, every control skips with this reason."""
    reason = "the target is plain HTTP: no TLS to probe"
    unknown = Untested(reason)
    return unprobed_facts(
        host,
        port,
        reason,
        address=host,
        server_name=None,
        protocols=tuple((name, unknown) for name in PROTOCOLS),
    )
