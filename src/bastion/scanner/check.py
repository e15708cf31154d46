"""Declarative checks ("controls"): metadata plus one async probe.

A control is data first: a stable id (``cors.origin-reflection``), a title, a category from
the contract's list, a severity, references, a remediation, the most requests it may send and
whether it is *active* (only run with ``--active``). Its behaviour is a single
``async probe(ctx) -> Result``; the probe's docstring is the control's documentation.

Declare one with the :func:`check` decorator, which builds a :class:`Check` and registers it
(in :data:`bastion.scanner.registry.REGISTRY` unless given a registry: this module never
imports the registry, which subscribes to :data:`DECLARED` instead)::

    @check(
        id="headers.xcto",
        title="X-Content-Type-Options is nosniff",
        category="headers",
        severity="low",
        references=("https://developer.mozilla.org/...",),
        remediation="Send `X-Content-Type-Options: nosniff` on every response.",
        max_requests=1,
    )
    async def xcto(ctx: ScanContext) -> Result:
        \"\"\"Browsers MIME-sniff bodies without it ...\"\"\"
        ex = await ctx.baseline()
        ...
        return Result.passed(ex.describe("X-Content-Type-Options"))
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from bastion.scanner.model import (
    CATEGORIES,
    GRADES,
    SEVERITIES,
    STATUSES,
    Category,
    Severity,
    Status,
)

if TYPE_CHECKING:
    from bastion.scanner.context import ScanContext

Probe = Callable[["ScanContext"], Awaitable["Result"]]

_ID_RE = re.compile(r"^[a-z0-9]+(?:[.-][a-z0-9]+)+$")


@dataclass(frozen=True)
class Result:
    """What a probe concluded: a status, the evidence it judged, and a one-line reason."""

    status: Status
    evidence: str = ""
    reason: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")

    @classmethod
    def passed(cls, evidence: str = "", reason: str = "") -> Result:
        return cls("pass", evidence, reason)

    @classmethod
    def failed(cls, evidence: str = "", reason: str = "") -> Result:
        return cls("fail", evidence, reason)

    @classmethod
    def warned(cls, evidence: str = "", reason: str = "") -> Result:
        return cls("warn", evidence, reason)

    @classmethod
    def skipped(cls, reason: str, evidence: str = "") -> Result:
        return cls("skip", evidence, reason)

    @classmethod
    def errored(cls, reason: str, evidence: str = "") -> Result:
        return cls("error", evidence, reason)


@dataclass(frozen=True)
class Check:
    """One control: metadata and its probe. Instances are immutable and registered once."""

    id: str
    title: str
    category: Category
    severity: Severity
    probe: Probe = field(repr=False, compare=False)
    remediation: str = ""
    references: tuple[str, ...] = ()
    max_requests: int = 1
    active: bool = False
    needs_token: bool = False
    # The best grade the target can get while this control fails (None: the severity's
    # default cap, see bastion.scanner.grading). E.g. an untrusted certificate caps at "C".
    cap: str | None = None

    def __post_init__(self) -> None:
        # Validation raises (never assert): a malformed control is a programming error that
        # must surface at import, not as a silently wrong report.
        if not _ID_RE.match(self.id):
            raise ValueError(f"check id {self.id!r} must be dotted lower-case words")
        if self.id.split(".", 1)[0] != self.category:
            raise ValueError(f"check id {self.id!r} must start with its category {self.category!r}")
        if self.category not in CATEGORIES:
            raise ValueError(f"check {self.id}: unknown category {self.category!r}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"check {self.id}: unknown severity {self.severity!r}")
        if self.max_requests < 0:
            raise ValueError(f"check {self.id}: max_requests must be >= 0")
        if self.cap is not None and self.cap not in GRADES:
            raise ValueError(f"check {self.id}: unknown cap grade {self.cap!r}")
        if not self.title or not self.references:
            raise ValueError(f"check {self.id}: a title and at least one reference are required")

    @property
    def doc(self) -> str:
        """The probe's docstring: what the control checks and why."""
        return (self.probe.__doc__ or "").strip()


class CheckSink(Protocol):
    """Where :func:`check` puts what it builds: a :class:`bastion.scanner.registry.Registry`."""

    def register(self, check: Check, /) -> Check: ...


class Declarations:
    """The checks :func:`check` built without an explicit registry, for the default one.

    :mod:`bastion.scanner.registry` subscribes its ``REGISTRY`` at import: checks declared
    before that are handed over then, in order; later ones at once (a duplicate id raises at
    its import, as usual).
    """

    def __init__(self) -> None:
        self._pending: list[Check] = []
        self._sink: CheckSink | None = None

    def add(self, built: Check) -> None:
        if self._sink is None:
            self._pending.append(built)
        else:
            self._sink.register(built)

    def subscribe(self, sink: CheckSink) -> None:
        self._sink = sink
        pending, self._pending = self._pending, []
        for built in pending:
            sink.register(built)


DECLARED = Declarations()


def check(
    *,
    id: str,  # the contract calls it "id"
    title: str,
    category: Category,
    severity: Severity,
    references: tuple[str, ...] | list[str],
    remediation: str = "",
    max_requests: int = 1,
    active: bool = False,
    needs_token: bool = False,
    cap: str | None = None,
    registry: CheckSink | None = None,
) -> Callable[[Probe], Check]:
    """Decorator: turn ``async def probe(ctx)`` into a registered :class:`Check`."""

    def decorate(probe: Probe) -> Check:
        built = Check(
            id=id,
            title=title,
            category=category,
            severity=severity,
            probe=probe,
            remediation=remediation,
            references=tuple(references),
            max_requests=max_requests,
            active=active,
            needs_token=needs_token,
            cap=cap,
        )
        if registry is not None:
            registry.register(built)
        else:
            DECLARED.add(built)
        return built

    return decorate
