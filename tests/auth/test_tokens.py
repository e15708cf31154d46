"""TokenIssuer and TokenVerifier, attacked from outside: every forged token is refused
with its own error class, and the genuine ones pass (with the 30 s leeway, no more).

The verifier here is configured as bastion's service configures it (its key ring, the claims
its tokens carry, ``typ: JWT``); the same verifier behind ``BearerAuth`` for other issuers is
tested in test_bearer.py and the key sources in test_jwk.py / test_jwks.py."""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.auth import errors as E
from bastion.auth.jwk import VerificationKey, curve_order, half_order
from bastion.auth.keys import Algorithm, KeyRing
from bastion.auth.keysource import RingKeys
from bastion.auth.tokens import VERIFIED_CACHE_SIZE, TokenIssuer, TokenVerifier, b64decode
from bastion.errors import ConfigError
from tests.auth import forge
from tests.auth.forge import AUDIENCE, ISSUER, claims, token

ALGS: list[Algorithm] = ["ES256", "RS256", "EdDSA"]
SERVICE_CLAIMS = ("iat", "sub", "jti", "type", "role")  # what bastion's own tokens carry


class Setup:
    def __init__(
        self, tmp_path: Path, alg: Algorithm = "ES256", reload_interval: float = 1.0
    ) -> None:
        self.ring = KeyRing(
            tmp_path / "keys",
            alg=alg,
            rsa_bits=2048,
            reload_interval=reload_interval,
        )
        self.key = self.ring.ensure()
        self.alg = alg
        self.issuer = TokenIssuer(self.ring, issuer=ISSUER, audience=AUDIENCE)
        self.verifier = TokenVerifier(
            self.ring,
            issuer=ISSUER,
            audience=AUDIENCE,
            required_claims=SERVICE_CLAIMS,
            typ=("JWT",),
        )

    @property
    def header(self) -> dict[str, Any]:
        return {"alg": self.alg, "kid": self.key.kid, "typ": "JWT"}

    def signed(self, payload: dict[str, Any], **header: Any) -> str:
        """Signed with the REAL key: only a header or claim check can refuse it."""
        merged = {k: v for k, v in {**self.header, **header}.items() if v is not None}
        return token(merged, payload, key=self.key.private_key, alg=self.alg)


@pytest.fixture
def es(tmp_path: Path) -> Setup:
    return Setup(tmp_path)


def refused(setup: Setup, value: str, error: type[E.TokenError]) -> E.TokenError:
    with pytest.raises(error) as caught:
        setup.verifier.decode(value)
    assert caught.value.public_message == "Invalid token"
    return caught.value


# --- the genuine article ---------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
def test_an_issued_token_verifies_to_its_claims(tmp_path: Path, alg: Algorithm) -> None:
    setup = Setup(tmp_path, alg)
    user_id = uuid.uuid4()
    issued = setup.issuer.issue(user_id, "user")
    body = setup.verifier.decode(issued.token)
    assert body["sub"] == str(user_id) and body["role"] == "user"
    assert body["jti"] == issued.token_id and body["type"] == "access"
    assert issued.expires_in == 900


@pytest.mark.parametrize("alg", ALGS)
def test_issued_tokens_carry_the_contract_claims_and_kid(tmp_path: Path, alg: Algorithm) -> None:
    setup = Setup(tmp_path, alg)
    issued = setup.issuer.issue(uuid.uuid4(), "admin")
    header = jwt.get_unverified_header(issued.token)
    assert header == {"alg": alg, "kid": setup.key.kid, "typ": "JWT"}
    body = jwt.decode(
        issued.token,
        setup.key.public_key,
        algorithms=[alg],
        audience=AUDIENCE,
        issuer=ISSUER,
    )
    assert set(body) == {"iss", "sub", "aud", "iat", "exp", "jti", "type", "role"}
    assert body["type"] == "access" and body["role"] == "admin"
    assert body["exp"] - body["iat"] == 900
    assert abs(body["iat"] - time.time()) < 5


def test_each_token_has_a_distinct_jti(es: Setup) -> None:
    user_id = uuid.uuid4()
    assert len({es.issuer.issue(user_id, "user").token_id for _ in range(50)}) == 50


def test_an_audience_list_that_names_us_is_accepted(es: Setup) -> None:
    es.verifier.decode(es.signed(claims(aud=["other-api", AUDIENCE])))


@pytest.mark.parametrize("typ", [None, "JWT", "jwt"])
def test_typ_may_be_absent_or_jwt(es: Setup, typ: str | None) -> None:
    es.verifier.decode(es.signed(claims(), typ=typ))


# --- RFC 8725 §2.1 / CVE-2015-9235 family: alg none --------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("signature", [b"", b"x"])
def test_alg_none_in_any_casing_is_refused(es: Setup, alg: str, signature: bytes) -> None:
    forged = token({"alg": alg, "kid": es.key.kid, "typ": "JWT"}, claims(), signature=signature)
    with pytest.raises(E.TokenError):
        es.verifier.decode(forged)


def test_alg_none_with_a_real_signature_segment_is_refused_by_the_algorithm_pin(
    es: Setup,
) -> None:
    forged = token({"alg": "none", "kid": es.key.kid}, claims(), signature=b"\x00" * 64)
    refused(es, forged, E.DisallowedAlgorithm)


# --- algorithm confusion: HMAC keyed with our public key (CVE-2016-10555, CVE-2022-29217) ------


@pytest.mark.parametrize("alg", ALGS)
@pytest.mark.parametrize("hmac_alg", ["HS256", "HS384", "HS512"])
@pytest.mark.parametrize(
    "encoding",
    ["pem", "pem-crlf", "pem-no-newline", "der", "jwk-json", "jwks-json", "jwk-x-raw", "openssh"],
)
def test_hmac_signed_with_the_public_key_is_refused(
    tmp_path: Path, alg: Algorithm, hmac_alg: str, encoding: str
) -> None:
    setup = Setup(tmp_path, alg)
    secret = forge.public_key_encodings(setup.key.public_key, setup.key.kid, alg)[encoding]
    forged = token(
        {"alg": hmac_alg, "kid": setup.key.kid, "typ": "JWT"}, claims(), hmac_secret=secret
    )
    refused(setup, forged, E.DisallowedAlgorithm)


def test_hmac_with_the_public_key_is_refused_even_claiming_our_algorithm(es: Setup) -> None:
    # alg says ES256 but the "signature" is an HMAC: it is simply a bad signature.
    secret = forge.public_key_encodings(es.key.public_key, es.key.kid, "ES256")["pem"]
    forged = token(es.header, claims(), alg="HS256", hmac_secret=secret)
    with pytest.raises(E.BadSignature):
        es.verifier.decode(forged)


# --- another algorithm, another key ----------------------------------------------------------


@pytest.mark.parametrize(
    ("alg", "key"),
    [
        ("RS256", rsa.generate_private_key(65537, 2048)),
        ("PS256", rsa.generate_private_key(65537, 2048)),
        ("ES384", ec.generate_private_key(ec.SECP384R1())),
        ("EdDSA", ed25519.Ed25519PrivateKey.generate()),
    ],
)
def test_a_token_of_another_algorithm_is_refused(es: Setup, alg: str, key: Any) -> None:
    forged = token({"alg": alg, "kid": es.key.kid, "typ": "JWT"}, claims(), key=key)
    refused(es, forged, E.DisallowedAlgorithm)


@pytest.mark.parametrize("alg", ["es256", "Es256", "ES256 ", "ES256\u0000"])
def test_a_case_or_padding_variant_of_our_algorithm_is_refused(es: Setup, alg: str) -> None:
    # RFC 8725bis: allow-lists compare exactly; "es256" must not slip through a lowercase map.
    forged = token({"alg": alg, "kid": es.key.kid}, claims(), key=es.key.private_key, alg="ES256")
    refused(es, forged, E.DisallowedAlgorithm)


def test_our_algorithm_signed_by_another_key_under_our_kid_is_refused(es: Setup) -> None:
    attacker = ec.generate_private_key(ec.SECP256R1())
    forged = token(es.header, claims(), key=attacker)
    refused(es, forged, E.BadSignature)


def test_psychic_signature_r_s_zero_is_refused(es: Setup) -> None:
    # CVE-2022-21449 (Java): an ECDSA signature of r = s = 0 verified everything.
    forged = token(es.header, claims(), signature=b"\x00" * 64)
    refused(es, forged, E.BadSignature)


def test_a_signature_of_the_wrong_length_is_refused(es: Setup) -> None:
    good = es.signed(claims())
    head, body, sig = good.split(".")
    longer = forge.b64(base64.urlsafe_b64decode(sig + "==") + b"\x00")
    refused(es, f"{head}.{body}.{longer}", E.BadSignature)


# --- time claims -------------------------------------------------------------------------------


def test_an_expired_token_is_refused(es: Setup) -> None:
    now = int(time.time())
    refused(es, es.signed(claims(iat=now - 1000, exp=now - 31)), E.Expired)


def test_expiry_within_the_30_second_leeway_is_tolerated(es: Setup) -> None:
    now = int(time.time())
    es.verifier.decode(es.signed(claims(iat=now - 1000, exp=now - 20)))


def test_a_future_nbf_is_refused(es: Setup) -> None:
    now = int(time.time())
    refused(es, es.signed(claims(nbf=now + 60)), E.NotYetValid)


def test_nbf_within_the_leeway_is_tolerated(es: Setup) -> None:
    es.verifier.decode(es.signed(claims(nbf=int(time.time()) + 20)))


def test_a_token_issued_in_the_future_is_refused(es: Setup) -> None:
    now = int(time.time())
    refused(es, es.signed(claims(iat=now + 3600, exp=now + 7200)), E.IssuedInFuture)


@pytest.mark.parametrize("name", ["exp", "iat", "nbf"])
@pytest.mark.parametrize("value", ["9999999999", True, [1], {"a": 1}])
def test_time_claims_must_be_numbers(es: Setup, name: str, value: Any) -> None:
    refused(es, es.signed(claims(**{name: value})), E.InvalidClaim)


def test_nan_or_infinite_exp_cannot_defeat_expiry(es: Setup) -> None:
    # Python's json accepts NaN/Infinity; a NaN exp would compare False against the clock.
    for literal in ("NaN", "Infinity"):
        body = claims(exp=0)
        raw = json.dumps(body).replace('"exp": 0', f'"exp": {literal}')
        head = forge.segment(es.header)
        signing_input = f"{head}.{forge.b64(raw.encode())}".encode()
        signature = forge.sign_raw(es.key.private_key, "ES256", signing_input)
        refused(es, f"{signing_input.decode()}.{forge.b64(signature)}", E.MalformedToken)


def test_an_exp_that_overflows_to_infinity_is_refused(es: Setup) -> None:
    # 1e999 is valid JSON and parses as float('inf'): such a token would never expire.
    head = forge.segment(es.header)
    raw = json.dumps(claims(exp=0)).replace('"exp": 0', '"exp": 1e999')
    signing_input = f"{head}.{forge.b64(raw.encode())}".encode()
    signature = forge.sign_raw(es.key.private_key, "ES256", signing_input)
    refused(es, f"{signing_input.decode()}.{forge.b64(signature)}", E.InvalidClaim)


# --- issuer, audience, type, subject -----------------------------------------------------------


@pytest.mark.parametrize(
    "iss",
    [
        "https://evil.example",
        ISSUER[:-1],  # a prefix of ours
        ISSUER + "/",  # ours plus a suffix
        ISSUER + ".evil.example",
        ISSUER.upper(),
        "",
        ["https://localhost:8443"],
    ],
)
def test_a_wrong_issuer_is_refused(es: Setup, iss: Any) -> None:
    refused(es, es.signed(claims(iss=iss)), E.WrongIssuer)


@pytest.mark.parametrize(
    "aud",
    [
        "other-api",
        AUDIENCE[:-1],
        AUDIENCE + "-admin",
        "x" + AUDIENCE,
        ["other-api"],
        [],
        [AUDIENCE, 7],
    ],
)
def test_a_wrong_audience_is_refused(es: Setup, aud: Any) -> None:
    refused(es, es.signed(claims(aud=aud)), E.WrongAudience)


@pytest.mark.parametrize("name", ["exp", "iat", "iss", "aud", "type", "sub", "jti", "role"])
def test_a_missing_required_claim_is_refused(es: Setup, name: str) -> None:
    refused(es, es.signed(claims(**{name: None})), E.MissingClaim)


def test_claims_beyond_the_required_ones_are_not_judged_here(es: Setup) -> None:
    # sub "alice", type "refresh": the service refuses those (bastion.service.deps), the
    # library verifier only checks what it was configured to require.
    assert es.verifier.decode(es.signed(claims(sub="alice", type="refresh")))["sub"] == "alice"


# --- tampering ---------------------------------------------------------------------------------


def test_a_tampered_payload_is_refused(es: Setup) -> None:
    genuine = es.issuer.issue(uuid.uuid4(), "user").token
    head, body, sig = genuine.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=="))
    payload["role"] = "admin"
    refused(es, f"{head}.{forge.segment(payload)}.{sig}", E.BadSignature)


def test_a_tampered_header_is_refused(es: Setup) -> None:
    genuine = es.issuer.issue(uuid.uuid4(), "user").token
    _, body, sig = genuine.split(".")
    header = forge.segment({"kid": es.key.kid, "alg": "ES256", "typ": "JWT"})  # reordered
    refused(es, f"{header}.{body}.{sig}", E.BadSignature)


@pytest.mark.parametrize("shape", ["empty-signature", "two-segments", "one-segment"])
def test_a_stripped_signature_is_refused(es: Setup, shape: str) -> None:
    genuine = es.issuer.issue(uuid.uuid4(), "user").token
    head, body, _ = genuine.split(".")
    value = {
        "empty-signature": f"{head}.{body}.",
        "two-segments": f"{head}.{body}",
        "one-segment": head,
    }[shape]
    refused(es, value, E.MalformedToken)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t + "=",  # padding
        lambda t: t + "==",
        lambda t: t.replace("-", "+").replace("_", "/") if ("-" in t or "_" in t) else t + "+",
        lambda t: " " + t,
        lambda t: t[:20] + "\n" + t[20:],
        lambda t: t + ".",  # four segments
        lambda t: t + ".AAAA.AAAA",  # a JWE's five segments
        lambda t: t.replace(".", ".\u00e9", 1),  # non-ASCII
    ],
)
def test_non_base64url_characters_are_refused(es: Setup, mangle: Any) -> None:
    genuine = es.issuer.issue(uuid.uuid4(), "user").token
    refused(es, mangle(genuine), E.MalformedToken)


@pytest.mark.parametrize(
    "header_json",
    [
        b"not json",
        b"[]",
        b'"ES256"',
        b'{"alg":"ES256","alg":"none"}',  # duplicate member: refused, not last-wins
        b"\xff\xfe{}",
    ],
)
def test_a_malformed_header_is_refused(es: Setup, header_json: bytes) -> None:
    body = forge.segment(claims())
    refused(es, f"{forge.b64(header_json)}.{body}.{forge.b64(b'x' * 64)}", E.MalformedToken)


def test_a_signed_payload_that_is_not_an_object_is_refused(es: Setup) -> None:
    head = forge.segment(es.header)
    body = forge.b64(b"[1,2,3]")
    signature = forge.sign_raw(es.key.private_key, "ES256", f"{head}.{body}".encode())
    refused(es, f"{head}.{body}.{forge.b64(signature)}", E.MalformedToken)


# --- kid ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kid",
    [
        "unknown-kid",
        "../../../../../../dev/null",  # path traversal: kid used as a file name
        "/etc/passwd",
        "' OR '1'='1' --",  # SQL injection: kid used in a query
        "x' UNION SELECT 'secret' --",
        "http://attacker.example/key.pem",
        "a" * 1000,
        "",
    ],
)
def test_an_unknown_or_malicious_kid_is_refused(es: Setup, kid: str) -> None:
    refused(es, es.signed(claims(), kid=kid), E.UnknownKey)


@pytest.mark.parametrize("kid", [None, 1, ["x"], {"a": 1}])
def test_a_kid_that_is_not_a_string_is_refused(es: Setup, kid: Any) -> None:
    header = {**es.header, "kid": kid} if kid is not None else {"alg": "ES256"}
    forged = token(header, claims(), key=es.key.private_key)
    refused(es, forged, E.UnknownKey)


# --- headers that bring their own key (RFC 8725 §3.10, CVE-2018-0114) --------------------------


def test_an_embedded_jwk_signed_by_the_attacker_is_refused(es: Setup) -> None:
    attacker = ec.generate_private_key(ec.SECP256R1())
    from bastion.auth.keys import public_jwk

    forged = token({**es.header, "jwk": public_jwk(attacker.public_key())}, claims(), key=attacker)
    refused(es, forged, E.ForbiddenHeader)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("jku", "https://attacker.example/jwks.json"),
        ("x5u", "https://attacker.example/cert.pem"),
        ("jwk", {"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}),
        ("x5c", ["MIIB..."]),
    ],
)
def test_key_carrying_headers_are_refused_even_when_our_key_signed(
    es: Setup, name: str, value: Any
) -> None:
    refused(es, es.signed(claims(), **{name: value}), E.ForbiddenHeader)


@pytest.mark.parametrize("name", ["x5t", "x5t#S256"])
def test_a_certificate_thumbprint_is_tolerated_and_never_used(es: Setup, name: str) -> None:
    # Entra ID sends x5t in every header; the key is still the one the kid names.
    es.verifier.decode(es.signed(claims(), **{name: "bm90LWEtdGh1bWJwcmludA"}))
    attacker = ec.generate_private_key(ec.SECP256R1())
    forged = token({**es.header, name: "bm90LWEtdGh1bWJwcmludA"}, claims(), key=attacker)
    refused(es, forged, E.BadSignature)


@pytest.mark.parametrize("crit", [["exp"], ["b64"], ["x-custom"], [], "exp"])
def test_a_crit_header_is_refused(es: Setup, crit: Any) -> None:
    forged = es.signed(claims(), crit=crit, **{"x-custom": True, "b64": False})
    refused(es, forged, E.UnknownCritical)


def test_an_unknown_header_member_is_refused(es: Setup) -> None:
    refused(es, es.signed(claims(), cty="JWT"), E.ForbiddenHeader)


@pytest.mark.parametrize("typ", ["at+jwt", "JWE", "refresh+jwt", 1])
def test_a_typ_other_than_jwt_is_refused(es: Setup, typ: Any) -> None:
    refused(es, es.signed(claims(), typ=typ), E.ForbiddenHeader)


# --- size ----------------------------------------------------------------------------------------


def test_a_100_kb_token_is_refused_before_decoding(es: Setup) -> None:
    huge = es.signed(claims(padding="A" * 100_000))
    assert len(huge) > 100_000
    refused(es, huge, E.TokenTooLarge)


def test_a_deeply_nested_payload_is_refused_without_a_crash(es: Setup) -> None:
    head = forge.segment(es.header)
    body = forge.b64(b"[" * 2000 + b"]" * 2000)
    verifier = TokenVerifier(es.ring, issuer=ISSUER, audience=AUDIENCE, max_length=20_000)
    signature = forge.sign_raw(es.key.private_key, "ES256", f"{head}.{body}".encode())
    with pytest.raises(E.MalformedToken):
        verifier.decode(f"{head}.{body}.{forge.b64(signature)}")


# --- the header cache and rotation ------------------------------------------------------------


def test_the_header_cache_is_bounded_against_forged_header_variants(es: Setup) -> None:
    # Each variant passes the header checks (so it is cached) and then fails its signature.
    body = forge.segment(claims())
    for spaces in range(500):
        raw = '{"alg":"ES256",' + " " * spaces + f'"kid":"{es.key.kid}"}}'
        forged = f"{forge.b64(raw.encode())}.{body}.{forge.b64(bytes(64))}"
        with pytest.raises(E.BadSignature):
            es.verifier.decode(forged)
    assert 0 < len(es.verifier._headers) <= 64


def test_tokens_of_a_rotated_key_keep_verifying_and_new_ones_use_the_new_key(
    tmp_path: Path,
) -> None:
    setup = Setup(tmp_path, reload_interval=0.0)
    old_token = setup.issuer.issue(uuid.uuid4(), "user").token
    other = KeyRing(tmp_path / "keys", alg="ES256")  # `bastion keys rotate`, elsewhere
    new_key = other.rotate()
    new_token = setup.issuer.issue(uuid.uuid4(), "user").token
    assert jwt.get_unverified_header(new_token)["kid"] == new_key.kid
    setup.verifier.decode(old_token)
    setup.verifier.decode(new_token)


def test_a_token_from_another_process_new_key_verifies_after_a_reload(tmp_path: Path) -> None:
    setup = Setup(tmp_path, reload_interval=0.0)
    other_ring = KeyRing(tmp_path / "keys", alg="ES256")
    other_ring.rotate()
    other_issuer = TokenIssuer(other_ring, issuer=ISSUER, audience=AUDIENCE)
    fresh = other_issuer.issue(uuid.uuid4(), "user").token
    setup.verifier.decode(fresh)  # unknown kid -> ring reloaded -> found


def test_a_verifier_for_another_audience_refuses_our_tokens(es: Setup) -> None:
    other = TokenVerifier(es.ring, issuer=ISSUER, audience="payments-api")
    with pytest.raises(E.WrongAudience):
        other.decode(es.issuer.issue(uuid.uuid4(), "user").token)


# --- what the issuer accepts, it verifies (issue 11) --------------------------------------------


@pytest.mark.parametrize(
    ("subject", "sub"),
    [(42, "42"), ("alice", "alice"), (uuid.UUID(int=7), str(uuid.UUID(int=7))), ("é", "é")],
)
def test_the_issuer_mints_only_tokens_its_verifier_accepts(
    es: Setup, subject: Any, sub: str
) -> None:
    issued = es.issuer.issue(subject, "user")
    assert es.verifier.decode(issued.token)["sub"] == sub


@pytest.mark.parametrize(
    ("subject", "role", "error"),
    [
        (True, "user", TypeError),  # bool is an int to Python, not a subject
        (None, "user", TypeError),
        (4.2, "user", TypeError),
        (b"42", "user", TypeError),
        ("", "user", ValueError),
        (42, "", TypeError),
        (42, None, TypeError),
    ],
)
def test_the_issuer_refuses_what_it_could_not_verify(
    es: Setup, subject: Any, role: Any, error: type[Exception]
) -> None:
    with pytest.raises(error):
        es.issuer.issue(subject, role)


# --- one set of claims, one token string (issue 13: low-S, canonical base64url) -----------------


def split_sig(value: str) -> tuple[str, bytes]:
    signing_input, _, sig = value.rpartition(".")
    return signing_input, base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))


def test_issued_es256_signatures_are_low_s(es: Setup) -> None:
    half = half_order("ES256")
    for _ in range(64):  # a random-S signer would give ~32 high ones
        _, sig = split_sig(es.issuer.issue(uuid.uuid4(), "user").token)
        assert int.from_bytes(sig[32:], "big") <= half


def test_the_high_s_twin_of_a_valid_token_is_refused(es: Setup) -> None:
    genuine = es.issuer.issue(uuid.uuid4(), "user").token
    signing_input, sig = split_sig(genuine)
    twin = sig[:32] + (curve_order("ES256") - int.from_bytes(sig[32:], "big")).to_bytes(32, "big")
    es.verifier.decode(genuine)
    refused(es, f"{signing_input}.{forge.b64(twin)}", E.BadSignature)


def test_the_issuer_signs_deterministically(es: Setup) -> None:
    if not es.issuer.deterministic:
        pytest.skip("this OpenSSL has no RFC 6979 ECDSA (3.2+ needed); low-S still applies")
    body = claims()
    assert es.issuer.sign(es.key, body) == es.issuer.sign(es.key, body)


def spare_bit_variants(segment: str) -> list[str]:
    """Other spellings of *segment* that a lenient decoder reads as the same bytes."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    spare = {2: 4, 3: 2}.get(len(segment) % 4)
    if spare is None:
        return []
    value = alphabet.index(segment[-1])
    return [segment[:-1] + alphabet[value | bits] for bits in range(1, 1 << spare)]


@pytest.mark.parametrize("alg", ALGS)
def test_segments_with_spare_bits_set_are_refused(tmp_path: Path, alg: Algorithm) -> None:
    setup = Setup(tmp_path, alg)
    tried = 0
    for _ in range(8):  # payload lengths vary with the subject: cover both 4n+2 and 4n+3
        parts = setup.issuer.issue(uuid.uuid4().hex[: 1 + tried % 7], "user").token.split(".")
        for index in range(3):
            for variant in spare_bit_variants(parts[index]):
                mangled = parts.copy()
                mangled[index] = variant
                refused(setup, ".".join(mangled), E.MalformedToken)
                tried += 1
    assert tried > 0


@given(st.binary(max_size=64))
def test_a_segment_decodes_only_from_its_canonical_spelling(data: bytes) -> None:
    canonical = forge.b64(data).encode()
    assert b64decode(canonical) == data
    for variant in spare_bit_variants(canonical.decode()):
        with pytest.raises(ValueError):
            b64decode(variant.encode())
    for padded in (canonical + b"=", canonical + b"==", canonical + b"\n", b" " + canonical):
        if padded != canonical:
            with pytest.raises(ValueError):
                b64decode(padded)


@given(
    st.text(
        alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/ ", max_size=40
    )
)
def test_whatever_decodes_is_the_canonical_encoding_of_its_bytes(text: str) -> None:
    try:
        data = b64decode(text.encode())
    except ValueError:
        return
    assert forge.b64(data) == text


_ring_cache: dict[str, Setup] = {}


def ring_setup(alg: Algorithm, tmp_path_factory: pytest.TempPathFactory) -> Setup:
    if alg not in _ring_cache:
        _ring_cache[alg] = Setup(tmp_path_factory.mktemp(f"ring-{alg}"), alg)
    return _ring_cache[alg]


CLAIM_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    alg=st.sampled_from(ALGS),
    subject=st.text(min_size=1, max_size=40),
    role=st.text(min_size=1, max_size=12),
    extra=st.dictionaries(st.text(min_size=1, max_size=10), CLAIM_VALUES, max_size=4),
)
def test_one_set_of_claims_has_exactly_one_valid_token_string(
    tmp_path_factory: pytest.TempPathFactory,
    alg: Algorithm,
    subject: str,
    role: str,
    extra: dict[str, Any],
) -> None:
    setup = ring_setup(alg, tmp_path_factory)
    now = int(time.time())
    body = {**extra, **claims(sub=subject, role=role, iat=now, exp=now + 900)}
    genuine = setup.issuer.sign(setup.key, body)
    assert setup.verifier.decode(genuine) == body
    head, payload, sig = genuine.split(".")
    others = [
        genuine + "=",
        f"{head}.{payload}.{sig}==",
        f"{head}=.{payload}.{sig}",
        f"{head}.{payload}=.{sig}",
        " " + genuine,
        genuine + " ",
        genuine.replace("-", "+").replace("_", "/"),
    ]
    for index, part in enumerate((head, payload, sig)):
        for variant in spare_bit_variants(part):
            parts = [head, payload, sig]
            parts[index] = variant
            others.append(".".join(parts))
    if alg == "ES256":
        _, raw = split_sig(genuine)
        high = raw[:32] + (curve_order("ES256") - int.from_bytes(raw[32:], "big")).to_bytes(
            32, "big"
        )
        others.append(f"{head}.{payload}.{forge.b64(high)}")
    for other in others:
        if other == genuine:
            continue
        with pytest.raises(E.TokenError):
            setup.verifier.decode(other)


# --- options of the verifier --------------------------------------------------------------------


def test_several_audiences_may_be_configured(es: Setup) -> None:
    verifier = TokenVerifier(es.ring, issuer=ISSUER, audience=["orders-api", AUDIENCE])
    verifier.decode(es.signed(claims(aud="orders-api")))
    verifier.decode(es.signed(claims(aud=["x", AUDIENCE])))
    with pytest.raises(E.WrongAudience):
        verifier.decode(es.signed(claims(aud="payments-api")))


def test_further_required_claims_are_an_option(es: Setup) -> None:
    verifier = TokenVerifier(es.ring, issuer=ISSUER, audience=AUDIENCE, required_claims=["tenant"])
    verifier.decode(es.signed(claims(tenant="acme")))
    with pytest.raises(E.MissingClaim, match="tenant"):
        verifier.decode(es.signed(claims()))


def test_only_iss_aud_exp_are_required_by_default(es: Setup) -> None:
    verifier = TokenVerifier(es.ring, issuer=ISSUER, audience=AUDIENCE)
    minimal = {"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60}
    assert verifier.decode(es.signed(minimal)) == minimal
    for name in ("iss", "aud", "exp"):
        with pytest.raises(E.MissingClaim):
            verifier.decode(es.signed({k: v for k, v in minimal.items() if k != name}))


@pytest.mark.parametrize("typ", ["JWT", "jwt", "at+jwt", "AT+JWT", "application/at+jwt", None])
def test_jwt_and_at_jwt_types_are_accepted_by_default(es: Setup, typ: str | None) -> None:
    verifier = TokenVerifier(es.ring, issuer=ISSUER, audience=AUDIENCE)
    verifier.decode(es.signed(claims(), typ=typ))


@pytest.mark.parametrize(
    ("option", "kwargs"),
    [
        ("issuer", {"issuer": ""}),
        ("audience", {"audience": ""}),
        ("audience", {"audience": []}),
        ("audience", {"audience": ["a", 7]}),
        ("leeway", {"leeway": -1}),
        ("leeway", {"leeway": 3600}),
        ("max_token_length", {"max_length": 10}),
        ("required_claims", {"required_claims": "sub"}),
        ("required_claims", {"required_claims": [""]}),
        ("typ", {"typ": "JWT"}),
        ("typ", {"typ": []}),
    ],
)
def test_bad_verifier_options_are_refused_at_construction(
    es: Setup, option: str, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(ConfigError) as caught:
        TokenVerifier(es.ring, **{"issuer": ISSUER, "audience": AUDIENCE, **kwargs})
    assert caught.value.name == option


def test_another_claim_may_name_the_audience(es: Setup) -> None:
    # Amazon Cognito's access tokens carry client_id and no aud (its ID tokens carry aud).
    verifier = TokenVerifier(
        es.ring, issuer=ISSUER, audience="app-client", audience_claim="client_id"
    )
    access = {"iss": ISSUER, "client_id": "app-client", "exp": int(time.time()) + 60}
    assert verifier.decode(es.signed(access))["client_id"] == "app-client"
    with pytest.raises(E.WrongAudience, match="client_id"):
        verifier.decode(es.signed({**access, "client_id": "other-client"}))
    id_token = {"iss": ISSUER, "aud": "app-client", "exp": int(time.time()) + 60}
    with pytest.raises(E.MissingClaim, match="client_id"):
        verifier.decode(es.signed(id_token))
    with pytest.raises(ConfigError):
        TokenVerifier(es.ring, issuer=ISSUER, audience="x", audience_claim="")


def test_a_header_checked_while_the_key_set_changes_is_not_cached(es: Setup) -> None:
    # A fetch thread may install a new key set between the lookup and the caching: the old
    # key must not survive in the cache (it may be one the issuer just withdrew).
    ring_keys = RingKeys(es.ring)
    listeners: list[Any] = []

    class ChangingKeys:
        algorithms = ring_keys.algorithms

        def get(self, kid: str | None, alg: str) -> Any:
            key = ring_keys.get(kid, alg)
            for listener in listeners:
                listener()  # the new set arrives right now
            return key

        def poll(self) -> None: ...

        def refetch(self) -> None:
            return None

        def on_change(self, listener: Any) -> None:
            listeners.append(listener)

    verifier = TokenVerifier(ChangingKeys(), issuer=ISSUER, audience=AUDIENCE)
    verifier.decode(es.signed(claims()))
    assert verifier._headers == {}
    stable = TokenVerifier(es.ring, issuer=ISSUER, audience=AUDIENCE)
    stable.decode(es.signed(claims()))
    assert len(stable._headers) == 1


# --- the memory of verified signatures ---------------------------------------------------


class SwitchableKeys:
    """A key source whose key set the test replaces (a rotation, a withdrawn key), counting
    the public-key operations its keys perform."""

    def __init__(self, ring: KeyRing) -> None:
        self.ring_keys = RingKeys(ring)
        self.algorithms = self.ring_keys.algorithms
        self.withdrawn: set[str] = set()
        self.verifications = 0
        self._listeners: list[Any] = []

    def get(self, kid: str | None, alg: str) -> VerificationKey | None:
        if kid in self.withdrawn:
            return None
        key = self.ring_keys.get(kid, alg)
        if key is None:
            return None

        def counting(signature: bytes, data: bytes) -> None:
            self.verifications += 1
            key.verify(signature, data)

        return VerificationKey(key.kid, key.alg, key.public_key, counting)

    def withdraw(self, kid: str) -> None:
        self.withdrawn.add(kid)
        for listener in self._listeners:
            listener()

    def poll(self) -> None: ...

    def refetch(self) -> None:
        return None

    def on_change(self, listener: Any) -> None:
        self._listeners.append(listener)


@pytest.fixture
def counted(es: Setup) -> tuple[SwitchableKeys, TokenVerifier]:
    keys = SwitchableKeys(es.ring)
    return keys, TokenVerifier(keys, issuer=ISSUER, audience=AUDIENCE)


@pytest.fixture
def remembered(es: Setup, counted: tuple[SwitchableKeys, TokenVerifier]) -> str:
    """A genuine token the counted verifier has verified once (so remembers)."""
    value = es.signed(claims())
    counted[1].decode(value)
    return value


def test_a_token_presented_again_skips_only_the_public_key_operation(
    es: Setup, counted: tuple[SwitchableKeys, TokenVerifier]
) -> None:
    keys, verifier = counted
    value = es.issuer.issue(uuid.uuid4(), "user").token
    first = verifier.decode(value)
    first["role"] = "admin"  # a caller scribbling on its claims changes no one else's
    second = verifier.decode(value)
    assert keys.verifications == 1
    assert second["role"] == "user" and second is not first


def test_a_remembered_token_altered_anywhere_is_refused(
    es: Setup, counted: tuple[SwitchableKeys, TokenVerifier], remembered: str
) -> None:
    keys, verifier = counted
    header, payload, signature = remembered.split(".")
    raised = forge.segment({**claims(), "role": "admin"})
    # The remembered signature on another payload, and another signature on the same payload.
    with pytest.raises(E.BadSignature):
        verifier.decode(f"{header}.{raised}.{signature}")
    other = es.signed(claims()).rsplit(".", 1)[1]
    with pytest.raises(E.BadSignature):
        verifier.decode(f"{header}.{payload}.{other}")
    assert keys.verifications == 3  # each variant paid for its own verification


def test_a_remembered_token_still_expires_on_time(es: Setup) -> None:
    now = [time.time()]
    verifier = TokenVerifier(es.ring, issuer=ISSUER, audience=AUDIENCE, clock=lambda: now[0])
    value = es.signed(claims(exp=int(now[0]) + 60))
    verifier.decode(value)
    now[0] += 60 + 30  # exp plus the leeway
    with pytest.raises(E.Expired):
        verifier.decode(value)


def test_a_remembered_token_of_a_withdrawn_key_is_refused(
    es: Setup, counted: tuple[SwitchableKeys, TokenVerifier], remembered: str
) -> None:
    keys, verifier = counted
    keys.withdraw(es.key.kid)
    with pytest.raises(E.UnknownKey):
        verifier.decode(remembered)


def test_forged_tokens_are_never_remembered_and_genuine_ones_are_bounded(es: Setup) -> None:
    genuine = es.signed(claims())
    header, payload, _ = genuine.split(".")
    for n in range(300):
        forged = f"{header}.{payload}.{forge.b64(n.to_bytes(64, 'big'))}"
        with pytest.raises((E.BadSignature, E.MalformedToken)):
            es.verifier.decode(forged)
    assert len(es.verifier._verified) == 0
    for _ in range(VERIFIED_CACHE_SIZE + 10):
        es.verifier.decode(es.signed(claims()))
    assert 0 < len(es.verifier._verified) <= VERIFIED_CACHE_SIZE
