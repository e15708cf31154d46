"""Mailers of the reference service, chosen by ``BASTION_MAILER``.

``outbox`` (the default) appends to ``<data dir>/outbox.jsonl`` one JSON object a line:
``{"to", "subject", "text"}``. The file holds live reset tokens, so it is created with mode
0600; the mailer never logs the text it sends.

``smtp`` hands each message to a :class:`~bastion.service.mail_queue.BackgroundMailer`
(delivery off the request path, retries) over an
:class:`~bastion.service.smtp.SmtpTransport` (TLS, authentication).

Every mailer has ``async aclose()``, called when the app stops.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from email.message import EmailMessage
from pathlib import Path

from bastion.auth.reset import Mailer
from bastion.config import Settings
from bastion.errors import ConfigError
from bastion.service.mail_queue import BackgroundMailer
from bastion.service.smtp import SmtpOptions, SmtpTransport

OUTBOX_FILE = "outbox.jsonl"


class OutboxMailer:
    """Appends each message as one JSON line (O_APPEND: whole lines, even across processes)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def _append(self, line: bytes) -> None:
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)

    async def send(self, to: str, subject: str, text: str) -> None:
        record = {"to": to, "subject": subject, "text": text}
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        await asyncio.to_thread(self._append, line)

    async def aclose(self) -> None:
        """Nothing is held open between messages."""


def smtp_mailer(settings: Settings) -> BackgroundMailer:
    """SMTP delivery in worker threads, scheduled off the request path, with retries."""
    transport = SmtpTransport(SmtpOptions.from_settings(settings))

    async def deliver(message: EmailMessage) -> None:
        await asyncio.to_thread(transport.deliver, message)

    return BackgroundMailer(
        deliver,
        mail_from=transport.options.mail_from,
        attempts=settings.smtp_attempts,
        abort=transport.abort,
    )


def make_mailer(settings: Settings) -> Mailer:
    """The mailer BASTION_MAILER names."""
    if settings.mailer == "outbox":
        return OutboxMailer(settings.data_dir / OUTBOX_FILE)
    if settings.mailer == "smtp":
        return smtp_mailer(settings)
    raise ConfigError("BASTION_MAILER", f"unknown mailer {settings.mailer!r}")  # pragma: no cover
