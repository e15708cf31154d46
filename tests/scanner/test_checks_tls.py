"""Every TLS control fails against a server built to fail it and passes against one that does not.

Servers are real: Python ``ssl`` servers on loopback free ports with chosen protocol versions,
cipher strings, groups, DH parameters and certificates made with ``cryptography``. What the
local OpenSSL 3 cannot serve at all (SSLv2, SSLv3, RC4, DES, 3DES, EXPORT, compression, no
RFC 5746, an ignored TLS_FALLBACK_SCSV) comes from a fake server that answers the ClientHello
with a hand-built ServerHello (``tests/scanner/tls/tlsfixtures.py``).

Each scenario is probed once per test module (the probe is what is slow, ~0.1-0.3 s); each
control is then judged through a real :class:`ScanContext` whose TLS facts are those facts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import bastion.scanner.checks.tls  # noqa: F401  (registers the controls)
from bastion.scanner.check import Result
from bastion.scanner.context import ScanContext, ScanOptions, TLSEndpoint
from bastion.scanner.registry import REGISTRY
from bastion.scanner.tls import TLSFacts, TrustResult, collect, plain_http_facts, probe_tls
from tests.scanner.tls.tlsfixtures import (
    NOW,
    FakeBehaviour,
    Files,
    ServerConfig,
    V,
    dh_params_1024,
    dh_params_ffdhe2048,
    fake_tls_server,
    issue,
    local_openssl_can,
    make_ca,
    openssl_sha1_cert,
    rsa_key,
    tls_server,
    write,
)

PATIENT = 10.0
TLS_CONTROLS = sorted(c.id for c in REGISTRY.all() if c.category == "tls")


# -- scenarios ------------------------------------------------------------------------------


@dataclasses.dataclass
class Scenario:
    facts: TLSFacts
    ca_file: str | None = None


def _probe(port: int, ca_file: Path | None, host: str = "localhost") -> TLSFacts:
    ca = str(ca_file) if ca_file else None
    # a patient per-connection timeout: the servers share this process (and its GIL)
    return asyncio.run(probe_tls(host, port, ca_file=ca, handshake_timeout=PATIENT))


def _serve_and_probe(
    config: ServerConfig, *, with_ca: bool = True, host: str = "localhost"
) -> Scenario:
    ca = config.files.ca if with_ca else None
    with tls_server(config) as port:
        facts = _probe(port, ca, host)
    return Scenario(facts, str(ca) if ca else None)


def _fake(behaviour: FakeBehaviour) -> Scenario:
    with fake_tls_server(behaviour) as port:
        return Scenario(_probe(port, None))


class World:
    """Builds each scenario once, on first use."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self._cache: dict[str, Scenario] = {}
        self.root = make_ca("bastion test root", 1)
        self.intermediate = issue(
            "bastion test intermediate", dns=(), ips=(), issuer=self.root, is_ca=True,
            key=rsa_key(2048, 2),
        )  # fmt: skip

    def leaf_files(self, name: str, **leaf: Any) -> Files:
        cert = issue(issuer=self.intermediate, **leaf)
        return write(self.dir, name, [cert, self.intermediate], ca=self.root)

    def get(self, name: str) -> Scenario:
        if name not in self._cache:
            self._cache[name] = getattr(self, "s_" + name.replace("-", "_"))()
        return self._cache[name]

    # -- servers done right
    def s_modern(self) -> Scenario:
        return _serve_and_probe(ServerConfig(self.leaf_files("modern")))

    def s_dhe2048(self) -> Scenario:
        config = ServerConfig(
            self.leaf_files("dhe"),
            ciphers="DHE+AESGCM",
            maximum=V.TLSv1_2,
            dh_params=dh_params_ffdhe2048(self.dir),
        )
        return _serve_and_probe(config)

    def s_tls13_only(self) -> Scenario:
        config = ServerConfig(self.leaf_files("t13"), minimum=V.TLSv1_3, maximum=V.TLSv1_3)
        return _serve_and_probe(config)

    def s_p256_only(self) -> Scenario:
        return _serve_and_probe(ServerConfig(self.leaf_files("p256"), ecdh_curve="prime256v1"))

    def s_client_order(self) -> Scenario:
        return _serve_and_probe(ServerConfig(self.leaf_files("order"), server_order=False))

    # -- weak configurations
    def s_weak12(self) -> Scenario:
        """TLS 1.2 only, every suite OpenSSL has (NULL, anon, CBC, static RSA), 1024-bit DH,
        secp224r1 as the only curve, no Extended Master Secret."""
        config = ServerConfig(
            self.leaf_files("weak12"),
            maximum=V.TLSv1_2,
            ciphers="ALL:COMPLEMENTOFALL:@SECLEVEL=0",
            dh_params=dh_params_1024(self.dir),
            ecdh_curve="secp224r1",
            extra_options=0x1,  # SSL_OP_NO_EXTENDED_MASTER_SECRET (OpenSSL 3.0)
        )
        return _serve_and_probe(config)

    def s_old_protocols(self) -> Scenario:
        for version in (V.TLSv1, V.TLSv1_1):
            reason = local_openssl_can(version)
            if reason:
                pytest.skip(reason)
        config = ServerConfig(
            self.leaf_files("old"),
            minimum=V.TLSv1,
            maximum=V.TLSv1_1,
            ciphers="ECDHE+AES:@SECLEVEL=0",
        )
        return _serve_and_probe(config)

    def s_rsa_kex_only(self) -> Scenario:
        config = ServerConfig(
            self.leaf_files("rsakex"), maximum=V.TLSv1_2, ciphers="AES128-SHA:AES256-SHA"
        )
        return _serve_and_probe(config)

    def s_fake_sslv2(self) -> Scenario:
        return _fake(FakeBehaviour(sslv2=True))

    def s_fake_sslv3(self) -> Scenario:
        return _fake(FakeBehaviour(versions=(0x0300,), suites=(0x002F,)))

    def s_fake_legacy(self) -> Scenario:
        """RC4, 3DES, EXPORT and DES suites, DEFLATE compression, no RFC 5746, and a
        TLS_FALLBACK_SCSV that is ignored: everything OpenSSL 3 cannot serve any more."""
        return _fake(
            FakeBehaviour(
                versions=(0x0301, 0x0302, 0x0303),
                suites=(0x0005, 0x000A, 0x0003, 0x0009),
                compression=True,
                renegotiation_info=False,
                honour_fallback=False,
            )
        )

    # -- certificates
    def s_expired(self) -> Scenario:
        files = self.leaf_files(
            "expired",
            not_before=NOW - dt.timedelta(days=100),
            not_after=NOW - dt.timedelta(days=1),
        )
        return _serve_and_probe(ServerConfig(files))

    def s_expiring(self) -> Scenario:
        files = self.leaf_files("expiring", not_after=NOW + dt.timedelta(days=10))
        return _serve_and_probe(ServerConfig(files))

    def s_wrong_host(self) -> Scenario:
        files = self.leaf_files("wronghost", dns=("other.example",), ips=())
        return _serve_and_probe(ServerConfig(files))

    def s_ip_target(self) -> Scenario:
        """Target https://127.0.0.1 and a certificate with only DNS:localhost: no IP SAN."""
        files = self.leaf_files("ipless", dns=("localhost",), ips=())
        return _serve_and_probe(ServerConfig(files), host="127.0.0.1")

    def s_ip_san(self) -> Scenario:
        files = self.leaf_files("ipsan", dns=(), ips=("127.0.0.1",))
        return _serve_and_probe(ServerConfig(files), host="127.0.0.1")

    def s_self_signed(self) -> Scenario:
        files = write(self.dir, "selfsigned", [issue()])
        return _serve_and_probe(ServerConfig(files), with_ca=False)

    def s_self_signed_pinned(self) -> Scenario:
        cert = issue()
        files = write(self.dir, "pinned", [cert], ca=cert)
        return _serve_and_probe(ServerConfig(files))

    def s_untrusted_chain(self) -> Scenario:
        return _serve_and_probe(ServerConfig(self.leaf_files("untrusted")), with_ca=False)

    def s_ca_leaf(self) -> Scenario:
        return _serve_and_probe(ServerConfig(self.leaf_files("caleaf", is_ca=True)))

    def s_rsa1024(self) -> Scenario:
        files = self.leaf_files("rsa1024", key=rsa_key(1024))
        return _serve_and_probe(ServerConfig(files, ciphers="ECDHE+AESGCM:@SECLEVEL=0"))

    def s_sha1(self) -> Scenario:
        files = openssl_sha1_cert(self.dir)
        return _serve_and_probe(ServerConfig(files, ciphers="ECDHE+AESGCM:@SECLEVEL=0"))

    def s_misordered(self) -> Scenario:
        leaf = issue(issuer=self.intermediate)
        files = write(self.dir, "misordered", [leaf, self.root, self.intermediate], ca=self.root)
        return _serve_and_probe(ServerConfig(files, maximum=V.TLSv1_2))

    def s_must_staple(self) -> Scenario:
        return _serve_and_probe(ServerConfig(self.leaf_files("staple", must_staple=True)))

    def s_long_lived(self) -> Scenario:
        files = self.leaf_files("longlived", not_after=NOW + dt.timedelta(days=500))
        return _serve_and_probe(ServerConfig(files))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    yield World(tmp_path_factory.mktemp("tls-world"))


# -- judging ------------------------------------------------------------------------------


class Judge:
    """Runs one control through a real ScanContext whose TLS facts are a scenario's.

    Contexts are kept per (facts, options) on one event loop for the module: building a
    context loads the system CA store (~0.1 s) while judging takes microseconds.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        # the facts are kept alive next to their context, so an id() is never reused
        self.contexts: dict[tuple[int, bool, str | None], tuple[TLSFacts, ScanContext]] = {}

    def context(self, facts: TLSFacts, insecure: bool, ca: str | None) -> ScanContext:
        key = (id(facts), insecure, ca)
        if key not in self.contexts:
            host = f"[{facts.host}]" if ":" in facts.host else facts.host
            options = ScanOptions(insecure=insecure, ca_file=ca)

            async def provided(endpoint: TLSEndpoint) -> TLSFacts:
                return facts  # the facts this scan would have gathered

            async def build() -> ScanContext:
                return ScanContext(f"https://{host}:{facts.port}/", options, tls=provided)

            self.contexts[key] = (facts, self.loop.run_until_complete(build()))
        return self.contexts[key][1]

    def __call__(
        self,
        check_id: str,
        scenario: Scenario,
        *,
        insecure: bool = False,
        ca_file: str | bool | None = True,
        facts: TLSFacts | None = None,
    ) -> Result:
        facts = facts or scenario.facts
        ca = scenario.ca_file if ca_file is True else (ca_file or None)
        ctx = self.context(facts, insecure, ca if isinstance(ca, str) else None)
        return self.loop.run_until_complete(REGISTRY.get(check_id).probe(ctx))

    def close(self) -> None:
        for _facts, ctx in self.contexts.values():
            self.loop.run_until_complete(ctx.aclose())
        self.loop.close()


@pytest.fixture(scope="module")
def judge() -> Iterator[Judge]:
    judging = Judge()
    yield judging
    judging.close()


def publicly_trusted(facts: TLSFacts) -> TLSFacts:
    """The same facts as if a public CA had issued the chain: a test cannot get a public CA
    to sign, so only the trust verdict is replaced (all else comes from the real probe)."""
    return dataclasses.replace(facts, trust=TrustResult(True, "", ("system",)))


# (control, scenario, expected status, extra judge options)
CASES: list[tuple[str, str, str, dict[str, object]]] = [
    ("tls.protocol-sslv2", "fake-sslv2", "fail", {}),
    ("tls.protocol-sslv2", "modern", "pass", {}),
    ("tls.protocol-sslv3", "fake-sslv3", "fail", {}),
    ("tls.protocol-sslv3", "modern", "pass", {}),
    ("tls.protocol-tls10", "old-protocols", "fail", {}),
    ("tls.protocol-tls10", "modern", "pass", {}),
    ("tls.protocol-tls11", "old-protocols", "fail", {}),
    ("tls.protocol-tls11", "modern", "pass", {}),
    ("tls.protocol-current", "fake-sslv3", "fail", {}),
    ("tls.protocol-current", "modern", "pass", {}),
    ("tls.protocol-current", "tls13-only", "pass", {}),
    ("tls.protocol-tls13", "weak12", "fail", {}),
    ("tls.protocol-tls13", "modern", "pass", {}),
    ("tls.cipher-null", "weak12", "fail", {}),
    ("tls.cipher-null", "modern", "pass", {}),
    ("tls.cipher-anonymous", "weak12", "fail", {}),
    ("tls.cipher-anonymous", "modern", "pass", {}),
    ("tls.cipher-low-strength", "fake-legacy", "fail", {}),
    ("tls.cipher-low-strength", "weak12", "pass", {}),
    ("tls.cipher-rc4", "fake-legacy", "fail", {}),
    ("tls.cipher-rc4", "weak12", "pass", {}),
    ("tls.cipher-3des", "fake-legacy", "fail", {}),
    ("tls.cipher-3des", "weak12", "pass", {}),
    ("tls.cipher-cbc", "weak12", "fail", {}),
    ("tls.cipher-cbc", "rsa-kex-only", "fail", {}),
    ("tls.cipher-cbc", "modern", "pass", {}),
    ("tls.cipher-static-kex", "weak12", "fail", {}),
    ("tls.cipher-static-kex", "modern", "pass", {}),
    ("tls.cipher-static-kex", "dhe2048", "pass", {}),
    ("tls.forward-secrecy", "rsa-kex-only", "fail", {}),
    ("tls.forward-secrecy", "fake-legacy", "fail", {}),
    ("tls.forward-secrecy", "modern", "pass", {}),
    ("tls.cipher-aead", "rsa-kex-only", "fail", {}),
    ("tls.cipher-aead", "modern", "pass", {}),
    ("tls.cipher-order", "modern", "pass", {}),
    ("tls.cipher-order", "client-order", "pass", {}),
    ("tls.dh-params", "weak12", "fail", {}),
    ("tls.dh-params", "dhe2048", "pass", {}),
    ("tls.dh-params", "modern", "pass", {}),
    ("tls.ecdh-curves", "weak12", "fail", {}),
    ("tls.ecdh-curves", "modern", "pass", {}),
    ("tls.ecdh-curves-profile", "weak12", "fail", {}),
    ("tls.ecdh-curves-profile", "modern", "fail", {}),  # OpenSSL defaults add X448, P-521
    ("tls.ecdh-curves-profile", "p256-only", "pass", {}),
    ("tls.compression", "fake-legacy", "fail", {}),
    ("tls.compression", "modern", "pass", {}),
    ("tls.secure-renegotiation", "fake-legacy", "fail", {}),
    ("tls.secure-renegotiation", "modern", "pass", {}),
    ("tls.secure-renegotiation", "tls13-only", "pass", {}),
    ("tls.extended-master-secret", "weak12", "fail", {}),
    ("tls.extended-master-secret", "modern", "pass", {}),
    ("tls.fallback-scsv", "fake-legacy", "fail", {}),
    ("tls.fallback-scsv", "modern", "pass", {}),
    ("tls.fallback-scsv", "tls13-only", "skip", {}),
    ("tls.cert-expired", "expired", "fail", {}),
    ("tls.cert-expired", "modern", "pass", {}),
    ("tls.cert-expiring", "expiring", "fail", {}),
    ("tls.cert-expiring", "modern", "pass", {}),
    ("tls.cert-expiring", "expired", "skip", {}),
    ("tls.cert-hostname", "wrong-host", "fail", {}),
    ("tls.cert-hostname", "ip-target", "fail", {}),
    ("tls.cert-hostname", "modern", "pass", {}),
    ("tls.cert-hostname", "ip-san", "pass", {}),
    ("tls.cert-trust", "self-signed", "fail", {}),
    ("tls.cert-trust", "untrusted-chain", "fail", {}),
    ("tls.cert-trust", "self-signed", "warn", {"insecure": True}),
    ("tls.cert-trust", "modern", "pass", {}),
    ("tls.cert-trust", "self-signed-pinned", "pass", {}),
    ("tls.cert-trust", "expired", "pass", {}),  # dates are tls.cert-expired's finding
    # a pinned self-signed leaf without authorityKeyIdentifier: OpenSSL trusts it, sslyze's
    # verifier (cryptography) refuses it
    ("tls.cert-strict-chain", "self-signed-pinned", "fail", {}),
    ("tls.cert-strict-chain", "modern", "pass", {}),
    ("tls.cert-strict-chain", "self-signed", "skip", {}),
    ("tls.cert-ca-leaf", "ca-leaf", "fail", {}),
    ("tls.cert-ca-leaf", "modern", "pass", {}),
    ("tls.cert-key-size", "rsa1024", "fail", {}),
    ("tls.cert-key-size", "modern", "pass", {}),
    ("tls.cert-signature", "sha1", "fail", {}),
    ("tls.cert-signature", "modern", "pass", {}),
    ("tls.cert-chain-order", "misordered", "fail", {}),
    ("tls.cert-chain-order", "modern", "pass", {}),
    ("tls.cert-chain-order", "tls13-only", "skip", {}),
    ("tls.ocsp-must-staple", "must-staple", "fail", {}),
    ("tls.ocsp-must-staple", "modern", "pass", {}),
    ("tls.cert-lifespan", "modern", "skip", {}),  # private CA (--ca-file): rule is for public CAs
]


@pytest.mark.parametrize(
    ("check_id", "scenario", "expected", "options"),
    CASES,
    ids=[f"{c}-{s}-{e}" + ("-insecure" if o else "") for c, s, e, o in CASES],
)
def test_control(
    world: World,
    judge: Judge,
    check_id: str,
    scenario: str,
    expected: str,
    options: dict[str, Any],
) -> None:
    result = judge(check_id, world.get(scenario), **options)
    assert result.status == expected, f"{check_id} on {scenario}: {result}"
    if expected in ("fail", "warn"):
        assert result.reason and result.evidence
    if expected == "skip":
        assert result.reason  # a skip always says why


def test_every_control_has_a_failing_and_a_passing_case() -> None:
    """The cipher-order control is informational (Mozilla: no server order needed) and
    never fails; its two states are both covered as passes."""
    statuses: dict[str, set[str]] = {c: set() for c in TLS_CONTROLS}
    for check_id, _scenario, expected, _options in CASES:
        statuses[check_id].add(expected)
    statuses["tls.cert-lifespan"] |= {"fail", "pass"}  # covered by test_lifespan below
    informational = {"tls.cipher-order"}
    missing = {
        c: s
        for c, s in statuses.items()
        if "pass" not in s or ("fail" not in s and c not in informational)
    }
    assert not missing
    assert len(TLS_CONTROLS) >= 25


def test_lifespan_judged_for_publicly_trusted_chains(world: World, judge: Judge) -> None:
    long_lived = world.get("long-lived")
    assert judge("tls.cert-lifespan", long_lived).status == "skip"  # private: not judged
    public = publicly_trusted(long_lived.facts)
    failed = judge("tls.cert-lifespan", long_lived, facts=public, ca_file=None)
    assert failed.status == "fail"
    assert "lifetime of 501 days" in failed.reason
    passed = judge(
        "tls.cert-lifespan",
        world.get("modern"),
        facts=publicly_trusted(world.get("modern").facts),
        ca_file=None,
    )
    assert passed.status == "pass"


def test_cipher_order_reports_which_side_decides(world: World, judge: Judge) -> None:
    assert "server's own order" in judge("tls.cipher-order", world.get("modern")).evidence
    assert "client's order" in judge("tls.cipher-order", world.get("client-order")).evidence


def test_failure_evidence_names_the_offending_suites(world: World, judge: Judge) -> None:
    result = judge("tls.cipher-rc4", world.get("fake-legacy"))
    assert "TLS_RSA_WITH_RC4_128_SHA" in result.evidence
    assert "TLS_RSA_WITH_3DES_EDE_CBC_SHA" not in result.evidence  # accepted, but not RC4
    weak = judge("tls.cipher-low-strength", world.get("fake-legacy"))
    assert "TLS_RSA_EXPORT_WITH_RC4_40_MD5" in weak.evidence
    assert "TLS_RSA_WITH_DES_CBC_SHA" in weak.evidence
    dh = judge("tls.dh-params", world.get("weak12"))
    assert dh.reason == "DH group of 1024 bits (< 2048)"
    curves = judge("tls.ecdh-curves", world.get("weak12"))
    assert curves.reason == "deprecated curves accepted: secp224r1"


def test_strict_chain_names_the_missing_extension(world: World, judge: Judge) -> None:
    result = judge("tls.cert-strict-chain", world.get("self-signed-pinned"))
    assert "2.5.29.35" in result.reason  # authorityKeyIdentifier (RFC 5280 §4.2.1.1)


def test_trust_reasons_come_from_openssl(world: World, judge: Judge) -> None:
    self_signed = judge("tls.cert-trust", world.get("self-signed"))
    assert "self-signed" in self_signed.reason
    chain = judge("tls.cert-trust", world.get("untrusted-chain"))
    assert "unable to get local issuer certificate" in chain.reason
    warned = judge("tls.cert-trust", world.get("self-signed"), insecure=True)
    assert warned.reason.endswith("(accepted with --insecure)")


def test_plain_http_target_skips_every_control() -> None:
    async def run() -> list[Result]:
        async with ScanContext("http://127.0.0.1:9/", tls=collect) as ctx:
            return [await REGISTRY.get(c).probe(ctx) for c in TLS_CONTROLS]

    results = asyncio.run(run())
    assert {r.status for r in results} == {"skip"}


def test_unreachable_https_target_is_an_error_not_a_pass() -> None:
    from tests.support import free_port

    port = free_port()

    async def run() -> list[Result]:
        async with ScanContext(
            f"https://127.0.0.1:{port}/", ScanOptions(timeout=2), tls=collect
        ) as ctx:
            return [await REGISTRY.get(c).probe(ctx) for c in TLS_CONTROLS]

    results = asyncio.run(run())
    assert {r.status for r in results} == {"error"}
    assert all("could not connect" in r.reason for r in results)


def test_the_context_asks_its_tls_provider_once_for_the_target_endpoint() -> None:
    """Concurrent controls share one call of the injected provider, which is given where the
    target is; facts of another type than the controls expect, or no provider, are errors."""
    calls: list[TLSEndpoint] = []
    facts = plain_http_facts("api.test", 8443)

    async def provider(endpoint: TLSEndpoint) -> TLSFacts:
        calls.append(endpoint)
        await asyncio.sleep(0)  # let the other callers arrive while this one is running
        return facts

    async def run() -> list[TLSFacts]:
        options = ScanOptions(ca_file=None, timeout=4)
        async with ScanContext("https://api.test:8443/v1", options, tls=provider) as ctx:
            got = await asyncio.gather(*(ctx.tls_facts(TLSFacts) for _ in range(5)))
            with pytest.raises(TypeError, match="returned TLSFacts"):
                await ctx.tls_facts(int)
        async with ScanContext("https://api.test/") as bare:
            with pytest.raises(RuntimeError, match="without a TLS-facts provider"):
                await bare.tls_facts(TLSFacts)
        return got

    got = asyncio.run(run())
    assert all(g is facts for g in got)
    assert calls == [TLSEndpoint(host="api.test", port=8443, https=True, ca_file=None, timeout=4)]


def test_controls_gather_facts_once_through_the_context(world: World) -> None:
    """End to end without pre-seeded facts: the context's provider probes the live server
    once, and every control judges that one probe."""
    config = ServerConfig(world.leaf_files("e2e"))

    async def run() -> tuple[list[Result], TLSFacts]:
        with tls_server(config) as port:
            options = ScanOptions(ca_file=str(config.files.ca))
            async with ScanContext(f"https://localhost:{port}/", options, tls=collect) as ctx:
                results = list(
                    await asyncio.gather(*(REGISTRY.get(c).probe(ctx) for c in TLS_CONTROLS))
                )
                return results, await ctx.tls_facts(TLSFacts)

    results, facts = asyncio.run(run())
    statuses = {c: r.status for c, r in zip(TLS_CONTROLS, results, strict=True)}
    expected = {c: "pass" for c in TLS_CONTROLS}
    expected["tls.cert-lifespan"] = "skip"  # private CA
    expected["tls.ecdh-curves-profile"] = "fail"  # info only: OpenSSL's default X448, P-521
    assert statuses == expected
    assert facts.handshakes > 0
    assert facts.negotiated.startswith("TLSv1.3")
