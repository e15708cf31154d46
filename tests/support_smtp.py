"""A real SMTP server for the tests: aiosmtpd on a free loopback port, in its own thread.

    with MailServer(tmp_path, security="starttls", credentials=("bastion", "s3cret")) as smtp:
        ...                                   # point BASTION_SMTP_* at smtp.host / smtp.port
        (mail,) = smtp.wait_for(1)            # the parsed messages it accepted

``security``: ``starttls`` (offered and required before MAIL and AUTH), ``tls`` (implicit TLS
from the first byte) or ``none``. The certificate is a throwaway one for ``localhost`` and
``127.0.0.1`` (``smtp.cert_path``: give it as ``BASTION_SMTP_CA_FILE``). ``fail_first`` makes
the first N ``DATA`` commands answer ``451`` (a transient failure: the client must retry);
``refuse`` answers every ``RCPT`` with ``550`` (permanent: the client must not retry).
"""

from __future__ import annotations

import email
import email.policy
import ssl
import threading
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.browser.pages import write_self_signed
from tests.support import free_port, wait_until

Security = Literal["starttls", "tls", "none"]


class _Handler:
    def __init__(self, fail_first: int, refuse: bool) -> None:
        self.fail_first = fail_first
        self.refuse = refuse
        self.data_commands = 0
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str], bool]] = []  # from, to, over TLS
        self.lock = threading.Lock()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.data_commands += 1
            if self.data_commands <= self.fail_first:
                return "451 4.3.0 try again later"
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            self.messages.append(message)
            over_tls = session.ssl is not None
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos), over_tls))
        return "250 2.0.0 accepted"


class _Authenticator:
    def __init__(self, username: str, password: str) -> None:
        self.credentials = (username.encode(), password.encode())
        self.attempts = 0

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        self.attempts += 1
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == self.credentials
        return AuthResult(success=ok, handled=False)


class MailServer:
    """aiosmtpd with a recording handler; a context manager that stops it."""

    def __init__(
        self,
        directory: Path,
        *,
        security: Security = "starttls",
        credentials: tuple[str, str] | None = None,
        fail_first: int = 0,
        refuse: bool = False,
        offer_starttls: bool = True,
        host: str = "127.0.0.1",
    ) -> None:
        self.host = host
        self.port = free_port(host)
        self.security = security
        self.cert_path, key_path = write_self_signed(directory)
        self.handler = _Handler(fail_first, refuse)
        self.authenticator = _Authenticator(*credentials) if credentials else None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_path, key_path)
        options: dict[str, Any] = {"hostname": self.host, "port": self.port}
        if self.authenticator is not None:
            options.update(authenticator=self.authenticator, auth_required=True)
        if security == "tls":
            options["ssl_context"] = context
            options["server_hostname"] = "localhost"
            # aiosmtpd only counts STARTTLS as TLS for AUTH; here the whole session is TLS.
            options["auth_require_tls"] = False
        elif security == "starttls" and offer_starttls:
            options.update(tls_context=context, require_starttls=True)
        else:
            # Plain text; AUTH would be refused without TLS unless allowed explicitly.
            options["auth_require_tls"] = False
        self.controller = Controller(self.handler, **options)

    def __enter__(self) -> MailServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    @property
    def messages(self) -> list[EmailMessage]:
        with self.handler.lock:
            return list(self.handler.messages)

    def wait_for(self, count: int, timeout: float = 20) -> list[EmailMessage]:
        """The accepted messages once there are at least *count* (fails the test otherwise)."""
        wait_until(lambda: len(self.messages) >= count, timeout=timeout, what=f"{count} mail(s)")
        return self.messages

    def env(self, *, credentials: tuple[str, str] | None = None) -> dict[str, str]:
        """The BASTION_* settings that point `bastion serve` at this server."""
        values = {
            "BASTION_MAILER": "smtp",
            "BASTION_SMTP_HOST": self.host,
            "BASTION_SMTP_PORT": str(self.port),
            "BASTION_SMTP_SECURITY": self.security,
            "BASTION_SMTP_CA_FILE": str(self.cert_path),
            "BASTION_MAIL_FROM": "Bastion <no-reply@example.test>",
        }
        if credentials is not None:
            values["BASTION_SMTP_USERNAME"], values["BASTION_SMTP_PASSWORD"] = credentials
        return values
