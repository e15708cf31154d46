"""Target-supplied text on its way out: escaped for terminals, stripped for SARIF, JSON kept clean.

A hostile target controls reason phrases, header values, bodies, cookie names and certificate
names. Printed raw, an ESC sequence in any of them drives the terminal that shows the report:
OSC 52 rewrites the clipboard, ``CSI 2J`` clears the screen, OSC 8 plants hyperlinks to another
site (CVE-2003-0063 class; rich strips BEL and CR, not ESC). C1 controls (U+0080..U+009F) are
8-bit forms of the same introducers, and bidirectional overrides reorder what a reader sees
(CVE-2021-42574). So every reporter passes quoted text through one of these functions:

* :func:`visible` for the text and HTML reports and stderr lines: each such character becomes a
  visible escape (``\\x1b``, ``\\u202e``), so the evidence still shows that it was there;
* :func:`strip_controls` for SARIF messages, which consumers render as plain text or Markdown;
* :func:`dumps` for JSON and SARIF files: standard JSON, with the characters ``json.dumps``
  leaves raw under ``ensure_ascii=False`` (DEL, C1, bidi, line separators) written as ``\\uXXXX``,
  so ``cat report.json`` is as safe as the text report while the decoded values are unchanged.
"""

from __future__ import annotations

import json
import re
from typing import Any

# C0 except TAB and LF (our own line structure), DEL, C1, bidi embeddings/overrides/isolates,
# the Unicode line and paragraph separators and the zero-width no-break space/BOM.
_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff]"
)
# Same set with TAB and LF too: for one-line fields.
_UNSAFE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff]")
# What json.dumps(ensure_ascii=False) leaves raw: it already escapes U+0000..U+001F.
_UNSAFE_JSON = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str, *, one_line: bool = False) -> str:
    """``text`` with every control character shown as an escape instead of acting."""
    return (_UNSAFE_LINE if one_line else _UNSAFE).sub(_escape, text)


def strip_controls(text: str) -> str:
    """``text`` without control characters (line breaks kept, so messages keep their lines)."""
    return _UNSAFE.sub("", text)


def dumps(value: Any) -> str:
    """Indented JSON with no raw control character in its bytes (see the module docstring)."""
    text = json.dumps(value, indent=2, ensure_ascii=False)
    return _UNSAFE_JSON.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text) + "\n"
