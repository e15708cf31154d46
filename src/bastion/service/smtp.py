"""Delivering one message to an SMTP server: TLS, authentication, and what a failure means.

Why the standard library's :mod:`smtplib`, run in a worker thread, rather than aiosmtplib:
the service mails only password-reset links (at most a few per account per hour), so one
short-lived thread per delivery costs nothing measurable, while smtplib is maintained with
CPython, handles implicit TLS, STARTTLS, AUTH and SMTPUTF8, and adds no dependency to audit.
Each blocking socket operation is bounded by ``timeout``; the retries live in
:mod:`bastion.service.mail_queue`, off the request path.

TLS:

* ``tls`` is implicit TLS from the first byte (RFC 8314 §3.3, port 465);
* ``starttls`` upgrades the connection (RFC 3207, port 587) and *requires* the upgrade: a
  server (or a man in the middle) that does not offer STARTTLS gets nothing, since falling
  back to plain text would hand the reset token to whoever stripped the offer;
* both verify the certificate chain and the host name with the system CAs (or
  ``ca_file``), TLS 1.2 at least; ``none`` is plain text, refused with credentials.

Failures become :class:`DeliveryError` with ``permanent`` set for what a retry cannot fix
(a 5xx reply, a refused certificate, no STARTTLS) and a ``reason`` safe to log: an exception
class and an SMTP code, never the server's text, which often quotes the recipient.
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path
from typing import Literal

from bastion.config import Settings

__all__ = ["DeliveryError", "SmtpOptions", "SmtpTransport", "build_message"]

Security = Literal["starttls", "tls", "none"]


class DeliveryError(Exception):
    """A message was not accepted. ``reason`` is safe to log; ``permanent``: do not retry."""

    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class SmtpOptions:
    """Where and how to deliver. ``password`` is never part of ``repr`` (it may be logged)."""

    host: str
    port: int
    security: Security
    mail_from: str
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    timeout: float = 10.0

    def __repr__(self) -> str:
        user = f", username={self.username!r}" if self.username else ""
        return f"SmtpOptions({self.security}://{self.host}:{self.port}{user})"

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpOptions:
        if settings.smtp_host is None or settings.mail_from is None:  # pragma: no cover
            raise ValueError("smtp_host and mail_from are checked by Settings")
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_effective_port,
            security=settings.smtp_security,
            mail_from=settings.mail_from,
            username=settings.smtp_username,
            password=settings.smtp_secret(),
            ca_file=settings.smtp_ca_file,
            timeout=settings.smtp_timeout,
        )


def build_message(mail_from: str, to: str, subject: str, text: str) -> EmailMessage:
    """A plain-text UTF-8 message.

    Header values are set through :class:`EmailMessage`, which refuses CR and LF in them, so
    an address or subject cannot inject a header (``Bcc:``) or a second message.
    ``Auto-Submitted: auto-generated`` (RFC 3834 §5) keeps vacation responders quiet.
    """
    message = EmailMessage()
    message["From"] = mail_from
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(usegmt=True)
    domain = parseaddr(mail_from)[1].rpartition("@")[2] or None
    message["Message-ID"] = make_msgid(domain=domain)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text, charset="utf-8")
    return message


class SmtpTransport:
    """Delivers one message per connection (blocking: run it in a thread)."""

    def __init__(self, options: SmtpOptions) -> None:
        self.options = options
        self._context: ssl.SSLContext | None = None
        if options.security != "none":
            context = ssl.create_default_context(
                cafile=str(options.ca_file) if options.ca_file else None
            )
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            self._context = context
        self._open: set[smtplib.SMTP] = set()
        self._lock = threading.Lock()
        self._aborted = False

    def abort(self) -> None:
        """Cut every connection in progress (from another thread), so a worker that stops
        is not held by a relay that went silent: the blocked delivery fails at once. Final: a
        delivery that starts afterwards fails too. (A connection still being opened at this
        very moment is bounded by ``timeout`` instead.)"""
        with self._lock:
            self._aborted = True
            clients = list(self._open)
        for client in clients:
            sock = client.sock
            if sock is not None:
                with contextlib.suppress(OSError):  # already closed
                    sock.shutdown(socket.SHUT_RDWR)

    def deliver(self, message: EmailMessage) -> None:
        """Send *message*; :class:`DeliveryError` when the server did not take it."""
        try:
            self._deliver(message)
        except DeliveryError:
            raise
        except smtplib.SMTPRecipientsRefused as exc:
            codes = sorted({code for code, _text in exc.recipients.values()})
            permanent = all(code >= 500 for code in codes)
            raise DeliveryError(f"recipient refused {codes}", permanent=permanent) from None
        except smtplib.SMTPNotSupportedError:
            # AUTH or SMTPUTF8 (a non-ASCII address) not offered: a retry changes nothing.
            raise DeliveryError("SMTPNotSupportedError", permanent=True) from None
        except smtplib.SMTPResponseException as exc:
            # 4yz: transient negative completion, 5yz: permanent (RFC 5321 §4.2.1).
            name = exc.__class__.__name__
            raise DeliveryError(f"{name} {exc.smtp_code}", permanent=exc.smtp_code >= 500) from None
        except ssl.SSLCertVerificationError as exc:
            raise DeliveryError(
                f"certificate refused ({exc.verify_message})", permanent=True
            ) from None
        except (smtplib.SMTPException, OSError) as exc:  # disconnects, timeouts, refusals
            raise DeliveryError(exc.__class__.__name__, permanent=False) from None
        except (ValueError, UnicodeError) as exc:  # a header that cannot be sent as is
            raise DeliveryError(exc.__class__.__name__, permanent=True) from None

    def _deliver(self, message: EmailMessage) -> None:
        options = self.options
        client: smtplib.SMTP
        if options.security == "tls":
            client = smtplib.SMTP_SSL(timeout=options.timeout, context=self._context)
        else:
            client = smtplib.SMTP(timeout=options.timeout)
        # Created unconnected so that abort() can see it while it waits for the greeting; the
        # constructor would set the TLS server name from its host argument, connect() does not.
        client._host = options.host  # type: ignore[attr-defined]
        with self._lock:
            if self._aborted:
                raise DeliveryError("the worker is stopping", permanent=True)
            self._open.add(client)
        try:
            with client:
                client.connect(options.host, options.port)
                self._session(client, message)
        finally:
            with self._lock:
                self._open.discard(client)

    def _session(self, client: smtplib.SMTP, message: EmailMessage) -> None:
        options = self.options
        client.ehlo()
        if options.security == "starttls":
            if not client.has_extn("starttls"):
                raise DeliveryError("the server did not offer STARTTLS", permanent=True)
            client.starttls(context=self._context)
            client.ehlo()  # RFC 3207 §4.2: forget what was learnt before TLS
        if options.username is not None and options.password is not None:
            client.login(options.username, options.password)
        client.send_message(message)
