"""PKCE (RFC 7636), S256 only: the Appendix B vector and every refused shape."""

from __future__ import annotations

import pytest

from bastion.oauth import pkce
from bastion.oauth.errors import OAuthError

# RFC 7636 Appendix B.
RFC_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
RFC_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_rfc7636_appendix_b_vector() -> None:
    assert pkce.s256_challenge(RFC_VERIFIER) == RFC_CHALLENGE
    assert pkce.verify(RFC_VERIFIER, RFC_CHALLENGE)


def test_accepts_an_s256_challenge() -> None:
    assert pkce.check_challenge(RFC_CHALLENGE, "S256") == RFC_CHALLENGE


@pytest.mark.parametrize(
    ("challenge", "method", "description"),
    [
        # Pitfall #22: RFC 7636 §4.3 defaults a missing method to plain; Authlib follows it.
        (RFC_CHALLENGE, None, "code_challenge_method required: only S256 is supported"),
        (RFC_CHALLENGE, "", "code_challenge_method required: only S256 is supported"),
        # ASVS 10.4.6: plain exposes the verifier in the front channel.
        (RFC_VERIFIER, "plain", "transform algorithm not supported: only S256"),
        (RFC_CHALLENGE, "s256", "transform algorithm not supported: only S256"),
        (RFC_CHALLENGE, "S512", "transform algorithm not supported: only S256"),
        (None, "S256", "code_challenge required (PKCE, RFC 7636)"),
        ("", "S256", "code_challenge required (PKCE, RFC 7636)"),
        # Not what S256 produces: too short, too long, padding, standard base64 characters.
        (RFC_CHALLENGE[:-1], "S256", "code_challenge is not an S256 challenge"),
        (RFC_CHALLENGE + "A", "S256", "code_challenge is not an S256 challenge"),
        (RFC_CHALLENGE[:-1] + "=", "S256", "code_challenge is not an S256 challenge"),
        (RFC_CHALLENGE[:-1] + "+", "S256", "code_challenge is not an S256 challenge"),
        (RFC_CHALLENGE[:-1] + "~", "S256", "code_challenge is not an S256 challenge"),
    ],
    ids=[
        "method-missing",
        "method-empty",
        "plain",
        "lower-case-s256",
        "unknown-method",
        "challenge-missing",
        "challenge-empty",
        "challenge-short",
        "challenge-long",
        "challenge-padded",
        "challenge-plus",
        "challenge-tilde",
    ],
)
def test_refused_challenges_are_invalid_request(
    challenge: str | None, method: str | None, description: str
) -> None:
    with pytest.raises(OAuthError) as caught:
        pkce.check_challenge(challenge, method)
    assert caught.value.error == "invalid_request"
    assert caught.value.description == description
    assert caught.value.status == 400


@pytest.mark.parametrize(
    "verifier",
    [
        "a" * 42,  # one short of RFC 7636 §4.1's minimum
        "a" * 129,  # one over the maximum
        "a" * 42 + " ",
        "a" * 42 + "+",  # not unreserved
        "a" * 42 + "/",
        "a" * 42 + "=",
        "a" * 42 + "é",
        "",
    ],
    ids=["42", "129", "space", "plus", "slash", "equals", "non-ascii", "empty"],
)
def test_malformed_verifiers_never_verify(verifier: str) -> None:
    assert not pkce.valid_verifier_syntax(verifier)
    # Even against the challenge computed from it (if computable): syntax is checked first.
    challenge = pkce.s256_challenge(verifier) if verifier.isascii() else RFC_CHALLENGE
    assert not pkce.verify(verifier, challenge)


@pytest.mark.parametrize("length", [43, 128])
def test_verifier_length_bounds_and_every_unreserved_character(length: int) -> None:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
    verifier = (alphabet * 2)[:length]
    assert pkce.valid_verifier_syntax(verifier)
    assert pkce.verify(verifier, pkce.s256_challenge(verifier))


def test_wrong_verifier_fails() -> None:
    other = RFC_VERIFIER[:-1] + ("j" if RFC_VERIFIER[-1] != "j" else "k")
    assert not pkce.verify(other, RFC_CHALLENGE)


def test_plain_style_use_fails() -> None:
    """Presenting the challenge itself as the verifier (a plain-method client) fails."""
    assert not pkce.verify(RFC_CHALLENGE, RFC_CHALLENGE)
