"""Target-supplied text on its way out: visible escapes for terminals and HTML, stripped for
SARIF messages, escaped in JSON bytes without changing the decoded values."""

from __future__ import annotations

import json

import pytest

from bastion.scanner.safe_text import dumps, strip_controls, visible

OSC52 = "\x1b]52;c;ZWNobw==\x07"


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (OSC52, "\\x1b]52;c;ZWNobw==\\x07"),
        ("\x1b[2J\x1b[H", "\\x1b[2J\\x1b[H"),
        ("a\rb\x00c\x7fd", "a\\x0db\\x00c\\x7fd"),
        ("\x9b2J \x9d8;;x", "\\x9b2J \\x9d8;;x"),  # C1 CSI and OSC
        ("admin\u202etxt.exe", "admin\\u202etxt.exe"),  # a bidi override (CVE-2021-42574)
        ("line\u2028break\ufeff", "line\\u2028break\\ufeff"),
        ("tab\tand\nnewline", "tab\tand\nnewline"),  # our own layout is kept
        ("café ✓ 日本", "café ✓ 日本"),  # printable Unicode is kept
    ],
)
def test_visible_shows_control_characters_as_escapes(raw: str, shown: str) -> None:
    assert visible(raw) == shown


def test_one_line_fields_escape_line_breaks_too() -> None:
    assert visible("a\nb\tc", one_line=True) == "a\\x0ab\\x09c"


def test_sarif_messages_lose_control_characters_but_keep_lines() -> None:
    assert strip_controls(f"reason {OSC52} phrase\nsecond line") == (
        "reason ]52;c;ZWNobw== phrase\nsecond line"
    )


def test_json_bytes_hold_no_raw_control_character_and_decode_unchanged() -> None:
    value = {"evidence": f"{OSC52} \x9b2J \u202e \x7f café", "n": 1}
    text = dumps(value)
    assert json.loads(text) == value
    for char in ("\x1b", "\x07", "\x9b", "\u202e", "\x7f"):
        assert char not in text
    assert "café" in text  # ensure_ascii stays off for printable text
