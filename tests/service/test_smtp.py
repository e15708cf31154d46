"""SMTP delivery against a real aiosmtpd server: TLS modes, AUTH, and what each failure means.

The attacks: a relay (or a man in the middle) that strips the STARTTLS offer must get nothing
in clear; a certificate nobody vouched for must not be trusted; a recipient or subject with
CR/LF must not inject a header. Failures are sorted into transient (retry) and permanent.
"""

from __future__ import annotations

import socket
import threading
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from bastion.config import Settings
from bastion.service.smtp import DeliveryError, SmtpOptions, SmtpTransport, build_message
from tests.support import free_port, wait_until
from tests.support_smtp import MailServer, Security

pytestmark = pytest.mark.integration

SENDER = "Bastion <no-reply@example.test>"
CREDENTIALS = ("bastion", "s3cret-relay-password")
TEXT = "Open https://localhost:8443/password-reset?token=abc\n"


def transport(server: MailServer, **overrides: Any) -> SmtpTransport:
    options: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "security": server.security,
        "mail_from": SENDER,
        "ca_file": server.cert_path,
        "timeout": 5.0,
    }
    options.update(overrides)
    return SmtpTransport(SmtpOptions(**options))


def message(to: str = "ada@example.test") -> EmailMessage:
    return build_message(SENDER, to, "Reset your password", TEXT)


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_delivers_over_tls_with_credentials(tmp_path: Path, security: Security) -> None:
    with MailServer(tmp_path, security=security, credentials=CREDENTIALS) as server:
        user, password = CREDENTIALS
        transport(server, username=user, password=password).deliver(message())
        (mail,) = server.messages
    assert server.authenticator is not None and server.authenticator.attempts == 1
    assert mail["To"] == "ada@example.test"
    assert mail["From"] == SENDER
    assert mail["Subject"] == "Reset your password"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["Message-ID"].endswith("@example.test>")
    assert mail.get_content().replace("\r\n", "\n") == TEXT
    mail_from, recipients, _tls = server.handler.envelopes[0]
    assert (mail_from, recipients) == ("no-reply@example.test", ["ada@example.test"])
    if security == "starttls":
        assert server.handler.envelopes[0][2], "the message went before STARTTLS"


def test_plain_relay_without_credentials(tmp_path: Path) -> None:
    with MailServer(tmp_path, security="none") as server:
        transport(server, ca_file=None).deliver(message())
        assert len(server.messages) == 1


def test_stripped_starttls_offer_sends_nothing(tmp_path: Path) -> None:
    """STARTTLS stripping: the server does not offer the upgrade; nothing goes in clear."""
    with MailServer(tmp_path, security="starttls", offer_starttls=False) as server:
        with pytest.raises(DeliveryError) as caught:
            transport(server).deliver(message())
        assert server.messages == [] and server.handler.data_commands == 0
    assert caught.value.permanent
    assert caught.value.reason == "the server did not offer STARTTLS"


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_untrusted_certificate_is_refused(tmp_path: Path, security: Security) -> None:
    with MailServer(tmp_path, security=security, credentials=CREDENTIALS) as server:
        user, password = CREDENTIALS
        with pytest.raises(DeliveryError) as caught:
            # the system CAs do not know the test certificate
            transport(server, ca_file=None, username=user, password=password).deliver(message())
        assert server.messages == []
        assert server.authenticator is not None and server.authenticator.attempts == 0
    assert caught.value.permanent and caught.value.reason.startswith("certificate refused")


def test_wrong_host_name_in_certificate_is_refused(tmp_path: Path) -> None:
    """The certificate names localhost and 127.0.0.1; a server at 127.0.0.2 presenting it (a
    trusted certificate for another name) must not pass."""
    with MailServer(tmp_path, security="tls", host="127.0.0.2") as server:
        with pytest.raises(DeliveryError) as caught:
            transport(server).deliver(message())
        assert server.messages == []
    assert caught.value.permanent and "certificate refused" in caught.value.reason


def test_wrong_password_is_permanent(tmp_path: Path) -> None:
    with MailServer(tmp_path, security="starttls", credentials=CREDENTIALS) as server:
        with pytest.raises(DeliveryError) as caught:
            transport(server, username="bastion", password="wrong").deliver(message())
        assert server.messages == []
    assert caught.value.permanent and caught.value.reason == "SMTPAuthenticationError 535"


def test_4xx_is_transient_and_5xx_permanent(tmp_path: Path) -> None:
    with MailServer(tmp_path, fail_first=1) as server:
        with pytest.raises(DeliveryError) as transient:
            transport(server).deliver(message())
        transport(server).deliver(message())
        assert len(server.messages) == 1
    assert not transient.value.permanent and transient.value.reason == "SMTPDataError 451"
    with MailServer(tmp_path, refuse=True) as server, pytest.raises(DeliveryError) as permanent:
        transport(server).deliver(message())
    assert permanent.value.permanent and permanent.value.reason == "recipient refused [550]"
    # the server's text (which often quotes the address) is not in the reason
    assert "ada" not in permanent.value.reason


def test_unreachable_server_is_transient() -> None:
    options = SmtpOptions("127.0.0.1", free_port(), "starttls", SENDER, timeout=2.0)
    with pytest.raises(DeliveryError) as caught:
        SmtpTransport(options).deliver(message())
    assert not caught.value.permanent and caught.value.reason == "ConnectionRefusedError"


@pytest.mark.parametrize(
    "to", ["ada@example.test\r\nBcc: eve@evil.test", "ada@example.test\nBcc: eve@evil.test"]
)
def test_header_injection_through_the_address_is_refused(to: str) -> None:
    with pytest.raises(ValueError, match="linefeed or carriage return"):
        build_message(SENDER, to, "Reset your password", TEXT)


def test_subject_injection_is_refused() -> None:
    with pytest.raises(ValueError, match="linefeed or carriage return"):
        build_message(SENDER, "ada@example.test", "Hi\r\nBcc: eve@evil.test", TEXT)


def test_options_from_settings_and_repr_hides_the_password(tmp_path: Path) -> None:
    secret_file = tmp_path / "smtp-password"
    secret_file.write_text("from-a-file\n")
    settings = Settings(
        data_dir=tmp_path,
        mailer="smtp",
        smtp_host="mail.example.test",
        smtp_security="tls",
        smtp_username="bastion",
        smtp_password_file=secret_file,
        mail_from=SENDER,
    )
    options = SmtpOptions.from_settings(settings)
    assert (options.host, options.port, options.security) == ("mail.example.test", 465, "tls")
    assert options.password == "from-a-file"
    assert "from-a-file" not in repr(options) and "from-a-file" not in str(settings)


def test_abort_frees_a_delivery_stuck_on_a_silent_relay() -> None:
    """A relay that accepts and never greets holds smtplib for the whole timeout; abort()
    (called when the worker stops) must free the thread at once."""
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        port = listener.getsockname()[1]
        options = SmtpOptions("127.0.0.1", port, "starttls", SENDER, timeout=60.0)
        smtp = SmtpTransport(options)
        outcome: list[BaseException] = []

        def deliver() -> None:
            try:
                smtp.deliver(message())
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=deliver)
        thread.start()
        connection, _addr = listener.accept()
        # connected, and waiting for the greeting that never comes
        wait_until(lambda: any(c.sock for c in smtp._open), what="the delivery to be waiting")
        smtp.abort()
        thread.join(10)
        connection.close()
    finally:
        listener.close()
    assert not thread.is_alive()
    (error,) = outcome
    assert isinstance(error, DeliveryError) and not error.permanent
    with pytest.raises(DeliveryError, match="the worker is stopping"):  # abort() is final
        smtp.deliver(message())
