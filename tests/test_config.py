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


# --- database URL, data directory, mail, unknown variables (issue 15) --------------------------

SECRET = "pa55-w0rd-in-the-url"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (f"postgresql://app:{SECRET}@db/app", "postgresql:// is not an asyncio driver: use "),
        (f"postgres://app:{SECRET}@db/app", "postgres:// is not an asyncio driver"),
        (f"postgresql+psycopg://app:{SECRET}@db/app", "postgresql+psycopg:// is not an asyncio"),
        (f"postgresql+psycopg2://app:{SECRET}@db/app", "postgresql+psycopg2:// is not an asyncio"),
        ("sqlite:///bastion.db", "sqlite:// is not an asyncio driver: use sqlite+aiosqlite:///"),
        (f"mysql://app:{SECRET}@db/app", "mysql:// is not supported: use PostgreSQL"),
        (f"mysql+aiomysql://app:{SECRET}@db/app", "mysql+aiomysql:// is not supported"),
        (f"oracle+oracledb://app:{SECRET}@db/app", "is not supported"),
        (f"no scheme {SECRET}", "this URL is not supported"),
        (f"\x1b[31m://{SECRET}", "this URL is not supported"),
    ],
)
def test_database_url_needs_an_async_driver(
    monkeypatch: pytest.MonkeyPatch, url: str, message: str
) -> None:
    monkeypatch.setenv("BASTION_DATABASE_URL", url)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    text = str(caught.value)
    assert text.startswith("BASTION_DATABASE_URL (or database_url in bastion.toml): ")
    assert message in text
    assert SECRET not in text and "\x1b" not in text and "\n" not in text


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+asyncpg://app:pw@db.internal:5432/app",
        "POSTGRESQL+ASYNCPG://app@db/app",
        "sqlite+aiosqlite:///var/lib/bastion/bastion.db",
        "sqlite+aiosqlite://",
    ],
)
def test_supported_database_urls(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("BASTION_DATABASE_URL", url)
    assert load_settings().database == url


def test_data_dir_problems(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(ConfigError, match=r"^BASTION_DATA_DIR \(or data_dir in bastion.toml\)"):
        load_settings(data_dir=a_file)
    with pytest.raises(ConfigError, match=r"is a file, so .* cannot be created"):
        load_settings(data_dir=a_file / "deeper" / "still")
    assert load_settings(data_dir=tmp_path / "new" / "dir").data_dir == tmp_path / "new" / "dir"


SMTP = {"mailer": "smtp", "smtp_host": "mail.example.test", "mail_from": "no-reply@example.test"}


def test_smtp_settings(tmp_path: Path) -> None:
    s = load_settings(**SMTP)
    assert (s.smtp_security, s.smtp_effective_port, s.smtp_attempts) == ("starttls", 587, 5)
    assert load_settings(**SMTP, smtp_security="tls").smtp_effective_port == 465
    assert load_settings(**SMTP, smtp_security="none").smtp_effective_port == 25
    assert load_settings(**SMTP, smtp_port=2525).smtp_effective_port == 2525
    secret = tmp_path / "secret"
    secret.write_text("s3cret\nignored second line\n")
    with_file = load_settings(**SMTP, smtp_username="u", smtp_password_file=secret)
    assert with_file.smtp_secret() == "s3cret"
    assert load_settings(**SMTP, smtp_username="u", smtp_password="pw").smtp_secret() == "pw"
    assert "pw" not in repr(load_settings(**SMTP, smtp_username="u", smtp_password="pw"))


@pytest.mark.parametrize(
    ("options", "name", "message"),
    [
        ({"smtp_host": None}, "BASTION_SMTP_HOST", "required when BASTION_MAILER=smtp"),
        ({"mail_from": None}, "BASTION_MAIL_FROM", "required when BASTION_MAILER=smtp"),
        ({"mail_from": "not an address"}, "BASTION_MAIL_FROM", "must be an address"),
        ({"mail_from": "a@b.test, c@d.test"}, "BASTION_MAIL_FROM", "must be an address"),
        ({"mail_from": "a@b.test\r\nBcc: x@y.test"}, "BASTION_MAIL_FROM", "must be an address"),
        ({"smtp_host": "smtp://mail.example"}, "BASTION_SMTP_HOST", "pattern"),
        ({"smtp_security": "ssl"}, "BASTION_SMTP_SECURITY", "'starttls', 'tls' or 'none'"),
        ({"smtp_port": 0}, "BASTION_SMTP_PORT", "greater than or equal to 1"),
        ({"smtp_username": "u"}, "BASTION_SMTP_USERNAME", "give both a user name and a password"),
        ({"smtp_password": "p"}, "BASTION_SMTP_USERNAME", "give both a user name and a password"),
        (
            {"smtp_username": "u", "smtp_password": "p", "smtp_security": "none"},
            "BASTION_SMTP_SECURITY",
            "send the SMTP password in clear text",
        ),
        (
            {"smtp_username": "u", "smtp_password": "p", "smtp_password_file": "/etc/hostname"},
            "BASTION_SMTP_PASSWORD_FILE",
            "not both",
        ),
        (
            {"smtp_username": "u", "smtp_password_file": "/nonexistent/secret"},
            "BASTION_SMTP_PASSWORD_FILE",
            "cannot read /nonexistent/secret",
        ),
        ({"smtp_ca_file": "/nonexistent/ca.pem"}, "BASTION_SMTP_CA_FILE", "not a readable file"),
    ],
)
def test_bad_smtp_settings_are_one_line(
    options: dict[str, object], name: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            **{**SMTP, **options, "smtp_host": options.get("smtp_host", SMTP["smtp_host"])}
        )
    text = str(caught.value)
    assert text.startswith(name) and message in text and "\n" not in text, text


def test_empty_password_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("")
    with pytest.raises(ConfigError, match=r"BASTION_SMTP_PASSWORD_FILE.*the file is empty"):
        load_settings(**SMTP, smtp_username="u", smtp_password_file=empty)


def test_unknown_variables() -> None:
    from bastion.config import unknown_variables

    environ = {
        "BASTION_CORS_ORIGIN": "x",
        "bastion_databse_url": "x",
        "BASTION_PORT": "1",  # a setting
        "bastion_port": "1",  # a setting, in lower case (read case-insensitively)
        "BASTION_SKIP_TIMING": "1",  # tools
        "BASTION_SLOW": "1",
        "BASTION_FUZZ_EXAMPLES": "1",
        "BASTION_CONFIG": "x",
        "BASTION_XYZZY": "1",
        "BASTION_EVIL\x1b[2J": "1",
        "PATH": "/bin",
    }
    assert unknown_variables(environ) == [
        "BASTION_CORS_ORIGIN is not a bastion setting and is ignored; "
        "did you mean BASTION_CORS_ORIGINS?",
        "'BASTION_EVIL\\x1b[2J' is not a bastion setting and is ignored",
        "BASTION_XYZZY is not a bastion setting and is ignored",
        "bastion_databse_url is not a bastion setting and is ignored; "
        "did you mean BASTION_DATABASE_URL?",
    ]


def test_every_setting_is_known() -> None:
    from bastion.config import Settings, unknown_variables

    every = {f"BASTION_{name.upper()}": "x" for name in Settings.model_fields}
    assert unknown_variables(every) == []
