"""Masking: command-line secrets and secrets found on the target, masked before any cut, so no
fragment survives; the scanner's own words are left alone; no pattern backtracks (ReDoS)."""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import pytest

from bastion.scanner.evidence import Exchange
from bastion.scanner.redaction import REDACTED, Redactor, command_line_secrets

KEY = "k-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHI"  # 47 characters, as in the issue


def test_a_secret_cut_by_an_excerpt_leaves_nothing_behind() -> None:
    """The issue's leak: the excerpt was cut at 300 characters, then redacted; the key,
    straddling the cut, survived as a 46-character prefix."""
    assert len(KEY) == 47
    text = "x" * 254 + KEY + " and more"
    excerpt = Redactor([KEY]).excerpt(text, 300)
    assert excerpt == "x" * 254 + REDACTED + " and more"
    assert KEY[:8] not in excerpt


@pytest.mark.parametrize(
    "fragment",
    [KEY[:46], KEY[1:], KEY[10:18], f"…{KEY[20:]}", f"{KEY[:30]}…"],
    ids=["46-prefix", "suffix", "8-inside", "after-ellipsis", "before-ellipsis"],
)
def test_fragments_cut_elsewhere_are_masked(fragment: str) -> None:
    """A run of 8+ characters copied from a secret is masked wherever it is (the target may
    truncate its own echo)."""
    masked = Redactor([KEY]).text(f"Server: gateway {fragment} end")
    core = fragment.strip("…")
    assert core not in masked and REDACTED in masked
    assert masked.startswith("Server: gateway ") and masked.endswith(" end")


def test_short_runs_and_unrelated_text_are_kept() -> None:
    r = Redactor([KEY])
    assert r.text(f"abc {KEY[:7]} def") == f"abc {KEY[:7]} def"  # 7 characters: ordinary text
    assert r.text("nothing secret here") == "nothing secret here"


@pytest.mark.parametrize(
    "echo",
    [quote(KEY + "/+", safe=""), json.dumps(KEY + '"\\')[1:-1], "&lt;" + KEY + "&gt;"],
    ids=["percent-encoded", "json-escaped", "html-escaped"],
)
def test_encoded_echoes_are_masked(echo: str) -> None:
    secret = KEY + "/+" if "%" in echo else KEY + '"\\' if "\\" in echo else "<" + KEY + ">"
    assert secret[:20] not in Redactor([secret]).text(f"echo: {echo}")
    assert KEY[:8] not in Redactor([secret]).text(f"echo: {echo}")


def test_command_line_secrets_include_the_parts_an_echo_shows_alone() -> None:
    secrets = command_line_secrets(
        "tok.en.value",
        [
            ("Authorization", "Basic dXNlcjpwYXNzd29yZA=="),
            ("Cookie", "session=abc123; theme=dark"),
            ("Accept", "application/json"),
            ("X-Api-Key", KEY),
        ],
        url_password="hunter22",
    )
    assert {"tok.en.value", "hunter22", "dXNlcjpwYXNzd29yZA==", "abc123", KEY} <= set(secrets)
    assert "application/json" not in secrets  # not a credential: evidence stays readable


@pytest.mark.parametrize(
    ("found", "kept"),
    [
        ("DB_PASSWORD=hunter2", "DB_PASSWORD="),
        ('"client_secret": "abc123"', '"client_secret": "'),
        ("\\n  db_password: s3cret", "db_password: "),
        ("Server=db;Password=p4ss;", "Password="),
        ("//registry.npmjs.org/:_authToken=npm_abc", "_authToken="),
        ("postgres://app:s3cretpw@db:5432/x", "postgres://app:"),
        ("AKIAABCDEFGHIJKLMNOP", ""),
        ("ghp_" + "a" * 36, ""),
        (
            "-----BEGIN RSA PRIVATE KEY-----\\nMIIEow+/=\\n-----END",
            "-----BEGIN RSA PRIVATE KEY-----",
        ),
        ("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", ""),
    ],
)
def test_secrets_found_on_the_target_are_masked(found: str, kept: str) -> None:
    masked = Redactor().text(found)
    assert "<redacted" in masked
    assert kept in masked
    for secret in ("hunter2", "abc123", "s3cret", "p4ss", "npm_abc", "MIIEow", "AKIA", "ghp_"):
        assert secret not in masked


@pytest.mark.parametrize(
    "prose",
    [
        "needs a token: run with --token JWT",
        "the token in ?access_token= was accepted",
        "< access-control-allow-credentials: true",
        "> Authorization: Bearer <redacted>",
        "jwks_uri http://x is outside the scanned origin",
    ],
)
def test_the_scanners_own_words_are_left_alone(prose: str) -> None:
    assert Redactor(["unrelated-secret-value"]).text(prose) == prose


@pytest.mark.parametrize(
    "seed",
    ["eyJ", "a.", "token", "-----BEGIN ", "://", "password=", "ghp_", "\\n", "k-012345", '="'],
)
def test_no_pattern_backtracks_on_hostile_bodies(seed: str) -> None:
    """Each pattern runs on 256 KiB of target text: "eyJeyJeyJ..." used to take 32 s in the
    JWT pattern alone. A regression guard against quadratic matching, not a speed goal."""
    body = (seed * (262144 // len(seed) + 1))[:262144]
    started = time.process_time()
    Redactor([KEY]).text(body)
    assert time.process_time() - started < 5.0


def test_exchange_excerpts_are_cut_from_the_masked_body() -> None:
    import httpx

    body = ("y" * 290 + KEY + "z" * 40).encode()
    ex = Exchange(
        method="GET",
        url="https://api.test/",
        request_headers=(("X-Api-Key", KEY),),
        status=200,
        reason_phrase=f"OK {KEY}",
        http_version="HTTP/1.1",
        headers=httpx.Headers({"X-Echo": KEY[:46]}),
        body=body,
        elapsed_ms=1.0,
        redactor=Redactor([KEY]),
    )
    evidence = ex.describe(body=True)
    for i in range(len(KEY) - 7):
        assert KEY[i : i + 8] not in evidence
