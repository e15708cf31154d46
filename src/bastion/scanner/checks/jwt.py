"""JSON Web Tokens: the JWKS holds no private keys, and (with ``--token``) forged tokens are
refused: ``alg: none``, HMAC signed with the public key, signature stripped or payload
tampered, an embedded attacker key or a ``kid`` path traversal; plus offline checks of the
token itself (weak HMAC secret, lifetime).

Forgeries are sent to the resource the token opens (the target, or a common "who am I" path);
a forgery that gets a 2xx there was accepted. Forged tokens are redacted in the evidence like
real ones; the forged header is shown instead.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import jwt as pyjwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from bastion.scanner.check import Result, check
from bastion.scanner.checks._util import (
    RFC,
    b64url,
    candidates_tried,
    encode_segment,
    find_protected,
    find_token_resource,
    jwt_parts,
    no_token_resource,
)
from bastion.scanner.context import ANONYMOUS, ScanContext
from bastion.scanner.evidence import Exchange, join_evidence

RFC8725 = f"{RFC}/rfc8725"
OWASP_JWT = (
    "https://cheatsheetseries.owasp.org/cheatsheets/JSON_Web_Token_for_Java_Cheat_Sheet.html"
)
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")


async def _jwks(ctx: ScanContext) -> tuple[Exchange, list[dict[str, Any]]] | None:
    """The JWKS at /.well-known/jwks.json, or at the jwks_uri of the OpenID configuration
    (only when it is on the scanned origin: see :func:`_off_origin_jwks_uri`)."""

    async def fetch() -> tuple[Exchange, list[dict[str, Any]]] | None:
        paths = ["/.well-known/jwks.json"]
        uri = await _jwks_uri(ctx)
        if uri is not None and ctx.same_target(uri):
            paths.append(uri)
        for path in paths:
            ex = await ctx.fetch("GET", path, extra_headers=ANONYMOUS)
            body = ex.json() if ex.status == 200 else None
            if isinstance(body, dict) and isinstance(body.get("keys"), list):
                return ex, [k for k in body["keys"] if isinstance(k, dict)]
        return None

    return await ctx.memo("jwks", fetch)


async def _jwks_uri(ctx: ScanContext) -> str | None:
    config = await ctx.fetch("GET", "/.well-known/openid-configuration", extra_headers=ANONYMOUS)
    data = config.json() if config.status == 200 else None
    uri = data.get("jwks_uri") if isinstance(data, dict) else None
    return uri if isinstance(uri, str) else None


async def _no_jwks_reason(ctx: ScanContext, default: str) -> str:
    """Why no JWKS was judged. A jwks_uri on another origin is not fetched: the target must
    not steer the scanner elsewhere (a credential sink, or an internal service whose answer
    would be quoted in the report)."""
    uri = await _jwks_uri(ctx)
    if uri is not None and not ctx.same_target(uri):
        return f"jwks_uri {ctx.policy.why_not(uri)}"
    return default


@check(
    id="jwt.jwks-private",
    title="The published JWKS holds public keys only",
    category="jwt",
    severity="critical",
    references=(f"{RFC}/rfc7517#section-9.2",),
    remediation="Publish only public members (kty, n, e, crv, x, y, kid, alg, use); rotate "
    "every key whose private part was published.",
    max_requests=3,
)
async def jwks_private(ctx: ScanContext) -> Result:
    """A JWKS with `d` (or `p`, `q`, ... or a symmetric `k`) hands out the signing key:
    anyone can mint tokens (RFC 7517 §9.2: private keys must not be disclosed)."""
    got = await _jwks(ctx)
    if got is None:
        return Result.skipped(
            await _no_jwks_reason(ctx, "no JWKS found at /.well-known/jwks.json or jwks_uri")
        )
    ex, keys = got
    leaks = [
        f"{k.get('kid', f'key #{i}')}: {', '.join(m for m in PRIVATE_MEMBERS if m in k)}"
        for i, k in enumerate(keys)
        if any(m in k for m in PRIVATE_MEMBERS)
    ]
    kids = ", ".join(str(k.get("kid", "?")) for k in keys)
    evidence = ex.describe(["content-type"], note=f"{len(keys)} key(s): {kids}")
    if leaks:
        return Result.failed(evidence, "private key members published: " + "; ".join(leaks))
    return Result.passed(evidence)


# --- forgeries ------------------------------------------------------------------------------
async def _resource(ctx: ScanContext) -> Result | tuple[str, dict[str, Any], dict[str, Any], str]:
    token = ctx.options.token or ""
    parts = jwt_parts(token)
    if parts is None:
        return Result.skipped("--token is not a compact JWT (header.payload.signature)")
    resource = await find_token_resource(ctx)
    if resource is None:
        return Result.skipped(no_token_resource(ctx))
    header, payload, signature = parts
    return resource.path, header, payload, signature


async def _try(ctx: ScanContext, path: str, forged: str) -> Exchange:
    return await ctx.request(
        "GET", path, headers={"Authorization": f"Bearer {forged}"}, extra_headers=ANONYMOUS
    )


def _verdict(attempts: list[tuple[str, Exchange]], what: str) -> Result:
    evidence = join_evidence(
        *(ex.describe(["www-authenticate"], note=f"forged: {label}") for label, ex in attempts)
    )
    accepted = [label for label, ex in attempts if 200 <= ex.status < 300]
    if accepted:
        return Result.failed(evidence, f"{what} accepted: {'; '.join(accepted)}")
    return Result.passed(evidence)


@check(
    id="jwt.alg-none",
    title='Tokens with alg "none" are refused',
    category="jwt",
    severity="critical",
    references=(f"{RFC8725}#section-3.1",),
    remediation="Pin the accepted algorithms in the verifier (e.g. `algorithms=['ES256']`); "
    "never take the algorithm from the token.",
    max_requests=11,
    needs_token=True,
)
async def alg_none(ctx: ScanContext) -> Result:
    """RFC 8725 §3.1: libraries that honour `alg: none` accept unsigned tokens, so anyone is
    anyone. The token's own claims are re-sent unsigned, as `none`, `None` and `NONE`."""
    got = await _resource(ctx)
    if isinstance(got, Result):
        return got
    path, header, payload, _ = got
    attempts = []
    for alg in ("none", "None", "NONE"):
        forged_header = {**header, "alg": alg}
        forged = f"{encode_segment(forged_header)}.{encode_segment(payload)}."
        attempts.append((json.dumps(forged_header), await _try(ctx, path, forged)))
    return _verdict(attempts, "unsigned token")


def _public_keys(keys: list[dict[str, Any]]) -> list[tuple[str, bytes]]:
    """PEM encodings of each public key: what a confused verifier would use as HMAC secret."""
    encoded: list[tuple[str, bytes]] = []
    for jwk in keys:
        kid = str(jwk.get("kid", "?"))
        try:
            key: Any = pyjwt.PyJWK.from_dict(jwk).key
        except (pyjwt.PyJWTError, ValueError, KeyError, TypeError):
            continue
        if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            key = key.public_key()
        if not hasattr(key, "public_bytes"):
            continue
        spki = key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        encoded.append((f"{kid} (SPKI PEM)", spki))
        if isinstance(key, rsa.RSAPublicKey):
            pkcs1 = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
            encoded.append((f"{kid} (PKCS#1 PEM)", pkcs1))
    return encoded


def _hs256(header: dict[str, Any], payload: dict[str, Any], secret: bytes) -> str:
    signing_input = f"{encode_segment(header)}.{encode_segment(payload)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


@check(
    id="jwt.hmac-confusion",
    title="Tokens HMAC-signed with the public key are refused",
    category="jwt",
    severity="critical",
    references=(f"{RFC8725}#section-2.1",),
    remediation="Pin the algorithm per key (an ES256/RS256 key never verifies HS256).",
    max_requests=14,
    needs_token=True,
)
async def hmac_confusion(ctx: ScanContext) -> Result:
    """Algorithm confusion (RFC 8725 §2.1): a verifier that lets the token pick HS256 uses
    the *public* key (which anyone can fetch from the JWKS) as the HMAC secret. Each public
    key of the JWKS is tried as SPKI PEM (and PKCS#1 for RSA)."""
    got = await _resource(ctx)
    if isinstance(got, Result):
        return got
    path, header, payload, _ = got
    jwks = await _jwks(ctx)
    if jwks is None:
        return Result.skipped(
            await _no_jwks_reason(ctx, "no JWKS published: no public key to confuse")
        )
    keys = _public_keys(jwks[1])[:6]
    if not keys:
        return Result.skipped("the JWKS holds no usable public key")
    attempts = []
    for label, secret in keys:
        forged = _hs256({**header, "alg": "HS256"}, payload, secret)
        attempts.append((f"HS256 with {label}", await _try(ctx, path, forged)))
    return _verdict(attempts, "HMAC-with-public-key token")


@check(
    id="jwt.signature-stripped",
    title="Tokens without a signature are refused",
    category="jwt",
    severity="critical",
    references=(f"{RFC8725}#section-3.1",),
    remediation="Verify the signature of every token; reject an empty one.",
    max_requests=9,
    needs_token=True,
)
async def signature_stripped(ctx: ScanContext) -> Result:
    """The token with its signature removed (`header.payload.`): accepted only by verifiers
    that decode without verifying (VulnAPI "null signature")."""
    got = await _resource(ctx)
    if isinstance(got, Result):
        return got
    path, header, payload, _ = got
    forged = f"{encode_segment(header)}.{encode_segment(payload)}."
    return _verdict([("signature removed", await _try(ctx, path, forged))], "unsigned token")


@check(
    id="jwt.tampered-payload",
    title="Tokens with modified claims are refused",
    category="jwt",
    severity="critical",
    references=(OWASP_JWT,),
    remediation="Verify the signature before trusting any claim.",
    max_requests=9,
    needs_token=True,
)
async def tampered_payload(ctx: ScanContext) -> Result:
    """The original signature over a changed payload (role raised to admin, expiry pushed a
    year out): accepted only by a verifier that does not check signatures."""
    got = await _resource(ctx)
    if isinstance(got, Result):
        return got
    path, header, payload, signature = got
    changed = {**payload, "role": "admin", "exp": int(time.time()) + 365 * 86400}
    forged = f"{encode_segment(header)}.{encode_segment(changed)}.{signature}"
    return _verdict(
        [("claims changed (role=admin, exp +1y)", await _try(ctx, path, forged))],
        "tampered token",
    )


@check(
    id="jwt.embedded-key",
    title="Tokens carrying their own key (jwk header) or a kid path are refused",
    category="jwt",
    severity="critical",
    references=(f"{RFC8725}#section-3.10",),
    remediation="Resolve keys only from the server's own key ring by kid; ignore jwk, jku and "
    "x5u headers; treat kid as an opaque lookup key, never a path.",
    max_requests=10,
    needs_token=True,
)
async def embedded_key(ctx: ScanContext) -> Result:
    """Two header injections: an embedded `jwk` with the attacker's own EC key (the token
    verifies against the key it carries, CVE-2018-0114 style), and `kid` pointing at
    /dev/null with an HS256 signature made with an empty key (kid path traversal)."""
    got = await _resource(ctx)
    if isinstance(got, Result):
        return got
    path, header, payload, _ = got
    attacker = ec.generate_private_key(ec.SECP256R1())
    public_jwk = json.loads(pyjwt.algorithms.ECAlgorithm.to_jwk(attacker.public_key()))
    jwk_header = {k: v for k, v in header.items() if k not in {"alg", "jku", "x5u"}}
    jwk_header.update({"alg": "ES256", "jwk": public_jwk})
    embedded = pyjwt.encode(payload, attacker, algorithm="ES256", headers=jwk_header)
    traversal = _hs256(
        {"alg": "HS256", "typ": "JWT", "kid": "../../../../../../../../dev/null"}, payload, b""
    )
    attempts = [
        ("embedded jwk (attacker's EC key)", await _try(ctx, path, embedded)),
        ('kid "../../dev/null" with HS256 and an empty key', await _try(ctx, path, traversal)),
    ]
    return _verdict(attempts, "header-injected token")


CLOCK_SKEW_LEEWAY_S = 30  # the leeway bastion serve documents; PyJWT's and most servers' is less


@check(
    id="jwt.expired",
    title="Expired tokens are refused",
    category="jwt",
    severity="high",
    references=(f"{RFC}/rfc7519#section-4.1.4",),
    remediation="Check exp (with a small leeway) on every request.",
    max_requests=8,
)
async def expired(ctx: ScanContext) -> Result:
    """RFC 7519 §4.1.4: a token MUST NOT be accepted after exp (with "some small leeway" for
    clock skew: a token expired less than 30 s ago is not judged). Without the signing key an
    expired token cannot be forged, so this runs with `--expired-token` (or a `--token` that
    has expired); it is sent to the first path that refuses anonymous requests."""
    given = ctx.options.expired_token or ctx.options.token or ""  # --expired-token first
    if not given:
        return Result.skipped("needs an expired token: run with --expired-token JWT")
    parts = jwt_parts(given)
    if parts is None:
        return Result.skipped("--token is not a compact JWT")
    exp = parts[1].get("exp")
    if not isinstance(exp, int | float) or exp > time.time():
        return Result.skipped("the --token has not expired: give an expired token to test this")
    age = time.time() - exp
    if age <= CLOCK_SKEW_LEEWAY_S:
        # RFC 7519 §4.1.4 allows "some small leeway" for clock skew; accepting a token that
        # expired seconds ago is the server doing that, not a failure.
        return Result.skipped(
            f"the --token expired only {age:.0f} s ago, within the {CLOCK_SKEW_LEEWAY_S} s "
            "clock-skew leeway a server may allow: give a token expired longer ago"
        )
    protected = await find_protected(ctx)
    if protected is None:
        return Result.skipped(f"no 401/403 found at {candidates_tried(ctx)}")
    ex = await _try(ctx, protected.path, given)
    return _verdict([(f"expired {int(time.time() - exp)} s ago", ex)], "expired token")


WEAK_SECRETS = (
    b"",
    b"secret",
    b"password",
    b"changeme",
    b"jwt",
    b"jwt_secret",
    b"jwtsecret",
    b"secretkey",
    b"secret-key",
    b"your-256-bit-secret",
    b"your_jwt_secret",
    b"key",
    b"test",
    b"admin",
    b"123456",
    b"supersecret",
    b"s3cr3t",
    b"default",
    b"development",
    b"bastion",
)


@check(
    id="jwt.weak-secret",
    title="HMAC-signed tokens do not use a guessable secret",
    category="jwt",
    severity="high",
    references=(f"{RFC8725}#section-3.5",),
    remediation="Use asymmetric signatures (ES256) or an HMAC key of at least 256 random bits.",
    max_requests=0,
    needs_token=True,
)
async def weak_secret(ctx: ScanContext) -> Result:
    """RFC 8725 §3.5: human-chosen HMAC keys can be brute-forced offline from one token.
    The token is checked offline against common secrets (no request is sent)."""
    parts = jwt_parts(ctx.options.token or "")
    if parts is None:
        return Result.skipped("--token is not a compact JWT")
    header, _, signature = parts
    alg = str(header.get("alg", ""))
    digests = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
    if alg not in digests:
        return Result.passed(reason=f"the token is signed with {alg or 'no alg'}, not HMAC")
    signing_input = (ctx.options.token or "").rsplit(".", 1)[0].encode()
    for secret in WEAK_SECRETS:
        mac = b64url(hmac.new(secret, signing_input, digests[alg]).digest())
        if hmac.compare_digest(mac, signature):
            shown = secret.decode() or "(empty)"
            return Result.failed(f"header: {json.dumps(header)}", f"{alg} secret is {shown!r}")
    return Result.passed(
        f"header: {json.dumps(header)}", f"none of {len(WEAK_SECRETS)} common secrets"
    )


@check(
    id="jwt.lifetime",
    title="Access tokens are short-lived (exp within an hour of iat)",
    category="jwt",
    severity="medium",
    references=(OWASP_JWT,),
    remediation="Issue access tokens for minutes (15 min) and refresh them; always set exp.",
    max_requests=0,
    needs_token=True,
)
async def lifetime(ctx: ScanContext) -> Result:
    """A token without exp never dies; a long-lived one stays useful to whoever steals it
    (revocation of JWTs is hard). Offline: reads exp and iat of the `--token`."""
    parts = jwt_parts(ctx.options.token or "")
    if parts is None:
        return Result.skipped("--token is not a compact JWT")
    header, payload, _ = parts
    claims = {k: payload[k] for k in ("iat", "nbf", "exp") if k in payload}
    evidence = f"header: {json.dumps(header)}\nclaims: {json.dumps(claims)}"
    exp = payload.get("exp")
    if not isinstance(exp, int | float):
        return Result.failed(evidence, "no exp claim: the token never expires")
    start = payload.get("iat", payload.get("nbf"))
    if not isinstance(start, int | float):
        return Result.warned(evidence, "no iat: lifetime unknown")
    hours = (exp - start) / 3600
    if hours > 24:
        return Result.failed(evidence, f"lives {hours:.1f} h")
    if hours > 1:
        return Result.warned(evidence, f"lives {hours:.1f} h")
    return Result.passed(evidence, f"lives {hours * 60:.0f} min")
