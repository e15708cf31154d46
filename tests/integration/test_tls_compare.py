"""bastion's TLS findings agree with sslyze's (and testssl.sh's) on the same local nginx.

nginx (Debian's package) runs as our own non-daemon process with a generated configuration in
tmp_path, on a free loopback port. Two deployments:

* **weak**: TLS 1.0-1.3 (1.0/1.1 only where the local OpenSSL still allows them), CBC suites,
  a static-RSA (non-forward-secret) suite, and a 1024-bit, expired, self-signed certificate;
* **hardened**: TLS 1.2/1.3, ECDHE+AEAD only, Mozilla's curves, a 2048-bit certificate from
  a private CA that both tools are given.

sslyze (AGPL-3.0) is a test dependency only: bastion never imports it at run time. testssl.sh
takes 50-90 s, so its comparison runs only under CI=true or BASTION_SLOW=1.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import bastion.scanner.checks.tls  # noqa: F401  (registers the controls)
from bastion.scanner.check import Result
from bastion.scanner.context import ScanContext, ScanOptions
from bastion.scanner.registry import REGISTRY
from bastion.scanner.tls import TLSFacts, collect
from bastion.scanner.tls.suites import group_name
from tests.scanner.tls.tlsfixtures import (
    NOW,
    V,
    issue,
    local_openssl_can,
    make_ca,
    rsa_key,
    write,
)
from tests.support import IN_CI, free_port, require_program, start_nginx
from tests.support_tls import MOZILLA_TO_BASTION, write_nginx_tls_conf

pytestmark = [
    pytest.mark.integration,
    # sslyze parses its bundled trust stores, one of which holds a root with a negative serial
    pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning"),
]

WEAK_CIPHERS = ":".join(
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES256-SHA384",  # CBC
        "ECDHE-RSA-AES128-SHA",  # CBC
        "AES128-SHA",  # static RSA key exchange, CBC
        "AES256-GCM-SHA384",  # static RSA key exchange
        "@SECLEVEL=0",  # lets OpenSSL 3 load the 1024-bit key and speak TLS 1.0/1.1
    )
)
STATIC_KEX = ("TLS_RSA_", "TLS_DH_", "TLS_ECDH_")
SLOW = IN_CI or os.environ.get("BASTION_SLOW", "") == "1"
PROTOCOL_FIELDS = {
    "SSLv2": "ssl_2_0_cipher_suites",
    "SSLv3": "ssl_3_0_cipher_suites",
    "TLSv1.0": "tls_1_0_cipher_suites",
    "TLSv1.1": "tls_1_1_cipher_suites",
    "TLSv1.2": "tls_1_2_cipher_suites",
    "TLSv1.3": "tls_1_3_cipher_suites",
}


@dataclass
class Deployment:
    name: str
    port: int
    ca_file: Path | None
    old_protocols: bool


@pytest.fixture(scope="module", params=["weak", "hardened"])
def deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp(f"nginx-{request.param}")
    port = free_port()
    old = local_openssl_can(V.TLSv1) is None and local_openssl_can(V.TLSv1_1) is None
    if request.param == "weak":
        leaf = issue(
            key=rsa_key(1024),
            not_before=NOW - dt.timedelta(days=60),
            not_after=NOW - dt.timedelta(days=2),
        )
        files = write(tmp, "weak", [leaf])
        ca_file = None
        protocols = "TLSv1 TLSv1.1 TLSv1.2 TLSv1.3" if old else "TLSv1.2 TLSv1.3"
        tls = f"""        ssl_protocols {protocols};
        ssl_ciphers "{WEAK_CIPHERS}";
        ssl_prefer_server_ciphers on;"""
    else:
        root = make_ca("compare root", 7)
        files = write(tmp, "hardened", [issue(issuer=root)], ca=root)
        ca_file = files.ca
        old = False
        tls = """        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers "ECDHE+AESGCM:ECDHE+CHACHA20";
        ssl_ecdh_curve X25519:prime256v1:secp384r1;
        ssl_prefer_server_ciphers off;"""
    conf = write_nginx_tls_conf(tmp, port, files.cert, files.key, tls)
    process = start_nginx(tmp, port, conf, "the TLS comparison needs a real nginx")
    try:
        yield Deployment(request.param, port, ca_file, old)
    finally:
        process.terminate()
        process.wait(10)


# -- the two sides ----------------------------------------------------------------------


@dataclass
class BastionView:
    facts: TLSFacts
    results: dict[str, Result]


def bastion_scan(deployment: Deployment) -> BastionView:
    """Every TLS control, end to end through a real ScanContext (one probe per scan)."""
    ca = str(deployment.ca_file) if deployment.ca_file else None
    ids = sorted(c.id for c in REGISTRY.all() if c.category == "tls")

    async def run() -> BastionView:
        options = ScanOptions(ca_file=ca)
        async with ScanContext(
            f"https://localhost:{deployment.port}/", options, tls=collect
        ) as ctx:
            results = await asyncio.gather(*(REGISTRY.get(i).probe(ctx) for i in ids))
            return BastionView(await ctx.tls_facts(TLSFacts), dict(zip(ids, results, strict=True)))

    return asyncio.run(run())


def sslyze_scan(deployment: Deployment) -> Any:
    from sslyze import (
        CertificateInfoExtraArgument,
        ScanCommandsExtraArguments,
        Scanner,
        ServerNetworkLocation,
        ServerScanRequest,
        ServerScanStatusEnum,
    )

    extra = ScanCommandsExtraArguments(
        certificate_info=CertificateInfoExtraArgument(custom_ca_file=deployment.ca_file)
        if deployment.ca_file
        else None
    )
    request = ServerScanRequest(
        server_location=ServerNetworkLocation("localhost", deployment.port, "127.0.0.1"),
        scan_commands_extra_arguments=extra,
    )
    scanner = Scanner()
    scanner.queue_scans([request])
    (result,) = list(scanner.get_results())
    assert result.scan_status == ServerScanStatusEnum.COMPLETED, result.connectivity_error_trace
    return result


@pytest.fixture(scope="module")
def both(deployment: Deployment) -> tuple[Deployment, BastionView, Any]:
    return deployment, bastion_scan(deployment), sslyze_scan(deployment)


def _sslyze_suites(result: Any, protocol: str) -> set[str]:
    attempt = getattr(result.scan_result, PROTOCOL_FIELDS[protocol])
    assert attempt.result is not None, attempt.error_trace
    return {a.cipher_suite.name for a in attempt.result.accepted_cipher_suites}


# -- agreement --------------------------------------------------------------------------


def test_protocols_and_every_accepted_suite_agree(
    both: tuple[Deployment, BastionView, Any],
) -> None:
    deployment, ours, theirs = both
    for protocol in PROTOCOL_FIELDS:
        sslyze_names = _sslyze_suites(theirs, protocol)
        our_names = {a.suite.name for a in ours.facts.suites(protocol)}
        assert our_names == sslyze_names, protocol
        assert (ours.facts.protocol(protocol) is True) == bool(sslyze_names), protocol
    expected_old = {"TLSv1.0", "TLSv1.1"} if deployment.old_protocols else set()
    assert set(ours.facts.offered_protocols()) == {"TLSv1.2", "TLSv1.3"} | expected_old
    assert ours.facts.enumeration_gaps == ()


def test_weak_cipher_verdicts_agree(both: tuple[Deployment, BastionView, Any]) -> None:
    """bastion's cipher controls against verdicts computed from sslyze's accepted suites."""
    deployment, ours, theirs = both
    names = set().union(*(_sslyze_suites(theirs, p) for p in PROTOCOL_FIELDS))
    legacy = names - _sslyze_suites(theirs, "TLSv1.3")

    def verdict(bad: bool) -> str:
        return "fail" if bad else "pass"

    expected = {
        "tls.cipher-cbc": verdict(any("_CBC_" in n for n in names)),
        "tls.cipher-static-kex": verdict(any(n.startswith(STATIC_KEX) for n in legacy)),
        "tls.cipher-null": verdict(any("_NULL_" in n for n in names)),
        "tls.cipher-anonymous": verdict(any("_anon_" in n for n in names)),
        "tls.cipher-rc4": verdict(any("_RC4_" in n for n in names)),
        "tls.cipher-3des": verdict(any("3DES" in n for n in names)),
        "tls.forward-secrecy": verdict(not any("DHE_" in n for n in legacy) and legacy == names),
        "tls.cipher-aead": verdict(not any(("GCM" in n or "CHACHA20" in n) for n in names)),
        "tls.protocol-tls10": verdict(bool(_sslyze_suites(theirs, "TLSv1.0"))),
        "tls.protocol-tls11": verdict(bool(_sslyze_suites(theirs, "TLSv1.1"))),
        "tls.protocol-sslv3": verdict(bool(_sslyze_suites(theirs, "SSLv3"))),
        "tls.protocol-sslv2": verdict(bool(_sslyze_suites(theirs, "SSLv2"))),
        "tls.protocol-tls13": verdict(not _sslyze_suites(theirs, "TLSv1.3")),
    }
    assert {k: ours.results[k].status for k in expected} == expected
    if deployment.name == "weak":  # the deliberate weaknesses are really there
        assert expected["tls.cipher-cbc"] == expected["tls.cipher-static-kex"] == "fail"


def test_handshake_features_and_curves_agree(both: tuple[Deployment, BastionView, Any]) -> None:
    _deployment, ours, theirs = both
    scan = theirs.scan_result
    facts = ours.facts
    assert facts.compression is scan.tls_compression.result.supports_compression
    assert (
        facts.secure_renegotiation
        is scan.session_renegotiation.result.supports_secure_renegotiation
    )
    assert facts.fallback_scsv is scan.tls_fallback_scsv.result.supports_fallback_scsv
    assert (
        facts.extended_master_secret
        is scan.tls_extended_master_secret.result.supports_ems_extension
    )
    sslyze_curves = {c.name.lower() for c in scan.elliptic_curves.result.supported_curves}
    assert (
        not isinstance(facts.ecdh_groups, tuple)
        or {group_name(g).lower() for g in facts.ecdh_groups if g < 256} == sslyze_curves
    )


def test_certificate_problems_agree(both: tuple[Deployment, BastionView, Any]) -> None:
    deployment, ours, theirs = both
    (cert_deployment,) = theirs.scan_result.certificate_info.result.certificate_deployments
    leaf = cert_deployment.received_certificate_chain[0]
    now = dt.datetime.now(dt.UTC)
    assert ours.facts.leaf is not None
    assert ours.facts.leaf.key_bits == leaf.public_key().key_size
    assert ours.facts.leaf.signature_hash == leaf.signature_hash_algorithm.name
    expired = leaf.not_valid_after_utc < now
    assert ours.results["tls.cert-expired"].status == ("fail" if expired else "pass")
    assert ours.results["tls.cert-key-size"].status == (
        "fail" if leaf.public_key().key_size < 2048 else "pass"
    )
    validated = any(r.was_validation_successful for r in cert_deployment.path_validation_results)
    # sslyze folds dates and the host name into path validation; bastion judges them apart
    bastion_valid = all(
        ours.results[c].status == "pass"
        for c in (
            "tls.cert-trust",
            "tls.cert-expired",
            "tls.cert-hostname",
            "tls.cert-strict-chain",
        )
    )
    assert bastion_valid == validated
    assert ours.results["tls.cert-chain-order"].status == (
        "pass" if cert_deployment.received_chain_has_valid_order else "fail"
    )
    if deployment.name == "weak":
        assert ours.results["tls.cert-trust"].status == "fail"
        assert "self-signed" in ours.results["tls.cert-trust"].reason


def test_every_problem_sslyze_finds_is_a_bastion_finding(
    both: tuple[Deployment, BastionView, Any],
) -> None:
    from sslyze.mozilla_tls_profile.tls_config_checker import (
        MozillaTlsConfiguration,
        ServerNotCompliantWithTlsConfiguration,
        TlsConfigurationEnum,
        check_server_against_tls_configuration,
    )

    deployment, ours, theirs = both
    config = MozillaTlsConfiguration.get(TlsConfigurationEnum.MOZILLA_INTERMEDIATE)
    try:
        check_server_against_tls_configuration(theirs, config)
        issues: dict[str, str] = {}
    except ServerNotCompliantWithTlsConfiguration as exc:
        issues = exc.issues
    missed = {
        key: message
        for key, message in issues.items()
        if not any(ours.results[c].status == "fail" for c in MOZILLA_TO_BASTION.get(key, ()))
    }
    assert not missed
    if deployment.name == "weak":
        assert {"tls_versions", "ciphers", "rsa_key_size", "certificate_path_validation"} <= (
            set(issues) if deployment.old_protocols else set(issues) | {"tls_versions"}
        )
    else:
        assert issues == {}  # the hardened nginx is Mozilla-intermediate compliant
        failing = {c: r.reason for c, r in ours.results.items() if r.status == "fail"}
        assert failing == {}


# -- testssl.sh (slow) ----------------------------------------------------------------------


@pytest.mark.skipif(not SLOW, reason="testssl.sh takes 50-90 s: set BASTION_SLOW=1 (on under CI)")
@pytest.mark.timeout(600)
def test_testssl_agrees_on_the_weak_deployment(deployment: Deployment, tmp_path: Path) -> None:
    if deployment.name != "weak":
        pytest.skip("one testssl.sh run: the weak deployment")
    testssl = require_program("testssl", "Debian's testssl.sh package")
    out = tmp_path / "testssl.json"
    subprocess.run(
        [testssl, "--quiet", "--warnings", "off", "--color", "0", "--ip", "127.0.0.1",
         "--jsonfile", str(out), "-p", "-s", "-f", "-S", f"https://localhost:{deployment.port}"],
        check=False, capture_output=True, timeout=540,
    )  # fmt: skip
    findings: dict[str, str] = {e["id"]: e["finding"] for e in json.loads(out.read_text())}
    ours = bastion_scan(deployment)

    def offered(key: str) -> bool:
        return findings[key].startswith("offered")

    testssl_names = {"SSLv2": "SSLv2", "SSLv3": "SSLv3", "TLS1": "TLSv1.0", "TLS1_1": "TLSv1.1"}
    testssl_names |= {"TLS1_2": "TLSv1.2", "TLS1_3": "TLSv1.3"}
    for key, protocol in testssl_names.items():
        assert offered(key) == (ours.facts.protocol(protocol) is True), key
    for key, control in (("cipherlist_NULL", "tls.cipher-null"),
                         ("cipherlist_aNULL", "tls.cipher-anonymous"),
                         ("cipherlist_EXPORT", "tls.cipher-low-strength"),
                         ("cipherlist_3DES_IDEA", "tls.cipher-3des"),
                         ("cipherlist_AVERAGE", "tls.cipher-cbc")):  # fmt: skip
        assert offered(key) == (ours.results[control].status == "fail"), key
    assert offered("PFS") == (ours.results["tls.forward-secrecy"].status == "pass")
    leaf = ours.facts.leaf
    assert leaf is not None
    assert findings["cert_keySize"] == f"RSA {leaf.key_bits} bits"
    assert (findings["cert_expirationStatus"] == "expired") == (
        ours.results["tls.cert-expired"].status == "fail"
    )
    assert findings["cert_chain_of_trust"].startswith("failed (self signed)")
    assert "self-signed" in ours.results["tls.cert-trust"].reason
    assert findings["cert_trust"].startswith("Ok via SAN")
    assert ours.results["tls.cert-hostname"].status == "pass"
    curves = {"prime256v1": "secp256r1"}
    testssl_curves = {curves.get(c, c).lower() for c in findings["PFS_ECDHE_curves"].split()}
    assert isinstance(ours.facts.ecdh_groups, tuple)
    assert testssl_curves == {group_name(g).lower() for g in ours.facts.ecdh_groups if g < 256}
