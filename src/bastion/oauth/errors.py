"""OAuth errors in RFC 6749's vocabulary: a code from its registry and a description.

Unlike the rest of the service (``{"error", "requestId"}``), OAuth clients (AppAuth and the
like) read ``error`` as one of RFC 6749's codes, so the OAuth endpoints answer in that form.
The description is public: it says what to fix, never which account or code exists.
"""

from __future__ import annotations

from bastion.errors import BastionError

__all__ = [
    "INVALID_CLIENT",
    "INVALID_GRANT",
    "INVALID_REQUEST",
    "UNSUPPORTED_GRANT_TYPE",
    "UNSUPPORTED_RESPONSE_TYPE",
    "OAuthError",
]

# RFC 6749 §4.1.2.1 (authorization endpoint) and §5.2 (token endpoint).
INVALID_REQUEST = "invalid_request"
INVALID_CLIENT = "invalid_client"
INVALID_GRANT = "invalid_grant"
UNSUPPORTED_GRANT_TYPE = "unsupported_grant_type"
UNSUPPORTED_RESPONSE_TYPE = "unsupported_response_type"
SERVER_ERROR = "server_error"


class OAuthError(BastionError):
    """A refused OAuth request: ``error`` (RFC 6749 code), ``description``, HTTP ``status``."""

    def __init__(
        self, error: str, description: str, *, status: int = 400, detail: str = ""
    ) -> None:
        super().__init__(detail or description, public_message=description)
        self.error = error
        self.description = description
        self.status = status

    def body(self) -> dict[str, str]:
        """The RFC 6749 §5.2 JSON members."""
        return {"error": self.error, "error_description": self.description}
