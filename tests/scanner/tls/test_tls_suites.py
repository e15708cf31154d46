"""The cipher-suite table: code points, names and the weakness flags the controls rely on."""

from __future__ import annotations

import subprocess

import pytest

from bastion.scanner.tls.suites import (
    DEPRECATED_GROUPS,
    LEGACY_SUITES,
    SUITES_BY_CODE,
    TLS13_SUITES,
    group_name,
)
from tests.support import require_program


def test_codes_and_names_are_unique() -> None:
    suites = LEGACY_SUITES + TLS13_SUITES
    assert len({s.code for s in suites}) == len(suites)
    assert len({s.name for s in suites}) == len(suites)
    assert len(SUITES_BY_CODE) == len(suites)


def test_table_agrees_with_the_local_openssl_where_both_know_a_suite() -> None:
    """Every code point OpenSSL still implements must carry the same IANA name here."""
    openssl = require_program("openssl", "used to cross-check the IANA code points")
    listing = subprocess.run(
        [openssl, "ciphers", "-V", "-stdname", "ALL:COMPLEMENTOFALL:@SECLEVEL=0"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    known = {}
    for line in listing.splitlines():
        parts = line.split()
        high, low = parts[0].split(",")
        known[int(high, 16) << 8 | int(low, 16)] = parts[2]
    shared = [s for s in LEGACY_SUITES + TLS13_SUITES if s.code in known]
    assert len(shared) > 80
    mismatched = [(hex(s.code), s.name, known[s.code]) for s in shared if known[s.code] != s.name]
    assert not mismatched
    # and the ones OpenSSL 3 dropped are exactly why the probe speaks the wire itself
    dropped = {s.name for s in LEGACY_SUITES if s.code not in known}
    assert {"TLS_RSA_WITH_RC4_128_SHA", "TLS_RSA_WITH_3DES_EDE_CBC_SHA"} <= dropped


@pytest.mark.parametrize(
    ("name", "flags"),
    [
        ("TLS_RSA_WITH_NULL_SHA", {"null_cipher", "static_rsa"}),
        ("TLS_DH_anon_WITH_AES_128_CBC_SHA", {"anonymous", "cbc"}),
        ("TLS_RSA_EXPORT_WITH_RC4_40_MD5", {"export", "rc4", "static_rsa"}),
        ("TLS_RSA_WITH_3DES_EDE_CBC_SHA", {"des", "triple_des", "cbc", "static_rsa"}),
        ("TLS_DHE_RSA_WITH_DES_CBC_SHA", {"des", "cbc", "forward_secret"}),
        ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", {"cbc", "forward_secret"}),
        ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", {"aead", "forward_secret", "tls12_only"}),
        ("TLS_ECDH_RSA_WITH_AES_128_GCM_SHA256", {"aead", "tls12_only"}),  # static ECDH
        ("TLS_RSA_WITH_AES_128_CCM_8", {"aead", "static_rsa", "tls12_only"}),
        ("TLS_AES_128_GCM_SHA256", {"aead", "forward_secret", "tls12_only"}),
    ],
)
def test_flags(name: str, flags: set[str]) -> None:
    suite = next(s for s in LEGACY_SUITES + TLS13_SUITES if s.name == name)
    names = (
        "null_cipher", "anonymous", "export", "rc4", "des", "triple_des", "cbc", "aead",
        "forward_secret", "static_rsa", "tls12_only",
    )  # fmt: skip
    assert {n for n in names if getattr(suite, n)} == flags


def test_strengths() -> None:
    bits = {s.name: s.bits for s in LEGACY_SUITES + TLS13_SUITES}
    assert bits["TLS_RSA_WITH_3DES_EDE_CBC_SHA"] == 112
    assert bits["TLS_RSA_WITH_DES_CBC_SHA"] == 56
    assert bits["TLS_RSA_EXPORT_WITH_DES40_CBC_SHA"] == 40
    assert bits["TLS_RSA_WITH_NULL_SHA256"] == 0
    assert bits["TLS_CHACHA20_POLY1305_SHA256"] == 256
    assert bits["TLS_RSA_WITH_SEED_CBC_SHA"] == 128


def test_deprecated_groups_follow_rfc8422() -> None:
    assert frozenset(range(1, 23)) == DEPRECATED_GROUPS
    assert group_name(29) == "x25519" and group_name(256) == "ffdhe2048"
    assert group_name(0x9999) == "0x9999"
