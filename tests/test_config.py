"""Settings: the contract's defaults, env > bastion.toml, one readable line per bad value."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from bastion.config import load_settings
from bastion.errors import ConfigError
from bastion.ratelimit.policy import Rate


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("BASTION_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray bastion.toml


def test_defaults_are_the_contracts() -> None:
    s = load_settings()
    assert s.data_dir == Path(".bastion")
    assert (s.host, s.port, s.http_port) == ("127.0.0.1", 8443, 8080)
    assert s.api_limit == Rate(100, 900)
    assert (s.api_slowdown_after, s.api_slowdown_delay_ms) == (50, 200)
    assert s.auth_limit == Rate(5, 900)
    assert s.jwt_alg == "ES256"
    assert (s.issuer, s.audience) == ("https://localhost:8443", "bastion-api")
    assert s.cors_origins == ()
    assert s.trusted_proxies == ()
    assert s.redis_url is None
    assert s.expose_docs is False
    assert s.mailer == "outbox"
    assert s.database.startswith("sqlite+aiosqlite:///") and s.database.endswith("bastion.db")


def test_lists_are_comma_separated_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_CORS_ORIGINS", "https://a.example, https://b.example:8443")
    monkeypatch.setenv("BASTION_TRUSTED_PROXIES", "10.0.0.0/8, ::1")
    s = load_settings()
    assert s.cors_origins == ("https://a.example", "https://b.example:8443")
    assert s.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )


def test_environment_wins_over_toml_and_toml_over_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "bastion.toml").write_text('api_limit = "10/1m"\nauth_limit = "3/1h"\n')
    monkeypatch.setenv("BASTION_API_LIMIT", "20/1m")
    s = load_settings()
    assert s.api_limit == Rate(20, 60)
    assert s.auth_limit == Rate(3, 3600)


def test_explicit_flags_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_PORT", "9000")
    assert load_settings(port=9443).port == 9443
    assert load_settings(port=None).port == 9000


def test_oauth_clients_parse_from_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "BASTION_OAUTH_CLIENTS",
        '[{"client_id": "app", "redirect_uris": ["com.example.app:/cb"]}]',
    )
    (client,) = load_settings().oauth_clients
    assert client.client_id == "app"
    assert client.redirect_uris == ("com.example.app:/cb",)


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("BASTION_API_LIMIT", "lots", 'expected "<count>/<window>"'),
        ("BASTION_AUTH_LIMIT", "0/15m", "at least 1"),
        ("BASTION_JWT_ALG", "HS256", "'ES256', 'RS256' or 'EdDSA'"),
        ("BASTION_PORT", "70000", "less than or equal to 65535"),
        ("BASTION_TRUSTED_PROXIES", "10.0.0.0/8,proxy.local", "'proxy.local' is not an IP"),
        ("BASTION_OAUTH_CLIENTS", "[{", "not valid JSON"),
        ("BASTION_OAUTH_CLIENTS", '[{"client_id": "x"}]', "redirect_uris"),
        ("BASTION_EXPOSE_DOCS", "perhaps", "valid boolean"),
        ("BASTION_API_SLOWDOWN_DELAY_MS", "-1", "greater than or equal to 0"),
        ("BASTION_CORS_ORIGINS", "https://app.example.com,*", "'*' is not an exact origin"),
        ("BASTION_CORS_ORIGINS", "null", "'null' is not an exact origin"),
        ("BASTION_CORS_ORIGINS", "https://app.example.com/path", "is not an exact origin"),
    ],
)
def test_bad_values_name_the_variable_in_one_line(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith(variable)
    assert fragment in message
    assert "\n" not in message
    assert "Traceback" not in message


def test_unknown_toml_key_is_named(tmp_path: Path) -> None:
    (tmp_path / "bastion.toml").write_text("api_limt = '10/1m'\n")
    with pytest.raises(ConfigError, match=r"api_limt in bastion\.toml: unknown setting"):
        load_settings()


def test_malformed_toml_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "bastion.toml").write_text("api_limit = \n")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value).startswith("bastion.toml")
    assert "\n" not in str(info.value)


# --- signing keys shared by many hosts: where they live, the key-encryption key -------------

PG_URL = "postgresql+asyncpg://bastion@db.internal/bastion"
KEK = "BASTION_KEY_ENCRYPTION_KEY"


@pytest.mark.parametrize(
    ("env", "in_database"),
    [
        ({}, False),  # the SQLite default: one host, keys in the data dir
        ({"BASTION_DATABASE_URL": "sqlite+aiosqlite:////srv/bastion.db"}, False),
        ({"BASTION_DATABASE_URL": PG_URL}, True),
        ({"BASTION_DATABASE_URL": PG_URL, "BASTION_KEY_STORE": "data-dir"}, False),
        ({"BASTION_KEY_STORE": "database"}, True),
    ],
)
def test_where_the_signing_keys_live(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], in_database: bool
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert load_settings().keys_in_database is in_database


def test_the_key_encryption_key_comes_from_the_environment_or_a_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from bastion.auth.key_encryption import generate

    assert load_settings().key_encryption_key_text() is None
    key = generate()
    monkeypatch.setenv("BASTION_KEY_ENCRYPTION_KEY", key)
    settings = load_settings()
    assert settings.key_encryption_key_text() == key
    assert key not in repr(settings) and key not in str(settings.model_dump())
    monkeypatch.delenv("BASTION_KEY_ENCRYPTION_KEY")
    (tmp_path / "kek").write_text(key + "\n")  # as `bastion keys generate-kek > kek` writes it
    monkeypatch.setenv("BASTION_KEY_ENCRYPTION_KEY_FILE", str(tmp_path / "kek"))
    assert load_settings().key_encryption_key_text() == key


@pytest.mark.parametrize(
    ("env", "variable", "reason"),
    [
        ({KEK: "c2VjcmV0LXBhc3N3b3Jk"}, KEK, "decodes to 15 bytes"),
        ({KEK: "x" * 43}, KEK, "placeholder"),
        ({f"{KEK}_FILE": "missing"}, f"{KEK}_FILE", "cannot read missing: No such file"),
        ({"BASTION_KEY_STORE": "redis"}, "BASTION_KEY_STORE", "'auto', 'database' or 'data-dir'"),
    ],
)
def test_a_bad_key_setting_is_one_line_naming_it_and_never_quoting_the_key(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], variable: str, reason: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as refused:
        load_settings()
    message = str(refused.value)
    assert message.startswith(f"{variable} (or ")
    assert reason in message and "\n" not in message
    assert "c2VjcmV0" not in message and "xxxx" not in message


def test_a_key_given_twice_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from bastion.auth.key_encryption import generate

    (tmp_path / "kek").write_text(generate())
    monkeypatch.setenv("BASTION_KEY_ENCRYPTION_KEY", generate())
    monkeypatch.setenv("BASTION_KEY_ENCRYPTION_KEY_FILE", str(tmp_path / "kek"))
    with pytest.raises(ConfigError, match=r"^BASTION_KEY_ENCRYPTION_KEY_FILE .*not both"):
        load_settings()
