"""Why a credential was refused: one class per failure, one public message per family.

The class (and its ``detail``) is for logs and tests; clients only ever see the family's
public message, so a forged token learns nothing about which check caught it::

    AuthError (bastion.errors)
    ├── TokenError                 "Invalid token"
    │   ├── MalformedToken         not three base64url segments of JSON objects
    │   ├── TokenTooLarge          over the size bound (checked before any decoding)
    │   ├── DisallowedAlgorithm    alg other than the pinned one (none, HS256, eS256, ...)
    │   ├── ForbiddenHeader        jku / x5u / jwk / x5c / x5t / unknown members
    │   ├── UnknownCritical        a crit header (no extension is understood)
    │   ├── UnknownKey             kid missing or not in the ring
    │   ├── BadSignature           signature does not verify
    │   ├── MissingClaim           a required claim is absent
    │   ├── InvalidClaim           a claim has the wrong type or shape
    │   ├── Expired / NotYetValid / IssuedInFuture
    │   ├── WrongIssuer / WrongAudience / WrongTokenType
    ├── InvalidCredentials         "Invalid email or password"
    ├── InvalidRefreshToken        "Invalid refresh token"
    │   └── RefreshTokenReused     a revoked token came back: the user's tokens are revoked
    ├── InvalidResetToken          "Invalid or expired token"
    └── WeakPassword               the password policy refused it (message names the rule)
"""

from __future__ import annotations

from bastion.errors import AuthError


class TokenError(AuthError):
    """An access token was refused."""

    public_message = "Invalid token"


class MalformedToken(TokenError):
    """Not a compact JWS of three base64url segments holding JSON objects (RFC 7515 §7.1)."""


class TokenTooLarge(TokenError):
    """Longer than the bound: refused before decoding, so huge tokens cost nothing."""


class DisallowedAlgorithm(TokenError):
    """``alg`` is not the pinned algorithm (RFC 8725 §3.1, §3.2): none, HMAC, case variants."""


class ForbiddenHeader(TokenError):
    """A header member that could pull in a foreign key (RFC 8725 §3.10) or is unknown."""


class UnknownCritical(TokenError):
    """``crit`` lists extensions; bastion understands none, so it must refuse (RFC 7515 §4.1.11)."""


class UnknownKey(TokenError):
    """No key with this ``kid`` in the ring."""


class BadSignature(TokenError):
    """The signature does not verify with the key the ``kid`` names."""


class MissingClaim(TokenError):
    """A required claim (iss, aud, exp, iat, sub, jti, type, role) is absent."""


class InvalidClaim(TokenError):
    """A claim has the wrong JSON type or shape."""


class Expired(TokenError):
    """``exp`` is in the past (beyond the leeway)."""


class NotYetValid(TokenError):
    """``nbf`` is in the future (beyond the leeway)."""


class IssuedInFuture(TokenError):
    """``iat`` is in the future (beyond the leeway)."""


class WrongIssuer(TokenError):
    """``iss`` is not exactly ours (prefixes and suffixes included)."""


class WrongAudience(TokenError):
    """``aud`` does not name us (RFC 8725 §3.9)."""


class WrongTokenType(TokenError):
    """``type`` is not ``access``: other kinds of token never pass as one (RFC 8725 §3.12)."""


class InvalidCredentials(AuthError):
    """Unknown email or wrong password: one message for both (no enumeration)."""

    public_message = "Invalid email or password"


class InvalidRefreshToken(AuthError):
    """A refresh token that is unknown, expired or revoked."""

    public_message = "Invalid refresh token"


class RefreshTokenReused(InvalidRefreshToken):
    """A revoked refresh token was presented again: every token of its user is now revoked."""


class InvalidResetToken(AuthError):
    """A password-reset token that is unknown, used or expired."""

    public_message = "Invalid or expired token"


class WeakPassword(AuthError):
    """The password policy refused a new password; ``problems`` lists every broken rule."""

    public_message = "Password does not meet the policy"

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems), public_message=problems[0] if problems else None)
        self.problems = list(problems)
