"""Background delivery: send() returns at once; retries with backoff; logs without secrets.

The delivery function is scripted where the test is about scheduling (how many attempts, how
far apart, what is dropped), and a real aiosmtpd server where it is about the whole path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

from bastion.config import Settings
from bastion.service.mail_queue import BackgroundMailer, mask_address
from bastion.service.mailer import OutboxMailer, make_mailer
from bastion.service.smtp import DeliveryError
from tests.support_smtp import MailServer

SENDER = "no-reply@example.test"
TOKEN = "Zm9vYmFyYmF6cXV4cXV1eHF1dXpxdXV6cXV1enF1dXo"
TEXT = f"https://localhost:8443/password-reset?token={TOKEN}\n"


class Script:
    """A delivery function that fails as told, recording when it was called."""

    def __init__(self, *failures: DeliveryError, block: asyncio.Event | None = None) -> None:
        self.failures = list(failures)
        self.calls: list[float] = []
        self.delivered: list[EmailMessage] = []
        self.block = block

    async def __call__(self, message: EmailMessage) -> None:
        self.calls.append(time.monotonic())
        if self.block is not None:
            await self.block.wait()
        if self.failures:
            raise self.failures.pop(0)
        self.delivered.append(message)


async def settle(mailer: BackgroundMailer) -> None:
    while mailer.pending:
        await asyncio.sleep(0.005)


def test_mask_address() -> None:
    assert mask_address("ada.lovelace@example.com") == "a***@example.com"
    assert mask_address("  Ada@Example.com ") == "A***@Example.com"
    assert mask_address("\x1b[31m@evil.test") == "***@evil.test"
    assert mask_address("no-at-sign") == "***"
    assert mask_address("a@x.test\nforged line") == "a***@x.test\\nforged line"


async def test_send_returns_before_delivery() -> None:
    gate = asyncio.Event()
    script = Script(block=gate)
    mailer = BackgroundMailer(script, mail_from=SENDER)
    started = time.monotonic()
    await mailer.send("ada@example.test", "Reset", TEXT)
    assert time.monotonic() - started < 0.5
    assert mailer.pending == 1 and script.delivered == []
    gate.set()
    await settle(mailer)
    assert [m["To"] for m in script.delivered] == ["ada@example.test"]


async def test_transient_failures_are_retried_with_growing_delays(
    caplog: pytest.LogCaptureFixture,
) -> None:
    script = Script(
        DeliveryError("SMTPDataError 451", permanent=False),
        DeliveryError("ConnectionResetError", permanent=False),
    )
    mailer = BackgroundMailer(script, mail_from=SENDER, attempts=3, first_delay=0.05)
    with caplog.at_level(logging.INFO, logger="bastion.mail"):
        await mailer.send("ada@example.test", "Reset", TEXT)
        await settle(mailer)
    assert len(script.calls) == 3 and len(script.delivered) == 1
    first_gap, second_gap = script.calls[1] - script.calls[0], script.calls[2] - script.calls[1]
    assert first_gap >= 0.05 and second_gap >= 0.1  # 1x, then 2x the first delay
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "mail to a***@example.test not delivered (attempt 1 of 3): SMTPDataError 451; "
        "retrying in 0.05 s",
        "mail to a***@example.test not delivered (attempt 2 of 3): ConnectionResetError; "
        "retrying in 0.1 s",
        "mail to a***@example.test delivered (attempt 3)",
    ]


async def test_permanent_failure_is_not_retried(caplog: pytest.LogCaptureFixture) -> None:
    script = Script(DeliveryError("recipient refused [550]", permanent=True))
    mailer = BackgroundMailer(script, mail_from=SENDER, attempts=5, first_delay=0.01)
    with caplog.at_level(logging.INFO, logger="bastion.mail"):
        await mailer.send("ada@example.test", "Reset", TEXT)
        await settle(mailer)
    assert len(script.calls) == 1
    assert [r.getMessage() for r in caplog.records] == [
        "mail to a***@example.test not delivered (permanent failure): recipient refused [550]"
    ]


async def test_gives_up_after_the_last_attempt(caplog: pytest.LogCaptureFixture) -> None:
    script = Script(*[DeliveryError("TimeoutError", permanent=False)] * 3)
    mailer = BackgroundMailer(script, mail_from=SENDER, attempts=2, first_delay=0.01)
    with caplog.at_level(logging.ERROR, logger="bastion.mail"):
        await mailer.send("ada@example.test", "Reset", TEXT)
        await settle(mailer)
    assert len(script.calls) == 2
    assert [r.getMessage() for r in caplog.records] == [
        "mail to a***@example.test not delivered (2 attempts): TimeoutError"
    ]


async def test_backlog_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    """A flood of reset requests against a dead relay cannot grow memory without bound."""
    gate = asyncio.Event()
    script = Script(block=gate)
    mailer = BackgroundMailer(script, mail_from=SENDER, max_pending=3)
    with caplog.at_level(logging.ERROR, logger="bastion.mail"):
        for i in range(5):
            await mailer.send(f"user{i}@example.test", "Reset", TEXT)
    assert mailer.pending == 3
    assert [r.getMessage() for r in caplog.records] == [
        "mail to u***@example.test dropped: 3 messages already waiting"
    ] * 2
    gate.set()
    await settle(mailer)
    assert len(script.delivered) == 3


async def test_header_injection_is_logged_and_never_sent(caplog: pytest.LogCaptureFixture) -> None:
    script = Script()
    mailer = BackgroundMailer(script, mail_from=SENDER)
    with caplog.at_level(logging.ERROR, logger="bastion.mail"):
        await mailer.send("ada@example.test\r\nBcc: eve@evil.test", "Reset", TEXT)
    assert mailer.pending == 0 and script.calls == []
    assert caplog.records[0].getMessage() == "mail to a***@evil.test not sent: ValueError"


async def test_close_waits_for_queued_mail_then_gives_up(caplog: pytest.LogCaptureFixture) -> None:
    script = Script()
    mailer = BackgroundMailer(script, mail_from=SENDER, drain_seconds=2)
    await mailer.send("ada@example.test", "Reset", TEXT)
    await mailer.aclose()
    assert len(script.delivered) == 1

    stuck = BackgroundMailer(Script(block=asyncio.Event()), mail_from=SENDER, drain_seconds=0.05)
    await stuck.send("ada@example.test", "Reset", TEXT)
    with caplog.at_level(logging.ERROR, logger="bastion.mail"):
        await stuck.aclose()
    assert stuck.pending == 0
    assert caplog.records[-1].getMessage() == "1 mail(s) not delivered: the worker is stopping"


async def test_smtp_mailer_retries_a_real_server_until_it_accepts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The whole path: settings → make_mailer → thread → aiosmtpd answering 451, then 250."""
    with MailServer(tmp_path, security="starttls", fail_first=1) as server:
        settings = Settings(
            data_dir=tmp_path,
            mailer="smtp",
            smtp_host=server.host,
            smtp_port=server.port,
            smtp_ca_file=server.cert_path,
            mail_from=f"Bastion <{SENDER}>",
            smtp_attempts=3,
        )
        mailer = make_mailer(settings)
        assert isinstance(mailer, BackgroundMailer)
        mailer.first_delay = 0.05
        with caplog.at_level(logging.INFO, logger="bastion.mail"):
            await mailer.send("ada@example.test", "Reset your password", TEXT)
            await settle(mailer)
        (mail,) = server.messages
    assert server.handler.data_commands == 2
    assert mail["To"] == "ada@example.test" and TOKEN in mail.get_content()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "attempt 1 of 3): SMTPDataError 451" in logged and "delivered (attempt 2)" in logged
    assert TOKEN not in logged and "ada@example.test" not in logged


def test_outbox_is_the_default(tmp_path: Path) -> None:
    assert isinstance(make_mailer(Settings(data_dir=tmp_path)), OutboxMailer)
