"""The exception tree of bastion.

Every error carries two faces: a *public* message that may be shown to a client
(never an exception text, a path, SQL or a library name) and an *internal* detail
that only goes to the log, next to the request id::

    BastionError
    ├── ConfigError          a bad setting or option; raised at start or construction
    ├── HTTPError            a request refused by a layer: status, public message, headers
    ├── StoreError           a rate-limit / revocation backend is unreachable or broken
    └── AuthError            a credential was refused (subclasses live in bastion.auth)
"""

from __future__ import annotations

from collections.abc import Sequence


class BastionError(Exception):
    """Base of every bastion exception."""

    public_message = "An internal error occurred"

    def __init__(self, detail: str = "", *, public_message: str | None = None) -> None:
        super().__init__(detail or self.public_message)
        self.detail = detail
        if public_message is not None:
            self.public_message = public_message


class ConfigError(BastionError):
    """A setting or constructor option is invalid. The message names it and says why."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}", public_message="Invalid configuration")
        self.name = name
        self.problem = problem


class HTTPError(BastionError):
    """A request refused with a status and a public message (the contract's error shape)."""

    def __init__(
        self,
        status: int,
        public_message: str,
        *,
        headers: Sequence[tuple[bytes, bytes]] = (),
        details: dict[str, list[str]] | None = None,
        detail: str = "",
    ) -> None:
        super().__init__(detail or public_message, public_message=public_message)
        self.status = status
        self.headers = list(headers)
        self.details = details


class StoreError(BastionError):
    """A storage backend (Redis, the database behind a store) failed; the cause is chained."""


class AuthError(BastionError):
    """A credential was refused. Subclasses say why; clients only ever see the public message."""

    public_message = "Invalid token"
