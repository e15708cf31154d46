"""Mail delivery off the request path: a bounded set of background deliveries with retries.

``send()`` only schedules the delivery and returns, so a slow or unreachable mail server
never holds a request, a worker's connection or the reset endpoint's ``202``. Each message
is tried up to ``attempts`` times, ``first_delay`` × 2ⁿ seconds apart (capped at
``max_delay``), unless the failure is permanent (a 5xx reply, a refused certificate). At
most ``max_pending`` messages wait at once (a flood of reset requests cannot grow memory
without bound); past that a message is dropped and the drop logged. At most
``concurrency`` connections to the server are open at once.

Log lines (logger ``bastion.mail``) name the recipient masked (``a***@example.com``) and the
reason (an exception class, an SMTP code), never the message text: it holds a reset token.

The queue lives in one worker process: mail still queued when the worker stops is given
``drain_seconds`` (5 s) to go out; then connections in progress are cut (``abort``), so a
relay that went silent cannot hold the worker's exit, and what is left is logged as not
delivered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from email.message import EmailMessage

from bastion.service.smtp import DeliveryError, build_message

__all__ = ["BackgroundMailer", "mask_address"]

log = logging.getLogger("bastion.mail")

Deliver = Callable[[EmailMessage], Awaitable[None]]


def mask_address(address: str) -> str:
    """``ada@example.com`` → ``a***@example.com``: enough to tell mails apart in a log."""
    local, at, domain = address.strip().rpartition("@")
    if not at:
        return "***"
    shown = local[:1] if local[:1].isalnum() and local[:1].isascii() else ""
    return f"{shown}***@{domain.encode('unicode_escape').decode('ascii')}"  # no raw controls


class BackgroundMailer:
    """A :class:`~bastion.auth.reset.Mailer` whose ``send`` returns before delivery."""

    def __init__(
        self,
        deliver: Deliver,
        *,
        mail_from: str,
        attempts: int = 5,
        first_delay: float = 1.0,
        max_delay: float = 60.0,
        max_pending: int = 1000,
        concurrency: int = 4,
        drain_seconds: float = 5.0,
        abort: Callable[[], None] | None = None,
    ) -> None:
        if attempts < 1 or max_pending < 1 or concurrency < 1:
            raise ValueError("attempts, max_pending and concurrency must be at least 1")
        self._deliver = deliver
        self.mail_from = mail_from
        self.attempts = attempts
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.max_pending = max_pending
        self.drain_seconds = drain_seconds
        self._abort = abort
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        """Messages not yet delivered or given up."""
        return len(self._tasks)

    async def send(self, to: str, subject: str, text: str) -> None:
        """Schedule one message; never raises for a delivery problem (it is logged)."""
        if len(self._tasks) >= self.max_pending:
            log.error(
                "mail to %s dropped: %d messages already waiting", mask_address(to), self.pending
            )
            return
        try:
            message = build_message(self.mail_from, to, subject, text)
        except (ValueError, TypeError) as exc:  # e.g. CR/LF in an address: never sent
            log.error("mail to %s not sent: %s", mask_address(to), exc.__class__.__name__)
            return
        task = asyncio.get_running_loop().create_task(self._run(message, mask_address(to)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _delay(self, failures: int) -> float:
        return float(min(self.max_delay, self.first_delay * 2 ** (failures - 1)))

    async def _run(self, message: EmailMessage, masked: str) -> None:
        for attempt in range(1, self.attempts + 1):
            try:
                async with self._slots:
                    await self._deliver(message)
            except DeliveryError as exc:
                if exc.permanent or attempt == self.attempts:
                    kind = "permanent failure" if exc.permanent else f"{attempt} attempts"
                    log.error("mail to %s not delivered (%s): %s", masked, kind, exc.reason)
                    return
                delay = self._delay(attempt)
                log.warning(
                    "mail to %s not delivered (attempt %d of %d): %s; retrying in %g s",
                    masked,
                    attempt,
                    self.attempts,
                    exc.reason,
                    delay,
                )
                await asyncio.sleep(delay)
            except Exception as exc:  # a bug must not kill the task silently
                log.error("mail to %s not delivered: %s", masked, exc.__class__.__name__)
                return
            else:
                log.info("mail to %s delivered (attempt %d)", masked, attempt)
                return

    async def aclose(self) -> None:
        """Give queued mail ``drain_seconds``, then cancel what is left (logged)."""
        if not self._tasks:
            return
        _done, left = await asyncio.wait(set(self._tasks), timeout=self.drain_seconds)
        if left and self._abort is not None:
            self._abort()  # a thread cannot be cancelled: unblock it (a silent relay)
        for task in left:
            task.cancel()
        if left:
            await asyncio.wait(left)
            log.error("%d mail(s) not delivered: the worker is stopping", len(left))
