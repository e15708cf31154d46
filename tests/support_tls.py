"""TLS helpers shared by the tests and bench/bench_scan.py: key files and the sslyze mapping."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes


def private_key_pem(key: PrivateKeyTypes) -> bytes:
    """``key`` as unencrypted PKCS#8 PEM, the form nginx, uvicorn and ``ssl`` load."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


# Mozilla compliance issues (sslyze's checker) -> the bastion controls that must fail for them.
# tls_curves maps to the informational profile control (X448/P-521 are not weak, RFC 8422).
# Used by tests/integration/test_tls_compare.py (the assertion) and bench/bench_scan.py (the
# report), so the two cannot drift apart.
MOZILLA_TO_BASTION: dict[str, tuple[str, ...]] = {
    "tls_versions": (
        "tls.protocol-sslv2", "tls.protocol-sslv3", "tls.protocol-tls10", "tls.protocol-tls11",
    ),
    "ciphers": (
        "tls.cipher-cbc", "tls.cipher-static-kex", "tls.cipher-null", "tls.cipher-anonymous",
        "tls.cipher-rc4", "tls.cipher-3des", "tls.cipher-low-strength",
    ),
    "tls_curves": ("tls.ecdh-curves-profile", "tls.ecdh-curves"),
    "ecdh_param_size": ("tls.ecdh-curves",),
    "dh_param_size": ("tls.dh-params",),
    "certificate_path_validation": (
        "tls.cert-trust", "tls.cert-expired", "tls.cert-hostname", "tls.cert-strict-chain",
    ),
    "rsa_key_size": ("tls.cert-key-size",),
    "certificate_signatures": ("tls.cert-signature",),
    "maximum_certificate_lifespan": ("tls.cert-lifespan",),
    "tls_vulnerability_compression": ("tls.compression",),
    "tls_vulnerability_fallback_scsv": ("tls.fallback-scsv",),
    "tls_vulnerability_renegotiation": ("tls.secure-renegotiation",),
    "tls_vulnerability_extended_master_secret": ("tls.extended-master-secret",),
}  # fmt: skip
