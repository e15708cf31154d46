"""One deployment, many hosts: `bastion serve` processes with separate data dirs (separate
machines) sharing one PostgreSQL database and one Redis, as behind a load balancer.

The Redis is private to this module and configured as production would be: a password
(percent-encoded in the URL) and TLS (``rediss://``) when this redis-server build has it. Each
test speaks from its own loopback address (127.0.0.N), so each has its own rate-limit budget.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import quote

import asyncpg
import httpx
import pytest
import redis
from cryptography.hazmat.primitives import serialization
from redis.backoff import NoBackoff
from redis.retry import Retry

from bastion.auth.key_encryption import KeyEncryptionKey, generate
from tests.conftest import Server, start_server
from tests.ratelimit.decisions import hit
from tests.service.auth_db import postgres_database_sync
from tests.support import require_program, wait_until
from tests.support_auth import new_email, new_password
from tests.support_keys import assert_no_key_in_clear
from tests.support_redis import PrivateRedis, start_redis

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.redis]

REFRESH = "/api/v1/auth/refresh"
LOGIN = "/api/v1/auth/login"
ROTATION_PROMISE = 5.0  # seconds: every host signs with a new key within this
_addresses = itertools.count(2)


# --- the deployment --------------------------------------------------------------------------


@dataclass
class Deployment:
    env: dict[str, str]
    database_url: str
    kek: str
    redis: PrivateRedis
    hosts: list[Server]
    root: Path

    def start_host(self, name: str, **env: str) -> Server:
        return start_server(self.root / name, env={**self.env, **env}, wait=False)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("many-hosts")
    redis_server = start_redis(root / "redis")
    try:
        with postgres_database_sync() as url:
            kek = generate()
            env = {
                "BASTION_DATABASE_URL": url,
                "BASTION_KEY_ENCRYPTION_KEY": kek,
                "BASTION_REDIS_URL": redis_server.url,
                "BASTION_API_LIMIT": "1000000/15m",
                "BASTION_API_SLOWDOWN_AFTER": "1000000",
                "BASTION_AUTH_LIMIT": "5/15m",  # the contract's default, said out loud
            }
            first = Deployment(env, url, kek, redis_server, [], root)
            for name in ("host-a", "host-b"):
                (root / name).mkdir()
                first.hosts.append(first.start_host(name))
            try:
                for host in first.hosts:
                    wait_until(partial(healthy, host), timeout=60, what=f"host :{host.port}")
                yield first
            finally:
                for host in first.hosts:
                    host.stop()
    finally:
        redis_server.stop()


def healthy(server: Server) -> bool:
    if server.process.poll() is not None:
        pytest.fail(f"bastion serve exited with {server.process.returncode}:\n{server.log()}")
    if not server.cert_path.exists():
        return False
    response = httpx.get(f"{server.url}/healthz", verify=server.verify, timeout=2)
    return response.status_code == 200 and response.json() == {
        "status": "ok",
        "database": "ok",
        "ratelimit_store": "ok",
    }


@dataclass
class Caller:
    """One client (its own loopback address, so its own rate-limit budget) of every host."""

    address: str

    def of(self, server: Server) -> httpx.Client:
        transport = httpx.HTTPTransport(local_address=self.address, verify=server.verify)
        return httpx.Client(base_url=server.url, transport=transport, timeout=15)


@pytest.fixture
def caller() -> Caller:
    return Caller(f"127.0.0.{next(_addresses)}")


def account(caller: Caller, server: Server) -> dict[str, str]:
    body = {"email": new_email(), "password": new_password()}
    with caller.of(server) as client:
        assert client.post("/api/v1/auth/register", json=body).status_code == 202
    return body


def login(caller: Caller, server: Server, body: dict[str, str]) -> tuple[str, str]:
    """An access token and the refresh cookie's value, from *server*."""
    with caller.of(server) as client:
        response = client.post(LOGIN, json=body)
    assert response.status_code == 200, response.text
    return response.json()["access_token"], refresh_cookie(response)


def refresh_cookie(response: httpx.Response) -> str:
    (header,) = [v for v in response.headers.get_list("set-cookie") if "refresh_token=" in v]
    cookie: SimpleCookie = SimpleCookie()
    cookie.load(header)
    return cookie["refresh_token"].value


def me(caller: Caller, server: Server, token: str) -> httpx.Response:
    with caller.of(server) as client:
        return client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})


def kid_of(token: str) -> str:
    import jwt

    return str(jwt.get_unverified_header(token)["kid"])


def jwks(server: Server) -> bytes:
    with server.client() as client:
        response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    return response.content


# --- tokens --------------------------------------------------------------------------------------


def test_a_token_from_each_host_verifies_on_the_other(
    deployment: Deployment, caller: Caller
) -> None:
    a, b = deployment.hosts
    body = account(caller, a)
    token_a, _ = login(caller, a, body)
    token_b, _ = login(caller, b, body)
    assert kid_of(token_a) == kid_of(token_b)  # one signing key for the deployment
    for token in (token_a, token_b):
        for host in (a, b):
            answer = me(caller, host, token)
            assert answer.status_code == 200, answer.text
            assert answer.json()["email"] == body["email"]


def test_every_host_publishes_the_same_jwks(deployment: Deployment) -> None:
    a, b = deployment.hosts
    wait_until(lambda: jwks(a) == jwks(b), timeout=ROTATION_PROMISE, what="equal JWKS")
    keys = json.loads(jwks(a))["keys"]
    assert keys and all(set(k) >= {"kid", "alg", "use"} and "d" not in k for k in keys)


def test_a_rotation_through_one_host_is_used_and_accepted_everywhere_within_5s(
    deployment: Deployment, caller: Caller
) -> None:
    a, b = deployment.hosts
    body = account(caller, a)
    old_a, cookie_a = login(caller, a, body)
    old_b, cookie_b = login(caller, b, body)
    rotated = subprocess.run(
        [sys.executable, "-m", "bastion", "keys", "rotate"],
        env=a.env,  # host A's environment: its data dir, the deployment's database and key
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    done = time.monotonic()
    assert rotated.returncode == 0, rotated.stderr
    new_kid = rotated.stdout.split()[3]
    assert kid_of(old_a) != new_kid

    cookies = {a.port: cookie_a, b.port: cookie_b}

    def signs_with_new_key(host: Server) -> str | None:
        # A refresh, not a login: no argon2 in the loop, so the wait measures the rotation.
        with caller.of(host) as client:
            response = client.post(
                REFRESH, headers={"Cookie": f"refresh_token={cookies[host.port]}"}
            )
        assert response.status_code == 200, response.text
        cookies[host.port] = refresh_cookie(response)
        token = response.json()["access_token"]
        return token if kid_of(token) == new_kid else None

    new_a = wait_until(lambda: signs_with_new_key(a), timeout=ROTATION_PROMISE, what="A")
    new_b = wait_until(lambda: signs_with_new_key(b), timeout=ROTATION_PROMISE, what="B")
    assert time.monotonic() - done < ROTATION_PROMISE + 1  # both within the promise
    for host in (a, b):
        for token in (old_a, old_b, new_a, new_b):  # old tokens verify until they expire
            assert me(caller, host, str(token)).status_code == 200
    assert jwks(a) == jwks(b)
    kids = [k["kid"] for k in json.loads(jwks(a))["keys"]]
    assert kids[0] == new_kid and kid_of(old_a) in kids


# --- refresh tokens, reuse detection, logout ----------------------------------------------------


def test_refresh_rotation_and_reuse_detection_span_hosts(
    deployment: Deployment, caller: Caller
) -> None:
    a, b = deployment.hosts
    body = account(caller, a)
    _, first = login(caller, a, body)
    with caller.of(b) as client:
        rotated = client.post(REFRESH, headers={"Cookie": f"refresh_token={first}"})
    assert rotated.status_code == 200, rotated.text
    second = refresh_cookie(rotated)
    assert me(caller, a, rotated.json()["access_token"]).status_code == 200
    with caller.of(a) as client:  # the first token again, on the other host: reuse
        reused = client.post(REFRESH, headers={"Cookie": f"refresh_token={first}"})
    assert reused.status_code == 401
    assert reused.json()["error"] == "Invalid refresh token"
    with caller.of(b) as client:  # ... which revoked the whole family, the successor included
        family = client.post(REFRESH, headers={"Cookie": f"refresh_token={second}"})
    assert family.status_code == 401


def test_logout_on_one_host_ends_the_refresh_token_on_the_other(
    deployment: Deployment, caller: Caller
) -> None:
    a, b = deployment.hosts
    body = account(caller, a)
    _, cookie = login(caller, b, body)
    with caller.of(a) as client:
        out = client.post("/api/v1/auth/logout", headers={"Cookie": f"refresh_token={cookie}"})
    assert out.status_code == 204
    with caller.of(b) as client:
        after = client.post(REFRESH, headers={"Cookie": f"refresh_token={cookie}"})
    assert after.status_code == 401


# --- access-token revocation: one host revokes, every host refuses within 1 s ------------------

REVOCATION_PROMISE = 1.0  # seconds (the contract)


def refused_everywhere(caller: Caller, deployment: Deployment, tokens: list[str]) -> bool:
    return all(me(caller, h, t).status_code == 401 for h in deployment.hosts for t in tokens)


def revoked_within_promise(caller: Caller, deployment: Deployment, tokens: list[str]) -> float:
    """Seconds until every token is refused by every host (fails past the promise)."""
    start = time.monotonic()
    wait_until(
        lambda: refused_everywhere(caller, deployment, tokens),
        timeout=REVOCATION_PROMISE,
        interval=0.01,
        what="every host to refuse the revoked access tokens",
    )
    return time.monotonic() - start


def test_a_logout_on_one_host_kills_every_access_token_on_every_host(
    deployment: Deployment, caller: Caller
) -> None:
    a, b = deployment.hosts
    body = account(caller, a)
    token_a, cookie_a = login(caller, a, body)
    token_b, _ = login(caller, b, body)  # another device, through the other host
    assert [me(caller, h, t).status_code for h in (a, b) for t in (token_a, token_b)] == [200] * 4
    with caller.of(a) as client:
        out = client.post("/api/v1/auth/logout", headers={"Cookie": f"refresh_token={cookie_a}"})
    assert out.status_code == 204
    revoked_within_promise(caller, deployment, [token_a, token_b])
    fresh, _ = login(caller, b, body)  # a new login is not caught by the old revocation
    assert me(caller, a, fresh).status_code == 200


def test_refresh_reuse_on_one_host_kills_the_access_tokens_on_the_other(
    deployment: Deployment, caller: Caller
) -> None:
    a, b = deployment.hosts
    body = account(caller, a)
    victim_access, stolen = login(caller, a, body)
    with caller.of(b) as client:  # the thief rotates first, through host B
        thief = client.post(REFRESH, headers={"Cookie": f"refresh_token={stolen}"})
    assert thief.status_code == 200
    thief_access = thief.json()["access_token"]
    assert me(caller, a, thief_access).status_code == 200
    with caller.of(b) as client:  # the victim's copy comes back: reuse
        assert (
            client.post(REFRESH, headers={"Cookie": f"refresh_token={stolen}"}).status_code == 401
        )
    revoked_within_promise(caller, deployment, [victim_access, thief_access])


def test_a_password_reset_through_one_host_kills_the_tokens_on_the_other(
    deployment: Deployment, caller: Caller
) -> None:
    a, b = deployment.hosts
    body = account(caller, a)
    stolen, _ = login(caller, a, body)
    with caller.of(b) as client:
        assert (
            client.post("/api/v1/password-reset", json={"email": body["email"]}).status_code == 202
        )
    outbox = b.data_dir / "outbox.jsonl"

    def mail() -> str | None:
        if not outbox.exists():
            return None
        for line in outbox.read_text().splitlines():
            sent = json.loads(line)
            if sent["to"] == body["email"]:
                return str(sent["text"])
        return None

    text = wait_until(mail, what="the reset mail on host B")
    found = re.search(r"\?token=([A-Za-z0-9_-]{43})$", str(text), re.M)
    assert found is not None
    token = found.group(1)
    with caller.of(b) as client:
        confirm = {"token": token, "password": "another long passphrase for bastion"}
        assert client.post("/api/v1/password-reset/confirm", json=confirm).status_code == 204
    revoked_within_promise(caller, deployment, [stolen])


# --- rate limits through a password-protected TLS Redis ------------------------------------------


def test_the_auth_limit_stays_exact_across_hosts(deployment: Deployment, caller: Caller) -> None:
    a, b = deployment.hosts
    wrong = {"email": new_email(), "password": "not the password at all"}
    statuses = []
    for host in (a, b, a, b, a, b, a, b):
        with caller.of(host) as client:
            statuses.append(client.post(LOGIN, json=wrong).status_code)
    assert statuses == [401] * 5 + [429] * 3
    with caller.of(b) as client:  # spent everywhere, a correct password included
        body = account(Caller(f"127.0.0.{next(_addresses)}"), a)
        locked = client.post(LOGIN, json=body)
    assert locked.status_code == 429
    assert locked.json()["error"] == "Too many authentication attempts"


def test_the_redis_is_really_behind_a_password_and_tls(deployment: Deployment) -> None:
    # Guards the test itself: without the password (or without TLS) nothing gets in.
    if not deployment.redis.tls:
        pytest.skip("this redis-server was built without TLS (the limits ran on redis://)")
    bare = redis.Redis(
        port=deployment.redis.port,
        socket_timeout=2,
        ssl=True,
        ssl_ca_certs=str(deployment.redis.cert),
    )
    with pytest.raises(redis.AuthenticationError):
        bare.ping()
    with pytest.raises(redis.ConnectionError):
        no_retry = Retry(NoBackoff(), 0)
        redis.Redis(port=deployment.redis.port, socket_timeout=1, retry=no_retry).ping()
    assert deployment.env["BASTION_REDIS_URL"].startswith("rediss://:p%40ss%3Aw%2Frd%20")
    # One limited request: its rate-limit decision must be a command run by this Redis (the
    # second INFO call itself adds one command).
    admin = deployment.redis.client()
    before = int(admin.info("stats")["total_commands_processed"])
    with deployment.hosts[0].client() as client:
        assert client.get("/api/v1/me").status_code == 401
    assert int(admin.info("stats")["total_commands_processed"]) > before + 1


# --- the key-encryption key ----------------------------------------------------------------------


def refusal(deployment: Deployment, **env: str | None) -> str:
    """The output of a host started with *env* over the deployment's, which must exit 2."""
    name = f"host-refused-{secrets.token_hex(3)}"
    (deployment.root / name).mkdir()
    full = {**deployment.env, **env}
    server = start_server(
        deployment.root / name, env={k: v for k, v in full.items() if v is not None}, wait=False
    )
    try:
        assert server.process.wait(60) == 2, server.log()
    finally:
        server.stop()
    output = server.log().strip()
    assert len(output.splitlines()) == 1 and "Traceback" not in output, output
    return output


@pytest.mark.parametrize(
    ("kek", "message"),
    [
        (generate(), "BASTION_KEY_ENCRYPTION_KEY: is not the key that sealed the signing keys"),
        (None, "BASTION_KEY_ENCRYPTION_KEY: required"),
    ],
    ids=["another-key", "no-key"],
)
def test_a_host_with_a_wrong_or_missing_key_refuses_to_start_in_one_line(
    deployment: Deployment, kek: str | None, message: str
) -> None:
    output = refusal(deployment, BASTION_KEY_ENCRYPTION_KEY=kek)
    assert output.startswith(f"bastion: {message}"), output
    assert deployment.kek not in output


def test_a_host_with_a_wrong_redis_password_refuses_to_start_in_one_line(
    deployment: Deployment,
) -> None:
    right = quote(deployment.redis.password, safe="")
    url = deployment.env["BASTION_REDIS_URL"].replace(right, "not-the-password")
    output = refusal(deployment, BASTION_REDIS_URL=url)
    assert output.startswith("bastion: BASTION_REDIS_URL: Redis refused the credentials"), output
    assert "not-the-password" not in output


def test_no_private_key_in_clear_in_a_dump_of_the_database(deployment: Deployment) -> None:
    pg_dump = require_program("pg_dump", "dumping the database as an attacker would")
    dump = subprocess.run(
        [
            pg_dump,
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "--no-password",
            deployment.database_url.rsplit("/", 1)[1],
        ],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout

    # The operator can open them (so they are there, sealed); the dump shows none in clear.
    async def fetch() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(
            deployment.database_url.replace("postgresql+asyncpg", "postgresql")
        )
        try:
            return list(await conn.fetch("SELECT kid, alg, sealed_key FROM signing_keys"))
        finally:
            await conn.close()

    rows = asyncio.run(fetch())
    kek = KeyEncryptionKey.parse(deployment.kek)
    keys = [
        serialization.load_der_private_key(
            kek.open(row["sealed_key"], kid=row["kid"], alg=row["alg"]), password=None
        )
        for row in rows
    ]
    assert keys and all(row["kid"].encode() in dump for row in rows)  # the rows are in it
    assert_no_key_in_clear(dump, keys)  # type: ignore[arg-type]
    for host in deployment.hosts:  # and no host keeps one on its disk
        assert not list((host.data_dir / "keys").glob("*.pem"))


# --- migration: the first start against the database -------------------------------------------


def test_a_one_host_ring_is_imported_so_tokens_already_out_stay_valid(
    tmp_path: Path, caller: Caller
) -> None:
    with postgres_database_sync() as url:
        env = {
            "BASTION_DATABASE_URL": url,
            "BASTION_API_LIMIT": "1000000/15m",
            "BASTION_AUTH_LIMIT": "1000000/15m",
        }
        # Before: one host, keys on its disk (what every deployment had until now).
        before = start_server(tmp_path, env={**env, "BASTION_KEY_STORE": "data-dir"})
        try:
            body = account(caller, before)
            token, _ = login(caller, before, body)
        finally:
            before.stop()
        assert list((before.data_dir / "keys").glob("*.pem"))
        # After: the same host, keys in the database; and a second host.
        kek = generate()
        after = start_server(
            tmp_path, env={**env, "BASTION_KEY_ENCRYPTION_KEY": kek}, data_dir=before.data_dir
        )
        second = start_server(tmp_path, env={**env, "BASTION_KEY_ENCRYPTION_KEY": kek})
        try:
            for host in (after, second):
                assert me(caller, host, token).status_code == 200
                fresh, _ = login(caller, host, body)
                assert kid_of(fresh) == kid_of(token)  # the signing key stayed the signing key
            assert "imported 1 key(s)" in after.log()
        finally:
            after.stop()
            second.stop()
        assert not list((before.data_dir / "keys").glob("*.pem"))


# --- Redis Cluster: every decision stays in one hash slot ---------------------------------------


def test_every_rate_limit_decision_stays_in_one_hash_slot_on_a_cluster(tmp_path: Path) -> None:
    from bastion.ratelimit.policy import Rate
    from bastion.ratelimit.redis_store import SCRIPT, RedisStore

    node = PrivateRedis(tmp_path / "cluster", cluster=True)
    try:
        clients = ["auth:203.0.113.7", "api:2001:db8::/64", "auth:unknown", "api:{x}y{z}"]

        async def decide() -> list[list[bool]]:
            store = RedisStore(node.url)
            try:
                return [
                    [(await hit(store, client, Rate(5, 900))).allowed for _ in range(6)]
                    for client in clients
                ]
            finally:
                await store.aclose()

        assert asyncio.run(decide()) == [[True] * 5 + [False]] * len(clients)
        direct = node.client()
        keys = sorted(direct.keys("*"))
        assert len(keys) == len(clients)
        # Scripts declared with a shebang are held to cluster rules on any node: touching a
        # key outside the declared key's slot is an error. The rate-limit script passes ...
        strict = "#!lua\n" + SCRIPT
        for key in keys:
            assert direct.eval(strict, 1, key, 5, 900_000_000, "", "probe", "a")[0] == 0
        # ... where a script that strays does not (so this check can fail).
        stray = "#!lua\nreturn redis.call('ZCARD', 'bastion:rl:elsewhere')"
        with pytest.raises(redis.ResponseError, match="do not hash to the same slot"):
            direct.eval(stray, 1, keys[0])
    finally:
        node.stop()


def test_a_rediss_url_refuses_a_redis_whose_certificate_it_does_not_trust(
    deployment: Deployment,
) -> None:
    # An impostor on the Redis address (here: the real one, whose self-signed certificate
    # is not in the system's trust store) must not receive the password or the limits.
    from bastion.ratelimit.redis_store import RedisStore

    if not deployment.redis.tls:
        pytest.skip("this redis-server was built without TLS")
    trusted = deployment.redis.url
    untrusted = trusted.split("?", 1)[0]  # no ssl_ca_certs: the system's trust store only

    async def ping(url: str) -> bool:
        store = RedisStore(url)
        try:
            return await store.ping()
        finally:
            await store.aclose()
            # aclose() does not wait for a TLS close to finish (disconnect(nowait=True)): let
            # it finish before this loop ends, or the socket is left to the garbage collector.
            await asyncio.sleep(0.05)

    assert asyncio.run(ping(trusted)) is True
    assert asyncio.run(ping(untrusted)) is False
