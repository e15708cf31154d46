"""TLS probing for ``bastion scan``: what a server offers, and its certificate, as facts.

Mechanism, and why
------------------
* **Capabilities** (protocol versions, cipher suites, ECDH groups, DH size, compression,
  secure renegotiation, extended master secret, OCSP stapling, downgrade SCSV, cipher order)
  come from hand-built ClientHellos whose ServerHello is read and the connection dropped
  (:mod:`._wire`). A capability is the server's *choice* among what was offered, so the hello
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

from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from bastion.scanner.context import ScanContext

__all__ = [
    "PROTOCOLS",
    "AcceptedSuite",
    "CertificateInfo",
    "TLSFacts",
    "Tri",
    "TrustResult",
    "Untested",
    "collect",
    "is_untested",
    "plain_http_facts",
    "probe_tls",
]

HANDSHAKE_TIMEOUT = 3.0  # per connection; loopback answers in milliseconds


async def collect(ctx: ScanContext) -> TLSFacts:
    """The scan context's TLS facts provider (``ctx.tls_facts()`` calls it once per scan)."""
    port = ctx.target.port or (443 if ctx.is_https else 80)
    if not ctx.is_https:
        return plain_http_facts(ctx.host, port)
    return await probe_tls(
        ctx.host,
        port,
        ca_file=ctx.options.ca_file,
        handshake_timeout=min(ctx.options.timeout, HANDSHAKE_TIMEOUT),
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
