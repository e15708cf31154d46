"""The database key store: one ring for every host, sealed private keys, attacked from the
database side (a dump, swapped rows, an injected key), rotation reaching a watching ring,
and the import of a one-host ring on the first start against the database."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bastion.auth.key_encryption import KeyEncryptionKey, generate
from bastion.auth.keys import DirectoryKeyStore, KeyRing, SigningKey
from bastion.auth.tokens import TokenIssuer, TokenVerifier
from bastion.config import Settings
from bastion.errors import ConfigError
from bastion.service import signing_keys
from bastion.service.signing_keys import DatabaseKeyStore, import_directory_ring
from tests.service.auth_db import postgres_database_sync
from tests.support import require_program, wait_until
from tests.support_keys import assert_no_key_in_clear

ISSUER, AUDIENCE = "https://api.example", "bastion-api"
KEK = KeyEncryptionKey.parse(generate())

Factory = Callable[..., KeyRing]


@pytest.fixture
def pg_url() -> Iterator[str]:
    with postgres_database_sync() as url:
        yield url


@pytest.fixture(params=["postgresql", "sqlite"])
def any_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
        return
    with postgres_database_sync() as url:
        yield url


@pytest.fixture
def rings() -> Iterator[Factory]:
    """``rings(url, kek=..., watch=..., poll_interval=..., **ring_options)``; all closed after."""
    opened: list[KeyRing] = []

    def open_ring(
        url: str,
        *,
        kek: KeyEncryptionKey = KEK,
        watch: bool = False,
        poll_interval: float = 2.0,
        fresh_timeout: float = 2.0,
        **options: Any,
    ) -> KeyRing:
        store = DatabaseKeyStore(
            url, kek, watch=watch, poll_interval=poll_interval, fresh_timeout=fresh_timeout
        )
        ring = KeyRing(store, rsa_bits=2048, **{"alg": "ES256", **options})
        opened.append(ring)
        return ring

    yield open_ring
    for ring in opened:
        ring.close()


def sql(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    """What an attacker with database access runs (plain asyncpg, none of bastion's code)."""

    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    return asyncio.run(go())


def assert_absent(haystack: bytes, keys: list[SigningKey]) -> None:
    assert_no_key_in_clear(haystack, [key.private_key for key in keys])


# --- one ring for every host ------------------------------------------------------------------


def test_two_hosts_share_one_signing_key_and_one_jwks(any_url: str, rings: Factory) -> None:
    host_a, host_b = rings(any_url), rings(any_url)
    key = host_a.ensure()
    assert host_b.ensure().kid == key.kid  # B found A's key: it did not make its own
    assert host_a.jwks() == host_b.jwks()
    token = TokenIssuer(host_a, issuer=ISSUER, audience=AUDIENCE).issue(uuid.uuid4(), "user")
    claims = TokenVerifier(host_b, issuer=ISSUER, audience=AUDIENCE).decode(token.token)
    assert claims["sub"]


def test_hosts_starting_together_create_exactly_one_key(any_url: str, rings: Factory) -> None:
    hosts = [rings(any_url) for _ in range(6)]
    hosts[0].store.read()  # the tables exist; the race is about the key
    barrier = threading.Barrier(len(hosts))
    kids: list[str] = []
    errors: list[BaseException] = []

    def start(ring: KeyRing) -> None:
        barrier.wait()
        try:
            kids.append(ring.ensure().kid)
        except BaseException as exc:  # pragma: no cover - shown by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(ring,)) for ring in hosts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(kids) == 6 and len(set(kids)) == 1
    snapshot = hosts[0].store.read()
    assert snapshot is not None and len(snapshot[1]) == 1


def test_a_rotation_reaches_a_watching_host_within_its_poll(pg_url: str, rings: Factory) -> None:
    rotator = rings(pg_url)
    old = rotator.ensure()
    watching = rings(pg_url, watch=True, poll_interval=0.2, reload_interval=0.05)
    assert watching.ensure().kid == old.kid
    old_token = TokenIssuer(watching, issuer=ISSUER, audience=AUDIENCE).issue(uuid.uuid4(), "x")
    new = rotator.rotate()
    started = time.monotonic()
    wait_until(lambda: watching.refresh() or watching.active.kid == new.kid, timeout=5)
    assert watching.active.kid == new.kid
    assert time.monotonic() - started < 2  # a 0.2 s poll: well within the 5 s promise
    verifier = TokenVerifier(watching, issuer=ISSUER, audience=AUDIENCE)
    verifier.decode(old_token.token)  # the retired key still verifies
    issued = TokenIssuer(watching, issuer=ISSUER, audience=AUDIENCE).issue(uuid.uuid4(), "x")
    assert issued.token.count(".") == 2 and watching.active.kid == new.kid
    assert watching.jwks() == rotator.jwks()
    assert [k["kid"] for k in watching.jwks()["keys"]] == [new.kid, old.kid]


def test_a_token_of_a_key_rotated_elsewhere_a_moment_ago_verifies_at_once(
    pg_url: str, rings: Factory
) -> None:
    # The watcher of this host polls only hourly: only the direct read after the miss can
    # find the key that host A rotated to and signed with a moment ago.
    host_a = rings(pg_url)
    host_a.ensure()
    host_b = rings(pg_url, watch=True, poll_interval=3600, reload_interval=3600)
    host_b.ensure()
    host_a.rotate()
    fresh = TokenIssuer(host_a, issuer=ISSUER, audience=AUDIENCE).issue(uuid.uuid4(), "user")
    verifier = TokenVerifier(host_b, issuer=ISSUER, audience=AUDIENCE)
    assert verifier.decode(fresh.token)["sub"]
    # Bounded: another unknown kid within the interval does not reach the database.
    newer = host_a.rotate()
    assert host_b.get(newer.kid) is None
    assert host_b.refresh() is False
    assert host_b.get(newer.kid) is None


def test_a_database_that_stops_answering_costs_a_request_at_most_the_fresh_bound(
    pg_url: str, rings: Factory
) -> None:
    # A server that accepts connections and never answers: the worst kind of outage.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    port = silent.getsockname()[1]
    try:
        ring = rings(
            f"postgresql+asyncpg://postgres@127.0.0.1:{port}/none",
            watch=True,
            poll_interval=0.1,
            fresh_timeout=0.3,
        )
        ring._missed = True  # an unknown kid was presented
        started = time.monotonic()
        assert ring.refresh() is False
        assert time.monotonic() - started < 1.0  # bounded by fresh_timeout, no more
        wait_until(lambda: ring.store._failing, timeout=15, what="the watcher to notice")  # type: ignore[attr-defined]
        for _ in range(3):  # while it is down, unknown kids cost nothing at all
            ring._missed, ring._next_fresh_check = True, 0.0
            started = time.monotonic()
            assert ring.refresh() is False
            assert time.monotonic() - started < 0.05
    finally:
        silent.close()


# --- at rest: what a dump of the database shows ------------------------------------------------


def test_no_private_key_in_clear_in_any_column(pg_url: str, rings: Factory) -> None:
    keys = []
    for alg in ("ES256", "RS256", "EdDSA"):
        ring = rings(pg_url, alg=alg)
        keys.append(ring.ensure())
        keys.append(ring.rotate())
    keys = [key for key in keys]  # every key ever made, retired ones included
    rows = sql(pg_url, "SELECT * FROM signing_keys")
    assert len(rows) == 6
    everything = b"".join(
        bytes(value) if isinstance(value, bytes | bytearray) else str(value).encode()
        for row in rows
        for value in row.values()
    )
    assert_absent(everything, keys)


def test_no_private_key_in_clear_in_a_pg_dump(pg_url: str, rings: Factory) -> None:
    pg_dump = require_program("pg_dump", "dumping the database as an attacker would")
    ring = rings(pg_url)
    keys = [ring.ensure(), ring.rotate()]
    name = pg_url.rsplit("/", 1)[1]
    dump = subprocess.run(
        [pg_dump, "-h", "127.0.0.1", "-U", "postgres", "--no-password", name],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    assert b"signing_keys" in dump and keys[0].kid.encode() in dump  # the rows are in it
    assert_absent(dump, keys)


# --- attacked from the database side -------------------------------------------------------------


def test_swapping_two_rows_sealed_keys_is_refused_not_used(
    pg_url: str, rings: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    running = rings(pg_url, reload_interval=0.0)
    old = running.ensure()
    new = running.rotate()
    # The attacker swaps the sealed keys (and bumps the version so every host reloads).
    sql(
        pg_url,
        "UPDATE signing_keys SET sealed_key = CASE kid WHEN $1 THEN "
        "(SELECT sealed_key FROM signing_keys WHERE kid = $2) ELSE "
        "(SELECT sealed_key FROM signing_keys WHERE kid = $1) END WHERE kid IN ($1, $2)",
        old.kid,
        new.kid,
    )
    sql(pg_url, "UPDATE signing_key_ring SET version = version + 1")
    with pytest.raises(ConfigError, match="fails authentication"):
        rings(pg_url).load()  # a host starting now refuses
    with caplog.at_level(logging.ERROR, logger="bastion.keys"):
        assert running.refresh() is False  # a running host keeps the keys it checked
    assert "fails authentication" in caplog.text
    assert running.active.kid == new.kid and running.get(old.kid) is not None


def test_a_key_injected_by_someone_without_the_key_encryption_key_is_refused(
    pg_url: str, rings: Factory
) -> None:
    # Write access to the database, no KEK: the attacker seals a key of their own with a
    # key of their own, copies the genuine kek_id, and makes it the signing key.
    ring = rings(pg_url)
    genuine = ring.ensure()
    theirs = ec.generate_private_key(ec.SECP256R1())
    from bastion.auth.keys import public_jwk, thumbprint

    kid = thumbprint(public_jwk(theirs.public_key()))
    der = theirs.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    forged = KeyEncryptionKey.parse(generate()).seal(der, kid=kid, alg="ES256")
    kek_id = sql(pg_url, "SELECT kek_id FROM signing_keys")[0]["kek_id"]
    sql(pg_url, "UPDATE signing_keys SET retired = 1")
    sql(
        pg_url,
        "INSERT INTO signing_keys VALUES ($1, 'ES256', $2, NULL, $3, $4)",
        kid,
        time.time(),
        kek_id,
        forged,
    )
    with pytest.raises(ConfigError, match=f"signing key {kid} in the database: fails auth"):
        rings(pg_url).load()
    assert genuine.kid != kid


def test_a_row_relabelled_with_another_algorithm_is_refused(pg_url: str, rings: Factory) -> None:
    rings(pg_url, alg="EdDSA").ensure()
    sql(pg_url, "UPDATE signing_keys SET alg = 'ES256'")
    with pytest.raises(ConfigError, match="fails authentication"):
        rings(pg_url, alg="ES256").load()


def test_another_key_encryption_key_is_named_and_changes_nothing(
    pg_url: str, rings: Factory
) -> None:
    first = rings(pg_url).ensure()
    other = KeyEncryptionKey.parse(generate())
    for action in ("load", "ensure", "rotate"):
        with pytest.raises(ConfigError) as refused:
            getattr(rings(pg_url, kek=other), action)()
        message = str(refused.value)
        assert message.startswith("BASTION_KEY_ENCRYPTION_KEY: is not the key that sealed")
        assert KEK.key_id in message and other.key_id in message
    assert [r["kid"] for r in sql(pg_url, "SELECT kid FROM signing_keys")] == [first.kid]


# --- the first start against the database: the one-host ring comes along ---------------------


def test_an_on_disk_ring_is_imported_and_its_tokens_stay_valid(
    pg_url: str, rings: Factory, tmp_path: Path
) -> None:
    directory = tmp_path / "keys"
    disk = KeyRing(directory, rsa_bits=2048)
    retired = disk.ensure()
    active = disk.rotate()
    out_before = TokenIssuer(disk, issuer=ISSUER, audience=AUDIENCE).issue(uuid.uuid4(), "user")
    ring = rings(pg_url)
    imported = import_directory_ring(ring, DirectoryKeyStore(directory))
    assert sorted(imported) == sorted([retired.kid, active.kid])
    assert ring.ensure().kid == active.kid  # the signing key stays the signing key
    assert ring.get(retired.kid) is not None
    verifier = TokenVerifier(ring, issuer=ISSUER, audience=AUDIENCE)
    assert verifier.decode(out_before.token)["sub"]
    # No key left in clear on this disk; the public facts kept as a record.
    assert not list(directory.glob("*.pem"))
    assert (directory / "ring.imported.json").exists() and not (directory / "ring.json").exists()
    assert import_directory_ring(ring, DirectoryKeyStore(directory)) == []  # once only


def test_a_second_hosts_disk_ring_is_imported_retired(
    pg_url: str, rings: Factory, tmp_path: Path
) -> None:
    first_disk, second_disk = KeyRing(tmp_path / "a", rsa_bits=2048), KeyRing(tmp_path / "b")
    first_key, second_key = first_disk.ensure(), second_disk.ensure()
    second_token = TokenIssuer(second_disk, issuer=ISSUER, audience=AUDIENCE).issue(
        uuid.uuid4(), "user"
    )
    ring = rings(pg_url)
    import_directory_ring(ring, DirectoryKeyStore(tmp_path / "a"))
    import_directory_ring(ring, DirectoryKeyStore(tmp_path / "b"))
    assert ring.ensure().kid == first_key.kid  # one signing key for the deployment
    second = ring.get(second_key.kid)
    assert second is not None and second.retired
    TokenVerifier(ring, issuer=ISSUER, audience=AUDIENCE).decode(second_token.token)


def test_expired_keys_of_an_on_disk_ring_are_not_imported(
    pg_url: str, rings: Factory, tmp_path: Path
) -> None:
    now = [1_800_000_000.0]
    disk = KeyRing(tmp_path / "keys", clock=lambda: now[0])
    old = disk.ensure()
    now[0] += 10
    disk.rotate()
    now[0] += 3600  # the retired key's tokens are long expired
    ring = rings(pg_url, clock=lambda: now[0])
    imported = import_directory_ring(ring, DirectoryKeyStore(tmp_path / "keys"))
    assert old.kid not in imported and len(imported) == 1


# --- wiring: which store the settings give ------------------------------------------------------


def test_a_database_ring_without_a_key_encryption_key_is_one_clear_error(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url="postgresql+asyncpg://u@db/x")
    with pytest.raises(ConfigError) as refused:
        signing_keys.key_ring(settings)
    assert str(refused.value).startswith("BASTION_KEY_ENCRYPTION_KEY: required")


def test_the_sqlite_default_keeps_the_ring_in_the_data_directory(tmp_path: Path) -> None:
    ring = signing_keys.key_ring(Settings(data_dir=tmp_path))
    assert isinstance(ring.store, DirectoryKeyStore) and ring.directory == tmp_path / "keys"


def test_prepare_imports_the_data_directory_ring_on_the_first_start(
    pg_url: str, tmp_path: Path
) -> None:
    signing_keys.prepare(Settings(data_dir=tmp_path)).close()  # a year on one host
    disk_kid = KeyRing(tmp_path / "keys").active.kid
    key = generate()
    many = Settings(data_dir=tmp_path, database_url=pg_url, key_encryption_key=key)
    ring = signing_keys.prepare(many)
    try:
        assert ring.directory is None and ring.active.kid == disk_kid
    finally:
        ring.close()
    assert not list((tmp_path / "keys").glob("*.pem"))
    other = Settings(data_dir=tmp_path, database_url=pg_url, key_encryption_key=generate())
    with pytest.raises(ConfigError, match=r"^BASTION_KEY_ENCRYPTION_KEY: is not the key"):
        signing_keys.prepare(other)


def test_the_documented_change_of_key_encryption_key(pg_url: str, rings: Factory) -> None:
    # README: stop every host, DELETE FROM signing_keys, start them with the new key.
    old = rings(pg_url).ensure()
    sql(pg_url, "DELETE FROM signing_keys")
    new_kek = KeyEncryptionKey.parse(generate())
    first, second = rings(pg_url, kek=new_kek), rings(pg_url, kek=new_kek)
    key = first.ensure()
    assert key.kid != old.kid and second.ensure().kid == key.kid
    assert {r["kek_id"] for r in sql(pg_url, "SELECT kek_id FROM signing_keys")} == {new_kek.key_id}
