"""Cipher suites and key-exchange groups the TLS probe offers, with what makes each weak.

The table is keyed by IANA code point (https://www.iana.org/assignments/tls-parameters) and
names follow the IANA registry, because the probe speaks the wire format itself: it can offer
a suite the local OpenSSL no longer implements (RC4, DES, 3DES, EXPORT, SEED, IDEA, static DH)
and still learn from the ServerHello whether the server would use it. Properties are derived
from the IANA name (``TLS_<kex>_<auth>_WITH_<cipher>_<mac>``) so a row is one line of data.

PSK, SRP and KRB5 suites are left out: a server only selects them with a pre-shared secret
or an account the scanner does not have, so offering them would only lengthen every hello.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "DEPRECATED_GROUPS",
    "GROUPS",
    "LEGACY_SUITES",
    "SUITES_BY_CODE",
    "TLS13_SUITES",
    "CipherSuite",
    "Group",
    "group_name",
]


@dataclass(frozen=True, slots=True)
class CipherSuite:
    """One cipher suite and the properties the controls judge."""

    code: int
    name: str
    kex: str  # RSA, DH, DHE, ECDH, ECDHE, or "" for TLS 1.3 (negotiated separately)
    auth: str  # RSA, DSS, ECDSA, anon, or "" for TLS 1.3
    cipher: str  # e.g. AES_128_GCM, 3DES_EDE_CBC, RC4_128, NULL
    mac: str  # SHA, SHA256, SHA384, MD5, or "" for AEAD suites without a PRF suffix
    bits: int  # effective symmetric strength (3DES counts as 112, NULL as 0)
    export: bool
    tls13: bool

    @property
    def aead(self) -> bool:
        """GCM, CCM and ChaCha20-Poly1305: no MAC-then-encrypt (Lucky13, POODLE-style oracles)."""
        return any(tag in self.cipher for tag in ("GCM", "CCM", "CHACHA20_POLY1305"))

    @property
    def cbc(self) -> bool:
        return "CBC" in self.cipher

    @property
    def null_cipher(self) -> bool:
        return self.cipher == "NULL"

    @property
    def anonymous(self) -> bool:
        """No server authentication at all: any active attacker can impersonate the server."""
        return self.auth == "anon"

    @property
    def rc4(self) -> bool:
        return self.cipher.startswith("RC4")

    @property
    def des(self) -> bool:
        """Single DES, DES40 and 3DES (SWEET32: 64-bit blocks)."""
        return "DES" in self.cipher

    @property
    def triple_des(self) -> bool:
        return self.cipher.startswith("3DES")

    @property
    def rc2(self) -> bool:
        return self.cipher.startswith("RC2")

    @property
    def forward_secret(self) -> bool:
        """Ephemeral (EC)DH key exchange; every TLS 1.3 suite is forward secret (RFC 8446 §2)."""
        return self.tls13 or self.kex in ("DHE", "ECDHE")

    @property
    def static_rsa(self) -> bool:
        """RSA key transport: no forward secrecy, and the ROBOT/Bleichenbacher attack surface."""
        return self.kex == "RSA"

    @property
    def tls12_only(self) -> bool:
        """AEAD and SHA-2 PRF suites exist only from TLS 1.2 on (RFC 5246 §1.2)."""
        return self.aead or self.mac in ("SHA256", "SHA384")


_LEGACY_NAME = re.compile(
    r"^TLS_(?P<kex>RSA|DH|DHE|ECDH|ECDHE)(?:_(?P<auth>RSA|DSS|ECDSA|anon))?"
    r"(?P<export>_EXPORT)?_WITH_(?P<rest>.+)$"
)
_MACS = ("SHA384", "SHA256", "SHA", "MD5")


def _bits(cipher: str, export: bool) -> int:
    if cipher == "NULL":
        return 0
    if export or "_40" in cipher or cipher.startswith("DES40"):
        return 40
    if cipher.startswith("3DES"):
        return 112
    if cipher.startswith("DES"):
        return 56
    if cipher.startswith(("SEED", "IDEA")):
        return 128
    if cipher.startswith("CHACHA20"):
        return 256
    match = re.search(r"_(\d{3})", cipher)
    return int(match.group(1)) if match else 0


def _parse(code: int, name: str) -> CipherSuite:
    if code >> 8 == 0x13:  # TLS 1.3: TLS_<AEAD>_<HASH>
        cipher = name[4:].rpartition("_")[0]
        return CipherSuite(code, name, "", "", cipher, "", _bits(cipher, False), False, True)
    match = _LEGACY_NAME.match(name)
    if match is None:
        raise ValueError(f"unparseable cipher suite name {name!r}")
    kex = match["kex"]
    auth = match["auth"] or "RSA"  # TLS_RSA_WITH_* authenticates and exchanges with RSA
    rest = match["rest"]
    mac = ""
    for candidate in _MACS:
        if rest.endswith("_" + candidate):
            mac = candidate
            rest = rest[: -len(candidate) - 1]
            break
    export = bool(match["export"])
    return CipherSuite(code, name, kex, auth, rest, mac, _bits(rest, export), export, False)


# (code, IANA name). Order is the preference the probe states in its hellos: strongest first,
# so a server that follows the client's order answers with a strong suite.
_TABLE: tuple[tuple[int, str], ...] = (
    (0xC02C, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"),
    (0xC030, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"),
    (0xCCA9, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
    (0xCCA8, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
    (0xC02B, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
    (0xC02F, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
    (0xC0AD, "TLS_ECDHE_ECDSA_WITH_AES_256_CCM"),
    (0xC0AC, "TLS_ECDHE_ECDSA_WITH_AES_128_CCM"),
    (0xC0AF, "TLS_ECDHE_ECDSA_WITH_AES_256_CCM_8"),
    (0xC0AE, "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8"),
    (0xC05D, "TLS_ECDHE_ECDSA_WITH_ARIA_256_GCM_SHA384"),
    (0xC061, "TLS_ECDHE_RSA_WITH_ARIA_256_GCM_SHA384"),
    (0xC05C, "TLS_ECDHE_ECDSA_WITH_ARIA_128_GCM_SHA256"),
    (0xC060, "TLS_ECDHE_RSA_WITH_ARIA_128_GCM_SHA256"),
    (0x009F, "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384"),
    (0x00A3, "TLS_DHE_DSS_WITH_AES_256_GCM_SHA384"),
    (0xCCAA, "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
    (0x009E, "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"),
    (0x00A2, "TLS_DHE_DSS_WITH_AES_128_GCM_SHA256"),
    (0xC09F, "TLS_DHE_RSA_WITH_AES_256_CCM"),
    (0xC09E, "TLS_DHE_RSA_WITH_AES_128_CCM"),
    (0xC0A3, "TLS_DHE_RSA_WITH_AES_256_CCM_8"),
    (0xC0A2, "TLS_DHE_RSA_WITH_AES_128_CCM_8"),
    (0xC053, "TLS_DHE_RSA_WITH_ARIA_256_GCM_SHA384"),
    (0xC052, "TLS_DHE_RSA_WITH_ARIA_128_GCM_SHA256"),
    (0xC057, "TLS_DHE_DSS_WITH_ARIA_256_GCM_SHA384"),
    (0xC056, "TLS_DHE_DSS_WITH_ARIA_128_GCM_SHA256"),
    # ECDHE / DHE with CBC
    (0xC024, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384"),
    (0xC028, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384"),
    (0xC023, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256"),
    (0xC027, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256"),
    (0xC073, "TLS_ECDHE_ECDSA_WITH_CAMELLIA_256_CBC_SHA384"),
    (0xC077, "TLS_ECDHE_RSA_WITH_CAMELLIA_256_CBC_SHA384"),
    (0xC072, "TLS_ECDHE_ECDSA_WITH_CAMELLIA_128_CBC_SHA256"),
    (0xC076, "TLS_ECDHE_RSA_WITH_CAMELLIA_128_CBC_SHA256"),
    (0xC00A, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA"),
    (0xC014, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"),
    (0xC009, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"),
    (0xC013, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"),
    (0x006B, "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256"),
    (0x006A, "TLS_DHE_DSS_WITH_AES_256_CBC_SHA256"),
    (0x0067, "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256"),
    (0x0040, "TLS_DHE_DSS_WITH_AES_128_CBC_SHA256"),
    (0x00C4, "TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA256"),
    (0x00C3, "TLS_DHE_DSS_WITH_CAMELLIA_256_CBC_SHA256"),
    (0x00BE, "TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA256"),
    (0x00BD, "TLS_DHE_DSS_WITH_CAMELLIA_128_CBC_SHA256"),
    (0x0039, "TLS_DHE_RSA_WITH_AES_256_CBC_SHA"),
    (0x0038, "TLS_DHE_DSS_WITH_AES_256_CBC_SHA"),
    (0x0033, "TLS_DHE_RSA_WITH_AES_128_CBC_SHA"),
    (0x0032, "TLS_DHE_DSS_WITH_AES_128_CBC_SHA"),
    (0x0088, "TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA"),
    (0x0087, "TLS_DHE_DSS_WITH_CAMELLIA_256_CBC_SHA"),
    (0x0045, "TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA"),
    (0x0044, "TLS_DHE_DSS_WITH_CAMELLIA_128_CBC_SHA"),
    (0x009A, "TLS_DHE_RSA_WITH_SEED_CBC_SHA"),
    (0x0099, "TLS_DHE_DSS_WITH_SEED_CBC_SHA"),
    # static RSA key transport (no forward secrecy)
    (0x009D, "TLS_RSA_WITH_AES_256_GCM_SHA384"),
    (0x009C, "TLS_RSA_WITH_AES_128_GCM_SHA256"),
    (0xC09D, "TLS_RSA_WITH_AES_256_CCM"),
    (0xC09C, "TLS_RSA_WITH_AES_128_CCM"),
    (0xC0A1, "TLS_RSA_WITH_AES_256_CCM_8"),
    (0xC0A0, "TLS_RSA_WITH_AES_128_CCM_8"),
    (0xC051, "TLS_RSA_WITH_ARIA_256_GCM_SHA384"),
    (0xC050, "TLS_RSA_WITH_ARIA_128_GCM_SHA256"),
    (0x003D, "TLS_RSA_WITH_AES_256_CBC_SHA256"),
    (0x003C, "TLS_RSA_WITH_AES_128_CBC_SHA256"),
    (0x00C0, "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA256"),
    (0x00BA, "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA256"),
    (0x0035, "TLS_RSA_WITH_AES_256_CBC_SHA"),
    (0x002F, "TLS_RSA_WITH_AES_128_CBC_SHA"),
    (0x0084, "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA"),
    (0x0041, "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA"),
    (0x0096, "TLS_RSA_WITH_SEED_CBC_SHA"),
    (0x0007, "TLS_RSA_WITH_IDEA_CBC_SHA"),
    # static (EC)DH: the server's certificate key is the DH key, no forward secrecy
    (0xC032, "TLS_ECDH_RSA_WITH_AES_256_GCM_SHA384"),
    (0xC02E, "TLS_ECDH_ECDSA_WITH_AES_256_GCM_SHA384"),
    (0xC031, "TLS_ECDH_RSA_WITH_AES_128_GCM_SHA256"),
    (0xC02D, "TLS_ECDH_ECDSA_WITH_AES_128_GCM_SHA256"),
    (0xC02A, "TLS_ECDH_RSA_WITH_AES_256_CBC_SHA384"),
    (0xC026, "TLS_ECDH_ECDSA_WITH_AES_256_CBC_SHA384"),
    (0xC029, "TLS_ECDH_RSA_WITH_AES_128_CBC_SHA256"),
    (0xC025, "TLS_ECDH_ECDSA_WITH_AES_128_CBC_SHA256"),
    (0xC00F, "TLS_ECDH_RSA_WITH_AES_256_CBC_SHA"),
    (0xC005, "TLS_ECDH_ECDSA_WITH_AES_256_CBC_SHA"),
    (0xC00E, "TLS_ECDH_RSA_WITH_AES_128_CBC_SHA"),
    (0xC004, "TLS_ECDH_ECDSA_WITH_AES_128_CBC_SHA"),
    (0x00A1, "TLS_DH_RSA_WITH_AES_256_GCM_SHA384"),
    (0x00A5, "TLS_DH_DSS_WITH_AES_256_GCM_SHA384"),
    (0x00A0, "TLS_DH_RSA_WITH_AES_128_GCM_SHA256"),
    (0x00A4, "TLS_DH_DSS_WITH_AES_128_GCM_SHA256"),
    (0x0069, "TLS_DH_RSA_WITH_AES_256_CBC_SHA256"),
    (0x0068, "TLS_DH_DSS_WITH_AES_256_CBC_SHA256"),
    (0x003F, "TLS_DH_RSA_WITH_AES_128_CBC_SHA256"),
    (0x003E, "TLS_DH_DSS_WITH_AES_128_CBC_SHA256"),
    (0x0037, "TLS_DH_RSA_WITH_AES_256_CBC_SHA"),
    (0x0036, "TLS_DH_DSS_WITH_AES_256_CBC_SHA"),
    (0x0031, "TLS_DH_RSA_WITH_AES_128_CBC_SHA"),
    (0x0030, "TLS_DH_DSS_WITH_AES_128_CBC_SHA"),
    (0x0086, "TLS_DH_RSA_WITH_CAMELLIA_256_CBC_SHA"),
    (0x0085, "TLS_DH_DSS_WITH_CAMELLIA_256_CBC_SHA"),
    (0x0043, "TLS_DH_RSA_WITH_CAMELLIA_128_CBC_SHA"),
    (0x0042, "TLS_DH_DSS_WITH_CAMELLIA_128_CBC_SHA"),
    # 3DES (SWEET32), RC4 (RFC 7465), single DES
    (0xC012, "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA"),
    (0xC008, "TLS_ECDHE_ECDSA_WITH_3DES_EDE_CBC_SHA"),
    (0x0016, "TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA"),
    (0x0013, "TLS_DHE_DSS_WITH_3DES_EDE_CBC_SHA"),
    (0x000A, "TLS_RSA_WITH_3DES_EDE_CBC_SHA"),
    (0xC00D, "TLS_ECDH_RSA_WITH_3DES_EDE_CBC_SHA"),
    (0xC003, "TLS_ECDH_ECDSA_WITH_3DES_EDE_CBC_SHA"),
    (0x0010, "TLS_DH_RSA_WITH_3DES_EDE_CBC_SHA"),
    (0x000D, "TLS_DH_DSS_WITH_3DES_EDE_CBC_SHA"),
    (0xC011, "TLS_ECDHE_RSA_WITH_RC4_128_SHA"),
    (0xC007, "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA"),
    (0x0005, "TLS_RSA_WITH_RC4_128_SHA"),
    (0x0004, "TLS_RSA_WITH_RC4_128_MD5"),
    (0xC00C, "TLS_ECDH_RSA_WITH_RC4_128_SHA"),
    (0xC002, "TLS_ECDH_ECDSA_WITH_RC4_128_SHA"),
    (0x0015, "TLS_DHE_RSA_WITH_DES_CBC_SHA"),
    (0x0012, "TLS_DHE_DSS_WITH_DES_CBC_SHA"),
    (0x0009, "TLS_RSA_WITH_DES_CBC_SHA"),
    (0x000F, "TLS_DH_RSA_WITH_DES_CBC_SHA"),
    (0x000C, "TLS_DH_DSS_WITH_DES_CBC_SHA"),
    # EXPORT (FREAK, Logjam): 40-bit by design
    (0x0014, "TLS_DHE_RSA_EXPORT_WITH_DES40_CBC_SHA"),
    (0x0011, "TLS_DHE_DSS_EXPORT_WITH_DES40_CBC_SHA"),
    (0x0008, "TLS_RSA_EXPORT_WITH_DES40_CBC_SHA"),
    (0x0006, "TLS_RSA_EXPORT_WITH_RC2_CBC_40_MD5"),
    (0x0003, "TLS_RSA_EXPORT_WITH_RC4_40_MD5"),
    (0x000E, "TLS_DH_RSA_EXPORT_WITH_DES40_CBC_SHA"),
    (0x000B, "TLS_DH_DSS_EXPORT_WITH_DES40_CBC_SHA"),
    # anonymous (no server authentication)
    (0xC019, "TLS_ECDH_anon_WITH_AES_256_CBC_SHA"),
    (0xC018, "TLS_ECDH_anon_WITH_AES_128_CBC_SHA"),
    (0xC017, "TLS_ECDH_anon_WITH_3DES_EDE_CBC_SHA"),
    (0xC016, "TLS_ECDH_anon_WITH_RC4_128_SHA"),
    (0x00A7, "TLS_DH_anon_WITH_AES_256_GCM_SHA384"),
    (0x00A6, "TLS_DH_anon_WITH_AES_128_GCM_SHA256"),
    (0x006D, "TLS_DH_anon_WITH_AES_256_CBC_SHA256"),
    (0x006C, "TLS_DH_anon_WITH_AES_128_CBC_SHA256"),
    (0x00C5, "TLS_DH_anon_WITH_CAMELLIA_256_CBC_SHA256"),
    (0x00BF, "TLS_DH_anon_WITH_CAMELLIA_128_CBC_SHA256"),
    (0x003A, "TLS_DH_anon_WITH_AES_256_CBC_SHA"),
    (0x0034, "TLS_DH_anon_WITH_AES_128_CBC_SHA"),
    (0x0089, "TLS_DH_anon_WITH_CAMELLIA_256_CBC_SHA"),
    (0x0046, "TLS_DH_anon_WITH_CAMELLIA_128_CBC_SHA"),
    (0x009B, "TLS_DH_anon_WITH_SEED_CBC_SHA"),
    (0x001B, "TLS_DH_anon_WITH_3DES_EDE_CBC_SHA"),
    (0x001A, "TLS_DH_anon_WITH_DES_CBC_SHA"),
    (0x0018, "TLS_DH_anon_WITH_RC4_128_MD5"),
    (0x0019, "TLS_DH_anon_EXPORT_WITH_DES40_CBC_SHA"),
    (0x0017, "TLS_DH_anon_EXPORT_WITH_RC4_40_MD5"),
    # NULL encryption (authentication only)
    (0xC010, "TLS_ECDHE_RSA_WITH_NULL_SHA"),
    (0xC006, "TLS_ECDHE_ECDSA_WITH_NULL_SHA"),
    (0xC00B, "TLS_ECDH_RSA_WITH_NULL_SHA"),
    (0xC001, "TLS_ECDH_ECDSA_WITH_NULL_SHA"),
    (0xC015, "TLS_ECDH_anon_WITH_NULL_SHA"),
    (0x003B, "TLS_RSA_WITH_NULL_SHA256"),
    (0x0002, "TLS_RSA_WITH_NULL_SHA"),
    (0x0001, "TLS_RSA_WITH_NULL_MD5"),
)

_TLS13_TABLE: tuple[tuple[int, str], ...] = (
    (0x1302, "TLS_AES_256_GCM_SHA384"),
    (0x1303, "TLS_CHACHA20_POLY1305_SHA256"),
    (0x1301, "TLS_AES_128_GCM_SHA256"),
    (0x1304, "TLS_AES_128_CCM_SHA256"),
    (0x1305, "TLS_AES_128_CCM_8_SHA256"),
)

LEGACY_SUITES: tuple[CipherSuite, ...] = tuple(_parse(code, name) for code, name in _TABLE)
"""Every SSLv3–TLS 1.2 suite the probe offers, strongest first."""

TLS13_SUITES: tuple[CipherSuite, ...] = tuple(_parse(code, name) for code, name in _TLS13_TABLE)
"""The five TLS 1.3 suites of RFC 8446 Appendix B.4."""

SUITES_BY_CODE: dict[int, CipherSuite] = {s.code: s for s in LEGACY_SUITES + TLS13_SUITES}


@dataclass(frozen=True, slots=True)
class Group:
    """A named key-exchange group (RFC 8422 §5.1.1, RFC 7919, RFC 8446 §4.2.7)."""

    code: int
    name: str
    bits: int
    deprecated: bool  # RFC 8422 §5.1.1 deprecates code points 1-22 (and 0xFF01/0xFF02)


def _groups() -> tuple[Group, ...]:
    named = (
        (1, "sect163k1", 163),
        (2, "sect163r1", 163),
        (3, "sect163r2", 163),
        (4, "sect193r1", 193),
        (5, "sect193r2", 193),
        (6, "sect233k1", 233),
        (7, "sect233r1", 233),
        (8, "sect239k1", 239),
        (9, "sect283k1", 283),
        (10, "sect283r1", 283),
        (11, "sect409k1", 409),
        (12, "sect409r1", 409),
        (13, "sect571k1", 571),
        (14, "sect571r1", 571),
        (15, "secp160k1", 160),
        (16, "secp160r1", 160),
        (17, "secp160r2", 160),
        (18, "secp192k1", 192),
        (19, "secp192r1", 192),
        (20, "secp224k1", 224),
        (21, "secp224r1", 224),
        (22, "secp256k1", 256),
        (23, "secp256r1", 256),
        (24, "secp384r1", 384),
        (25, "secp521r1", 521),
        (26, "brainpoolP256r1", 256),
        (27, "brainpoolP384r1", 384),
        (28, "brainpoolP512r1", 512),
        (29, "x25519", 253),
        (30, "x448", 448),
    )
    return tuple(Group(code, name, bits, code <= 22) for code, name, bits in named)


GROUPS: tuple[Group, ...] = _groups()
"""Elliptic-curve groups the probe can ask about, one per ServerKeyExchange."""

DEPRECATED_GROUPS: frozenset[int] = frozenset(g.code for g in GROUPS if g.deprecated)

_GROUP_NAMES = {g.code: g.name for g in GROUPS} | {
    256: "ffdhe2048",
    257: "ffdhe3072",
    258: "ffdhe4096",
    259: "ffdhe6144",
    260: "ffdhe8192",
    0x11EC: "X25519MLKEM768",
}


def group_name(code: int) -> str:
    """Registry name of a group code point, or its hex value when unknown."""
    return _GROUP_NAMES.get(code, f"0x{code:04x}")
