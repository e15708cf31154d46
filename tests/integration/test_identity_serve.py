"""Issue 13 from the attacker's side, against a real `bastion serve` on SQLite and PostgreSQL.

* e-mail look-alikes (``ß``/``ss``, the Kelvin sign, ``ﬁ``) are other accounts: a reset asked
  for one mails nobody and resets nothing; mail goes to the address as stored;
* NUL and control characters are ``400`` in the contract's shape on every endpoint, never a
  500, and never logged;
* a planted second ``refresh_token`` cookie gets ``401`` and rotates nothing;
* logout, password reset and refresh-token reuse kill every earlier access token at once;
* a mail bomb gets 3 reset mails an hour;
* the data directory and everything in it are private, also when the directory pre-existed.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, start_server
from tests.service.auth_db import database_env, postgres_database_sync
from tests.support import wait_until
from tests.support_auth import GENEROUS_LIMITS, new_email, new_password

pytestmark = pytest.mark.integration

REGISTER, LOGIN = "/api/v1/auth/register", "/api/v1/auth/login"
REFRESH, LOGOUT = "/api/v1/auth/refresh", "/api/v1/auth/logout"
RESET, CONFIRM = "/api/v1/password-reset", "/api/v1/password-reset/confirm"


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    root = tmp_path_factory.mktemp(f"identity-{request.param}")
    if request.param == "sqlite":
        running = start_server(root, env=GENEROUS_LIMITS)
        try:
            yield running
        finally:
            running.stop()
        return
    with postgres_database_sync() as url:
        running = start_server(root, env={**GENEROUS_LIMITS, **database_env(url)})
        try:
            yield running
        finally:
            running.stop()


def register(client: httpx.Client, email: str, password: str | None = None) -> str:
    password = password or new_password()
    response = client.post(REGISTER, json={"email": email, "password": password})
    assert response.status_code == 202, response.text
    return password


def login(client: httpx.Client, email: str, password: str) -> httpx.Response:
    return client.post(LOGIN, json={"email": email, "password": password})


def mails(server: Server) -> list[dict[str, str]]:
    outbox = server.data_dir / "outbox.jsonl"
    if not outbox.exists():
        return []
    return [json.loads(line) for line in outbox.read_text().splitlines()]


def mails_to(server: Server, address: str) -> list[dict[str, str]]:
    return [mail for mail in mails(server) if mail["to"] == address]


def reset_token(mail: dict[str, str]) -> str:
    match = re.search(r"\?token=([A-Za-z0-9_-]{43})$", mail["text"], re.M)
    assert match is not None
    return match.group(1)


def marker_mail(server: Server, client: httpx.Client) -> None:
    """Ask a reset for a fresh account and wait for its mail: background work queued before
    it (the attacker's request) has run by then."""
    email = new_email()
    register(client, email)
    assert client.post(RESET, json={"email": email}).status_code == 202
    wait_until(lambda: mails_to(server, email), what="the marker's reset mail")


def refresh_cookie(response: httpx.Response) -> str:
    (header,) = [v for v in response.headers.get_list("set-cookie") if "refresh_token=" in v]
    jar: SimpleCookie = SimpleCookie()
    jar.load(header)
    return jar["refresh_token"].value


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- canonical emails -----------------------------------------------------------------------

LOOKALIKES: list[tuple[Callable[[str], str], Callable[[str], str]]] = [
    (lambda tag: f"owner-{tag}@straße.test", lambda tag: f"owner-{tag}@strasse.test"),
    (lambda tag: f"\u212aelvin-{tag}@example.test", lambda tag: f"kelvin-{tag}@example.test"),
    (lambda tag: f"\ufb01nance-{tag}@example.test", lambda tag: f"finance-{tag}@example.test"),
]


@pytest.mark.parametrize("victim_of,attacker_of", LOOKALIKES, ids=["eszett", "kelvin", "fi"])
def test_a_reset_for_a_folding_lookalike_mails_nobody_and_resets_nothing(
    server: Server, victim_of: Callable[[str], str], attacker_of: Callable[[str], str]
) -> None:
    tag = secrets.token_hex(4)
    victim, attacker = victim_of(tag), attacker_of(tag)
    with server.client() as client:
        password = register(client, victim)
        assert client.post(RESET, json={"email": attacker}).status_code == 202
        marker_mail(server, client)
        assert mails_to(server, attacker) == [] and mails_to(server, victim) == []
        assert login(client, attacker, password).status_code == 401  # not the same account
        # The look-alike is an account of its own; the victim's is untouched.
        other = register(client, attacker)
        assert login(client, attacker, other).status_code == 200
        assert login(client, victim, password).status_code == 200
        assert login(client, victim, other).status_code == 401


def test_mail_goes_to_the_stored_address_not_the_typed_one(server: Server) -> None:
    stored = f"Mixed-{secrets.token_hex(4)}@Example.TEST"
    with server.client() as client:
        register(client, f"  {stored} ")
        assert client.post(RESET, json={"email": stored.lower()}).status_code == 202
        wait_until(lambda: mails_to(server, stored), what="the reset mail")
        assert mails_to(server, stored.lower()) == []


# --- input hygiene --------------------------------------------------------------------------

CONTROLS = ["\x00", "\t", "\n", "\r", "\x1b", "\x01"]


@pytest.mark.parametrize("char", CONTROLS, ids=lambda c: f"U+{ord(c):04X}")
def test_control_characters_are_a_400_in_the_contract_shape(server: Server, char: str) -> None:
    email = new_email()
    password = new_password()
    hostile = email.replace("@", f"{char}@")
    cases: list[tuple[str, dict[str, Any], str]] = [
        (LOGIN, {"email": hostile, "password": password}, "email"),
        (REGISTER, {"email": hostile, "password": password}, "email"),
        (REGISTER, {"email": f"{char}{email}", "password": password}, "email"),
        (RESET, {"email": hostile}, "email"),
        (CONFIRM, {"token": f"{'a' * 42}{char}", "password": password}, "token"),
    ]
    if char == "\x00":  # in a password only NUL is refused
        cases += [
            (LOGIN, {"email": email, "password": password + char}, "password"),
            (REGISTER, {"email": email, "password": password + char}, "password"),
            (CONFIRM, {"token": "a" * 43, "password": password + char}, "password"),
        ]
    with server.client() as client:
        for path, body, field in cases:
            response = client.post(path, json=body)
            assert response.status_code == 400, (path, body, response.text)
            answer = response.json()
            assert answer["error"] == "Invalid request body" and field in answer["details"]
            assert answer["requestId"] == response.headers["x-request-id"]
    log = server.log()
    assert "parameters" not in log and email not in log


def test_a_password_may_hold_tabs_and_newlines(server: Server) -> None:
    email, password = new_email(), new_password() + "\t\n"
    with server.client() as client:
        register(client, email, password)
        assert login(client, email, password).status_code == 200


# --- cookies --------------------------------------------------------------------------------


def test_a_planted_second_refresh_cookie_is_refused_and_rotates_nothing(server: Server) -> None:
    with server.client() as client:
        victim, attacker = new_email(), new_email()
        victim_password = register(client, victim)
        attacker_password = register(client, attacker)
        theirs = refresh_cookie(login(client, victim, victim_password))
        planted = refresh_cookie(login(client, attacker, attacker_password))
        client.cookies.clear()
        for order in ((theirs, planted), (planted, theirs)):
            cookie = f"refresh_token={order[0]}; refresh_token={order[1]}"
            for path in (REFRESH, LOGOUT):
                response = client.post(path, headers={"Cookie": cookie})
                assert response.status_code == 401, (path, response.text)
                assert response.json()["error"] == "Invalid refresh token"
                assert "set-cookie" not in response.headers
        # Two Cookie header lines are the same attack.
        response = client.post(
            REFRESH,
            headers=[("Cookie", f"refresh_token={theirs}"), ("Cookie", f"refresh_token={planted}")],
        )
        assert response.status_code == 401
        # Nothing was rotated or revoked: each token alone still works once.
        for token in (theirs, planted):
            alone = client.post(REFRESH, headers={"Cookie": f"refresh_token={token}"})
            assert alone.status_code == 200, alone.text


# --- revocation (one host) ------------------------------------------------------------------


def me_status(client: httpx.Client, token: str) -> int:
    return client.get("/api/v1/me", headers=bearer(token)).status_code


def test_logout_kills_every_earlier_access_token_at_once(server: Server) -> None:
    with server.client() as client:
        email = new_email()
        password = register(client, email)
        first = login(client, email, password)
        second = login(client, email, password)  # another device
        tokens = [first.json()["access_token"], second.json()["access_token"]]
        assert [me_status(client, t) for t in tokens] == [200, 200]
        client.cookies.clear()
        out = client.post(LOGOUT, headers={"Cookie": f"refresh_token={refresh_cookie(first)}"})
        assert out.status_code == 204
        assert [me_status(client, t) for t in tokens] == [401, 401]
        # A login right after works at once (the service waits out the revoked second).
        again = login(client, email, password)
        assert me_status(client, again.json()["access_token"]) == 200
        assert client.get("/api/v1/orders", headers=bearer(tokens[1])).status_code == 401


def test_a_password_reset_kills_the_thiefs_access_token(server: Server) -> None:
    with server.client() as client:
        email = new_email()
        password = register(client, email)
        stolen = login(client, email, password).json()["access_token"]
        assert client.post(RESET, json={"email": email}).status_code == 202
        wait_until(lambda: mails_to(server, email), what="the reset mail")
        body = {"token": reset_token(mails_to(server, email)[0]), "password": new_password()}
        assert client.post(CONFIRM, json=body).status_code == 204
        assert me_status(client, stolen) == 401


def test_refresh_reuse_kills_the_access_tokens_of_both_parties(server: Server) -> None:
    with server.client() as client:
        email = new_email()
        password = register(client, email)
        first = login(client, email, password)
        stolen_refresh = refresh_cookie(first)
        client.cookies.clear()
        rotated = client.post(REFRESH, headers={"Cookie": f"refresh_token={stolen_refresh}"})
        assert rotated.status_code == 200
        thief_access = rotated.json()["access_token"]
        assert me_status(client, thief_access) == 200
        replay = client.post(REFRESH, headers={"Cookie": f"refresh_token={stolen_refresh}"})
        assert replay.status_code == 401
        assert me_status(client, thief_access) == 401
        assert me_status(client, first.json()["access_token"]) == 401


# --- reset budget ---------------------------------------------------------------------------


def test_a_reset_mail_bomb_gets_three_mails_an_hour(server: Server) -> None:
    email = new_email()
    with server.client() as client:
        register(client, email)
        answers = [client.post(RESET, json={"email": email}) for _ in range(8)]
        assert {(a.status_code, a.text) for a in answers} == {(202, '{"status":"accepted"}')}
        wait_until(
            lambda: server.log().count("hourly budget spent") >= 5, what="five refusals logged"
        )
    assert len(mails_to(server, email)) == 3
    assert email not in server.log()


# --- file permissions -----------------------------------------------------------------------


def test_a_pre_existing_world_readable_data_dir_is_made_private(tmp_path: Path) -> None:
    data = tmp_path / "state"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)  # noqa: S103 (the attack's precondition) systemd StateDirectory / a Docker volume: its mode is kept
    (data / "outbox.jsonl").write_text("")
    os.chmod(data / "outbox.jsonl", 0o644)
    (data / "tls").mkdir()
    os.chmod(data / "tls", 0o755)  # noqa: S103 (the attack's precondition)
    old_umask = os.umask(0o022)
    try:
        server = start_server(tmp_path, env=GENEROUS_LIMITS, data_dir=data)
    finally:
        os.umask(old_umask)
    try:
        with server.client() as client:
            email = new_email()
            register(client, email)  # the database, its WAL and its shared memory exist now
            assert client.post(RESET, json={"email": email}).status_code == 202
            wait_until(lambda: mails_to(server, email), what="a mail in the outbox")
        names = {p.name for p in data.rglob("*")}
        assert {"bastion.db", "bastion.db-wal", "bastion.db-shm", "outbox.jsonl"} <= names
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        wide = {
            str(p.relative_to(data)): oct(stat.S_IMODE(p.stat().st_mode))
            for p in data.rglob("*")
            if stat.S_IMODE(p.stat().st_mode) != (0o700 if p.is_dir() else 0o600)
        }
        assert wide == {}
        log = server.log()
        assert "permissions tightened" in log and "outbox.jsonl: 0644 -> 0600" in log
    finally:
        server.stop()


# --- ES256 malleability (done on main; checked here from outside) -----------------------------

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def test_the_high_s_twin_and_spare_bit_spellings_of_a_live_token_are_refused(
    server: Server,
) -> None:
    import base64

    with server.client() as client:
        email = new_email()
        password = register(client, email)
        token = login(client, email, password).json()["access_token"]
        assert me_status(client, token) == 200
        signing_input, _, sig = token.rpartition(".")
        raw = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
        assert int.from_bytes(raw[32:], "big") <= P256_ORDER // 2  # issued low-S
        high = raw[:32] + (P256_ORDER - int.from_bytes(raw[32:], "big")).to_bytes(32, "big")
        twin = base64.urlsafe_b64encode(high).rstrip(b"=").decode()
        assert me_status(client, f"{signing_input}.{twin}") == 401
        # The signature segment (64 bytes: 86 characters, 2 spare bits) spelled differently.
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        last = alphabet.index(sig[-1])
        for bits in (1, 2, 3):
            variant = sig[:-1] + alphabet[last | bits]
            if variant != sig:
                assert me_status(client, f"{signing_input}.{variant}") == 401
