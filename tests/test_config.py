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


# --- transport limits ------------------------------------------------------------------------
def test_transport_limits_default_to_the_contract() -> None:
    from bastion.server.limits import TransportLimits

    assert TransportLimits.from_settings(load_settings()) == TransportLimits(
        max_header_bytes=16384,
        max_header_fields=100,
        max_uri_bytes=8192,
        header_timeout=10.0,
        body_idle_timeout=10.0,
        body_timeout=60.0,
        keepalive_timeout=5.0,
        max_connections_per_client=64,
        max_connections=4096,
    )


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("BASTION_MAX_HEADER_BYTES", "100", "greater than or equal to 1024"),
        ("BASTION_HEADER_TIMEOUT", "0", "greater than 0"),
        ("BASTION_BODY_TIMEOUT", "soon", "valid number"),
        ("BASTION_MAX_CONNECTIONS", "0", "greater than or equal to 1"),
        ("BASTION_MAX_URI_BYTES", "20000", "larger than max_header_bytes"),
    ],
)
def test_bad_transport_limits_are_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert variable in str(error.value) and fragment in str(error.value)
    assert "\n" not in str(error.value)
