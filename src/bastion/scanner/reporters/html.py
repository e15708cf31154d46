"""HTML report: one self-contained file (inline CSS, no scripts, no external assets).

A person should rather read this than the JSON: a grade badge, a summary per category, then
every control grouped by category (failures first) with its evidence folded in ``<details>``.
Everything that came from the target or the user is escaped (a hostile server controls the
evidence text, so the report must not become an XSS vector against whoever opens it), and its
control characters are shown as escapes (so ``cat report.html`` cannot drive a terminal either).
An incomplete scan and errored controls are announced under the grade.
"""

from __future__ import annotations

from html import escape

from bastion.scanner.model import Finding, Report
from bastion.scanner.reporters._common import (
    CATEGORY_LABELS,
    baseline_line,
    category_counts,
    coverage_line,
    deductions,
    errors_line,
    group_note,
    grouped,
    incomplete_line,
)
from bastion.scanner.safe_text import visible

GRADE_COLOURS = {"A": "#1a7f37", "B": "#7a8b00", "C": "#b35900", "D": "#c0392b", "F": "#8b0000"}

CSS = """
:root{--fail:#c0392b;--warn:#b7791f;--pass:#1a7f37;--skip:#6b7280;--error:#7c3aed;
--bg:#f6f7f9;--card:#fff;--ink:#1f2937;--muted:#6b7280;--line:#e5e7eb}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
background:var(--bg);color:var(--ink)}
main{max-width:1080px;margin:0 auto;padding:24px}
header.top{display:flex;gap:24px;align-items:center;background:var(--card);
border:1px solid var(--line);border-radius:12px;padding:20px 24px}
.badge{flex:none;width:112px;height:112px;border-radius:24px;color:#fff;display:flex;
flex-direction:column;align-items:center;justify-content:center;font-weight:700}
.badge .g{font-size:48px;line-height:1}.badge .s{font-size:14px;opacity:.9;margin-top:4px}
h1{font-size:20px;margin:0 0 4px;word-break:break-all}
.meta{color:var(--muted);font-size:13px}.caps{margin-top:8px;color:var(--fail)}
.counts{margin-top:8px;display:flex;gap:8px;flex-wrap:wrap}
.pill{display:inline-block;border-radius:999px;padding:1px 10px;font-size:12px;font-weight:600;
color:#fff;text-transform:uppercase;letter-spacing:.02em}
.pill.fail{background:var(--fail)}.pill.warn{background:var(--warn)}.pill.pass{background:var(--pass)}
.pill.skip{background:var(--skip)}.pill.error{background:var(--error)}
.sev{font-size:12px;font-weight:600;color:var(--muted);text-transform:uppercase}
.sev.critical,.sev.high{color:var(--fail)}.sev.medium{color:var(--warn)}
h2{font-size:17px;margin:28px 0 10px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:10px}
.cat{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:10px 12px;
text-decoration:none;color:inherit}
.cat b{display:block;font-size:14px}.cat .bar{display:flex;height:6px;border-radius:3px;
overflow:hidden;margin:8px 0 4px;background:var(--line)}
.bar span{display:block}.bar .fail{background:var(--fail)}.bar .warn{background:var(--warn)}
.bar .pass{background:var(--pass)}.bar .error{background:var(--error)}.bar .skip{background:#d1d5db}
.cat small{color:var(--muted)}
section.category{background:var(--card);border:1px solid var(--line);border-radius:12px;
margin:14px 0;padding:4px 16px 12px}
details{border-top:1px solid var(--line);padding:8px 0}
details:first-of-type{border-top:none}
summary{cursor:pointer;display:flex;gap:10px;align-items:baseline;list-style:none}
summary::-webkit-details-marker{display:none}
summary::before{content:"\\25B8";color:var(--muted);width:10px}
details[open] summary::before{content:"\\25BE"}
summary .title{flex:1}summary code{color:var(--muted);font-size:12px}
.reason{margin:6px 0 0 20px;color:var(--ink)}
.body{margin:8px 0 4px 20px}
pre{background:#0f172a;color:#e2e8f0;padding:10px 12px;border-radius:8px;overflow-x:auto;
font-size:12.5px;white-space:pre-wrap;word-break:break-all}
.fix{border-left:3px solid var(--pass);padding-left:10px;margin:8px 0}
table{border-collapse:collapse;width:100%;background:var(--card);border:1px solid var(--line);
border-radius:10px;overflow:hidden}
td,th{padding:6px 12px;border-bottom:1px solid var(--line);text-align:left;font-size:14px}
td.n{text-align:right;font-variant-numeric:tabular-nums;width:80px}
footer{color:var(--muted);font-size:12px;margin:24px 0}
.alert{margin-top:8px;color:var(--error);font-weight:600}
"""


def _e(value: object) -> str:
    return escape(visible(str(value)), quote=True)


def _badge(report: Report) -> str:
    colour = GRADE_COLOURS.get(report.grade[0], "#8b0000")
    return (
        f'<div class="badge" style="background:{colour}" role="img" '
        f'aria-label="Grade {_e(report.grade)}"><span class="g" id="grade">{_e(report.grade)}'
        f'</span><span class="s">{report.score}/100</span></div>'
    )


def _bar(counts: dict[str, int]) -> str:
    total = sum(counts.values()) or 1
    spans = "".join(
        f'<span class="{s}" style="width:{100 * counts[s] / total:.1f}%"></span>'
        for s in ("fail", "error", "warn", "pass", "skip")
        if counts[s]
    )
    return f'<div class="bar">{spans}</div>'


def _finding(f: Finding) -> str:
    open_attr = " open" if f.status == "fail" and f.severity in {"critical", "high"} else ""
    parts = [
        f'<details class="finding {f.status}" id="{_e(f.id)}"{open_attr}>',
        f'<summary><span class="pill {f.status}">{f.status}</span>'
        f'<span class="sev {f.severity}">{f.severity}</span>'
        f'<span class="title">{_e(f.title)}</span><code>{_e(f.id)}</code>'
        + (f'<span class="sev">&minus;{f.deduction}</span>' if f.deduction else "")
        + "</summary>",
    ]
    if f.reason:
        parts.append(f'<div class="reason">{_e(f.reason)}</div>')
    note = group_note(f)
    if note:
        parts.append(f'<div class="reason group">{_e(note)}</div>')
    body = []
    if f.evidence:
        body.append(f"<pre>{_e(f.evidence)}</pre>")
    if f.remediation and f.status in {"fail", "warn", "error"}:
        body.append(f'<div class="fix"><b>Fix:</b> {_e(f.remediation)}</div>')
    elif f.remediation:
        body.append(f'<div class="fix"><b>Expected:</b> {_e(f.remediation)}</div>')
    if f.references:
        links = ", ".join(
            f'<a href="{_e(ref)}" rel="noreferrer noopener">{_e(ref)}</a>'
            if ref.startswith(("https://", "http://"))
            else _e(ref)
            for ref in f.references
        )
        body.append(f'<div class="refs"><b>References:</b> {links}</div>')
    if body:
        parts.append(f'<div class="body">{"".join(body)}</div>')
    parts.append("</details>")
    return "".join(parts)


def _alerts(report: Report) -> str:
    lines = [
        line
        for line in (
            incomplete_line(report),
            errors_line(report),
            *(f"Warning: {w}" for w in report.warnings),
            baseline_line(report),
            coverage_line(report),
        )
        if line
    ]
    return "".join(f'<div class="meta alert" role="alert">{_e(line)}</div>' for line in lines)


def _caps_line(report: Report) -> str:
    if not report.caps:
        return ""
    shown = ", ".join(_e(cap) for cap in report.caps[:3])
    more = f" and {len(report.caps) - 3} more" if len(report.caps) > 3 else ""
    return f'<div class="meta caps">Grade capped: {shown}{more}</div>'


def _card(category: str, counts: dict[str, int]) -> str:
    skipped = f" · {counts['skip']} skipped" if counts["skip"] else ""
    errors = f" · {counts['error']} errors" if counts["error"] else ""
    return (
        f'<a class="cat" href="#cat-{category}"><b>{_e(CATEGORY_LABELS.get(category, category))}'
        f"</b>{_bar(counts)}<small>{counts['fail']} failed · {counts['warn']} warn · "
        f"{counts['pass']} passed{skipped}{errors}</small></a>"
    )


def render(report: Report) -> str:
    counts = report.counts()
    groups = grouped(report)
    summary_pills = " ".join(
        f'<span class="pill {s}">{counts[s]} {s}</span>'
        for s in ("fail", "warn", "pass", "skip", "error")
        if counts[s]
    )
    cards = "".join(_card(c, category_counts(fs)) for c, fs in groups)
    sections = "".join(
        f'<section class="category" id="cat-{c}"><h2>{_e(CATEGORY_LABELS.get(c, c))} '
        f'<code class="sev">{c}</code></h2>{"".join(_finding(f) for f in fs)}</section>'
        for c, fs in groups
    )
    rows = ['<tr><td class="n">100</td><td>start</td><td></td></tr>']
    rows += [
        f'<tr><td class="n">&minus;{f.deduction}</td><td><a href="#{_e(f.id)}">{_e(f.id)}</a>'
        f"</td><td>{f.status} ({f.severity})</td></tr>"
        for f in deductions(report)
    ]
    rows.append(f'<tr><th class="n">{report.score}</th><th>score</th><th></th></tr>')
    rows += [
        f'<tr><td class="n">cap</td><td colspan="2">{_e(cap)}</td></tr>' for cap in report.caps
    ]
    rows.append(
        f'<tr><th class="n">{_e(report.grade)}</th><th>grade</th>'
        "<th>MDN Observatory 5-point bands, then caps</th></tr>"
    )
    active = " · active probes on" if report.active else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="referrer" content="no-referrer">
<title>bastion scan: {_e(report.grade)} for {_e(report.target)}</title>
<style>{CSS}</style></head>
<body><main>
<header class="top">{_badge(report)}<div>
<h1>{_e(report.target)}</h1>
<div class="meta">Scanned {_e(report.started_at)} in {report.duration_s:.2f} s ·
{report.requests} requests{active} · bastion-scan {_e(report.scanner_version)}</div>
<div class="counts">{summary_pills}</div>{_caps_line(report)}{_alerts(report)}</div></header>
<h2>Categories</h2><div class="grid">{cards}</div>
<h2>Controls</h2>{sections}
<h2>How the grade was computed</h2>
<table>{"".join(rows)}</table>
<footer>Score: start at 100, deduct per failing control by severity (critical 40, high 20,
medium 10, low 5; a warning half), bands of 5 points as the MDN HTTP Observatory; a failing
critical control caps the grade at F, a failing high one at B.</footer>
</main></body></html>
"""
