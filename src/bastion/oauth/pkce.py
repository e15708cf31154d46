"""PKCE (RFC 7636), ``S256`` only.

* ``plain`` is refused, and so is a missing ``code_challenge_method``: RFC 7636 §4.3 makes
  the method default to ``plain``, which would expose the verifier in the authorization
  request (RFC 9700 §2.1.1; ASVS 10.4.6). Authlib 1.9 falls back to ``plain`` when the
  method is omitted (``authlib/oauth2/rfc7636/challenge.py``); this module never does.
* A challenge must look like what ``S256`` produces: 43 base64url characters (32 octets).
* A verifier is ``43*128unreserved`` (RFC 7636 §4.1); anything else is refused before
  hashing. The comparison is constant-time (``hmac.compare_digest``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from bastion.oauth.errors import INVALID_REQUEST, OAuthError

__all__ = [
    "S256",
    "check_challenge",
    "s256_challenge",
    "valid_verifier_syntax",
    "verify",
]

S256 = "S256"
_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # RFC 7636 §4.1: 43*128unreserved
_S256_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")  # BASE64URL(SHA-256) without padding


def s256_challenge(verifier: str) -> str:
    """``BASE64URL-ENCODE(SHA256(ASCII(code_verifier)))`` (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def valid_verifier_syntax(verifier: str) -> bool:
    """True when *verifier* is 43–128 unreserved characters (RFC 7636 §4.1)."""
    return _VERIFIER.fullmatch(verifier) is not None


def check_challenge(challenge: str | None, method: str | None) -> str:
    """The challenge of an authorization request, or :class:`OAuthError` ``invalid_request``.

    RFC 7636 §4.4.1: a missing challenge or an unsupported method is ``invalid_request``.
    """
    if not challenge:
        raise OAuthError(INVALID_REQUEST, "code_challenge required (PKCE, RFC 7636)")
    if not method:
        # §4.3 would default to plain: refuse instead of guessing.
        raise OAuthError(INVALID_REQUEST, "code_challenge_method required: only S256 is supported")
    if method != S256:  # case-sensitive, like every OAuth parameter value
        raise OAuthError(INVALID_REQUEST, "transform algorithm not supported: only S256")
    if _S256_CHALLENGE.fullmatch(challenge) is None:
        raise OAuthError(INVALID_REQUEST, "code_challenge is not an S256 challenge")
    return challenge


def verify(verifier: str, challenge: str) -> bool:
    """True when *verifier* is well formed and hashes to *challenge* (constant-time compare)."""
    if not valid_verifier_syntax(verifier):
        return False
    return hmac.compare_digest(s256_challenge(verifier).encode(), challenge.encode("ascii"))
