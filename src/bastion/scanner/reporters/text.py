"""Text report: a rich table per category (failures first), the grade, and every deduction.

Everything quoted from the target goes through :func:`~bastion.scanner.safe_text.visible`
before it becomes a rich ``Text``: rich removes BEL and CR but passes ESC, so a reason phrase
or a certificate name could otherwise drive the terminal (OSC 52 clipboard writes, screen
clears, OSC 8 links). Only rich's own colour codes are ever written raw.
"""

from __future__ import annotations

import io

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from bastion.scanner.model import Finding, Report
from bastion.scanner.reporters._common import (
    CATEGORY_LABELS,
    baseline_line,
    coverage_line,
    deductions,
    errors_line,
    group_note,
    grouped,
    incomplete_line,
)
from bastion.scanner.safe_text import visible

STATUS_STYLE = {
    "fail": "bold red",
    "error": "magenta",
    "warn": "yellow",
    "skip": "dim",
    "pass": "green",
}
SEVERITY_STYLE = {
    "critical": "bold red",
    "high": "red",
    "medium": "yellow",
    "low": "cyan",
    "info": "dim",
}


def grade_style(grade: str) -> str:
    return {"A": "bold green", "B": "bold yellow", "C": "bold dark_orange"}.get(
        grade[0], "bold red"
    )


def judged(evidence: str) -> str:
    """``GET https://host/path -> 404 Not Found``: the first exchange an evidence text shows."""
    request = response = ""
    for line in evidence.splitlines():
        if not request and line.startswith("> "):
            request = line[2:].rsplit(" HTTP/", 1)[0]
        elif request and line.startswith("< ") and line[2:5].isdigit():
            response = line[2:]
            break
    if request and response:
        return f"{request} -> {response}"
    return evidence.splitlines()[0] if evidence else ""


def _detail(finding: Finding) -> str:
    detail = visible(finding.reason or judged(finding.evidence))
    note = group_note(finding)
    return f"{detail}\n({note})" if note else detail


def build(report: Report) -> Group:
    """The renderables of the report (the CLI prints them to a console)."""
    counts = report.counts()
    head = Text.assemble(
        ("Grade ", "bold"),
        (report.grade, grade_style(report.grade)),
        (f"   score {report.score}/100", "bold"),
        f"\n{visible(report.target, one_line=True)}\nstarted {report.started_at}, "
        f"{report.duration_s:.2f} s, "
        f"{report.requests} requests{', active probes on' if report.active else ''}\n",
        (f"{counts['fail']} failed", "red"),
        ", ",
        (f"{counts['warn']} warnings", "yellow"),
        ", ",
        (f"{counts['pass']} passed", "green"),
        f", {counts['skip']} skipped, ",
        (f"{counts['error']} errors", "magenta" if counts["error"] else ""),
    )
    for line, style in (
        (incomplete_line(report), "bold magenta"),
        (errors_line(report), "magenta"),
        *((f"warning: {w}", "yellow") for w in report.warnings),
        (baseline_line(report), "bold"),
        (coverage_line(report), ""),
    ):
        if line:
            head.append("\n" + visible(line), style=style)
    parts: list[object] = [Panel(head, title="bastion scan", expand=False)]
    for category, findings in grouped(report):
        table = Table(
            title=f"{CATEGORY_LABELS.get(category, category)} ({category})",
            title_justify="left",
            expand=True,
            show_lines=False,
        )
        table.add_column("status", no_wrap=True, width=6)
        table.add_column("severity", no_wrap=True, width=8)
        table.add_column("control", ratio=2)
        table.add_column("result", ratio=3)
        for f in findings:
            table.add_row(
                Text(f.status.upper(), style=STATUS_STYLE[f.status]),
                Text(f.severity, style=SEVERITY_STYLE[f.severity]),
                Text.assemble((f.title, "bold" if f.status == "fail" else ""), f"\n{f.id}"),
                Text(_detail(f)),
            )
        parts.append(table)
    problems = [f for f in report.findings if f.status in {"fail", "warn", "error"}]
    if problems:
        parts.append(Text("\nEvidence and remediation", style="bold underline"))
        order = {"fail": 0, "warn": 1, "error": 2}
        for f in sorted(problems, key=lambda x: (order[x.status], -x.deduction, x.id)):
            body = Text()
            if f.reason:
                body.append(visible(f.reason) + "\n", style="bold")
            if group_note(f):
                body.append(group_note(f) + "\n", style="italic")
            if f.evidence:
                body.append(visible(f.evidence) + "\n", style="dim")
            if f.remediation:
                body.append("Fix: ", style="bold green")
                body.append(f.remediation + "\n")
            if f.references:
                body.append("See: " + "  ".join(f.references), style="blue")
            parts.append(
                Panel(
                    body,
                    title=f"[{STATUS_STYLE[f.status]}]{f.status.upper()}[/] {escape(f.id)}",
                    title_align="left",
                )
            )
    parts.append(_deductions_table(report))
    return Group(*parts)  # type: ignore[arg-type]


def _deductions_table(report: Report) -> Table:
    table = Table(title="How the grade was computed", title_justify="left")
    table.add_column("points", justify="right", no_wrap=True)
    table.add_column("control")
    table.add_column("why")
    table.add_row("100", "start", "")
    for f in deductions(report):
        table.add_row(f"-{f.deduction}", f.id, f"{f.status} ({f.severity})")
    table.add_row(Text(str(report.score), style="bold"), Text("score", style="bold"), "")
    for cap in report.caps:
        table.add_row("cap", Text(visible(cap)), "a failing control caps the grade")
    table.add_row(
        Text(report.grade, style=grade_style(report.grade)),
        Text("grade", style="bold"),
        "MDN Observatory bands (5 points), then caps",
    )
    return table


def render(report: Report, *, color: bool = False, width: int = 120) -> str:
    """The report as text (no colour codes unless ``color``)."""
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=width,
        force_terminal=color,
        no_color=not color,
        color_system="standard" if color else None,
        highlight=False,
    )
    console.print(build(report))
    return buffer.getvalue()
