"""Settings: ``BASTION_*`` environment > ``bastion.toml`` > defaults.

Every value is validated when the settings are built. A bad value raises
:class:`~bastion.errors.ConfigError` whose message names the variable (and its
``bastion.toml`` key) and says what is wrong, so the command line can print one line
and exit instead of a traceback.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
from collections.abc import Mapping
from email.utils import getaddresses
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from bastion.errors import ConfigError
from bastion.ratelimit.policy import Rate

ENV_PREFIX = "BASTION_"
CONFIG_FILE_ENV = "BASTION_CONFIG"
DEFAULT_CONFIG_FILE = "bastion.toml"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class OAuthClient(BaseModel):
    """A public OAuth 2.0 client (a mobile or single-page app): no secret, exact redirect URIs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    client_id: str = Field(min_length=1, max_length=200)
    redirect_uris: tuple[str, ...] = Field(min_length=1)

    @field_validator("redirect_uris")
    @classmethod
    def _registrable(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # Exact-match rules of RFC 9700 §2.1 / RFC 8252 (bastion.oauth.clients): a bad URI
        # stops the start in one line instead of failing in a worker.
        from bastion.oauth.clients import check_redirect_uri

        return tuple(check_redirect_uri(uri) for uri in value)


def _split_csv(value: Any) -> Any:
    """Comma-separated environment values become lists; lists from TOML pass through."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


_POSTGRES_EXAMPLE = "postgresql+asyncpg://user:password@host:5432/dbname"
_SQLITE_EXAMPLE = "sqlite+aiosqlite:///path/to/bastion.db"


def _read_kek_file(path: Path) -> str:
    """The key-encryption key in *path* (surrounding white space ignored), checked."""
    from bastion.auth.key_encryption import KeyEncryptionKey

    try:
        text = path.read_text("ascii")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not ASCII text"
        raise ValueError(f"cannot read {path}: {reason}") from None
    KeyEncryptionKey.parse(text)
    return text.strip()


# An absolute http(s) URL without characters that could break out of a Link header.
_LINK_PATTERN = r"^https?://[^\s<>\"]+$"


class Settings(BaseSettings):
    """Every knob of ``bastion serve``, with the contract's defaults."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        frozen=True,
        validate_default=True,
    )

    # --- storage -------------------------------------------------------------------------
    data_dir: Path = Path(".bastion")
    database_url: str | None = None
    redis_url: str | None = None

    # --- network -------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(8443, ge=1, le=65535)
    http_port: int = Field(8080, ge=0, le=65535)  # 0 disables the redirect listener
    cert: Path | None = None
    key: Path | None = None
    insecure_http: bool = False
    workers: int = Field(1, ge=1, le=64)
    trusted_proxies: Annotated[tuple[IPNetwork, ...], NoDecode] = ()
    hsts_preload: bool = False
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Prometheus metrics on a listener of their own (bastion.service.metrics); off unless set.
    metrics_port: int | None = Field(None, ge=1, le=65535)
    metrics_host: str = Field("127.0.0.1", min_length=1)

    # --- CORS ----------------------------------------------------------------------------
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()

    # --- rate limits ---------------------------------------------------------------------
    api_limit: Annotated[Rate, NoDecode] = Rate(100, 900)
    api_slowdown_after: int = Field(50, ge=0)
    api_slowdown_delay_ms: int = Field(200, ge=0, le=60_000)
    auth_limit: Annotated[Rate, NoDecode] = Rate(5, 900)
    # what a rule does when its store is unreachable: "auto" = closed for auth, open for the rest
    ratelimit_store_failure: Literal["auto", "fail-open", "fail-closed"] = "auto"

    # --- tokens --------------------------------------------------------------------------
    jwt_alg: Literal["ES256", "RS256", "EdDSA"] = "ES256"
    issuer: str = Field("https://localhost:8443", min_length=1)
    audience: str = Field("bastion-api", min_length=1)
    access_token_ttl: int = Field(900, ge=60, le=86400)
    refresh_token_ttl: int = Field(7 * 86400, ge=300, le=90 * 86400)
    oauth_clients: Annotated[tuple[OAuthClient, ...], NoDecode] = ()

    # --- service -------------------------------------------------------------------------
    expose_docs: bool = False
    mailer: Literal["outbox", "smtp"] = "outbox"

    # --- mail: BASTION_MAILER=smtp (bastion.service.smtp; checked in _check_smtp) ----------
    smtp_host: str | None = Field(None, min_length=1, max_length=253, pattern=r"^[^\s/@]+$")
    smtp_port: int | None = Field(None, ge=1, le=65535)  # None: 587 starttls, 465 tls, 25 none
    # starttls: the upgrade is required (a server that does not offer it is refused, never a
    # silent plain-text fallback: STARTTLS stripping); tls: implicit TLS (RFC 8314 §3.3);
    # none: plain text, only without credentials (a local relay on the same host).
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_username: str | None = Field(None, min_length=1, max_length=256)
    smtp_password: SecretStr | None = None
    smtp_password_file: Path | None = None  # the password in a file (a container secret)
    smtp_ca_file: Path | None = None  # extra CA bundle for a private relay; system CAs otherwise
    smtp_timeout: float = Field(10.0, gt=0, le=300)  # seconds per SMTP network operation
    smtp_attempts: int = Field(
        5, ge=1, le=20
    )  # deliveries tried per mail (1 s, 2 s, 4 s ... apart)
    mail_from: str | None = Field(None, max_length=320)  # "Bastion <no-reply@example.com>"

    # --- API version lifecycle: RFC 9745 Deprecation, RFC 8594 Sunset (unset: not sent) -
    api_v1_deprecation: AwareDatetime | None = None
    api_v1_sunset: AwareDatetime | None = None
    api_v1_deprecation_link: str | None = Field(None, pattern=_LINK_PATTERN)
    api_v2_deprecation: AwareDatetime | None = None
    api_v2_sunset: AwareDatetime | None = None
    api_v2_deprecation_link: str | None = Field(None, pattern=_LINK_PATTERN)

    # --- transport limits (bastion serve; both listeners; per worker process) ------------
    # The request line and headers together, up to and including the blank line (431 beyond).
    max_header_bytes: int = Field(16 * 1024, ge=1024, le=1024 * 1024)
    max_header_fields: int = Field(100, ge=1, le=10_000)  # header fields in a head (431 beyond)
    max_uri_bytes: int = Field(8 * 1024, ge=256, le=1024 * 1024)  # request target (414 beyond)
    # Seconds. Head: from connecting (TLS handshake included) or from the previous response.
    header_timeout: float = Field(10.0, gt=0, le=3600)
    body_idle_timeout: float = Field(10.0, gt=0, le=3600)  # longest wait for the next body byte
    body_timeout: float = Field(60.0, gt=0, le=86400)  # the whole body, from the end of the head
    keepalive_timeout: float = Field(5.0, gt=0, le=3600)  # an idle kept-alive connection
    max_connections_per_client: int = Field(64, ge=1, le=1_000_000)  # per peer address
    max_connections: int = Field(4096, ge=1, le=1_000_000)  # per process

    @field_validator("max_uri_bytes")
    @classmethod
    def _uri_within_head(cls, value: int, info: ValidationInfo) -> int:
        head = info.data.get("max_header_bytes")
        if head is not None and value > head:
            raise ValueError(f"is larger than max_header_bytes ({head}): the URI is in the head")
        return value

    # --- signing keys shared by many hosts (README "Many hosts") ---------------------------
    # "auto": in the database when it is a server database (PostgreSQL: every host of the
    # deployment shares it), in the data directory with SQLite (one host). Keys kept in the
    # database are sealed with the key-encryption key, which every host must be given.
    key_store: Literal["auto", "database", "data-dir"] = "auto"
    key_encryption_key: SecretStr | None = None
    key_encryption_key_file: Path | None = None

    @field_validator("key_encryption_key")
    @classmethod
    def _check_kek(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            from bastion.auth.key_encryption import KeyEncryptionKey

            KeyEncryptionKey.parse(value.get_secret_value())  # ValueError never quotes it
        return value

    @field_validator("key_encryption_key_file")
    @classmethod
    def _check_kek_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return value
        if info.data.get("key_encryption_key") is not None:
            raise ValueError("give BASTION_KEY_ENCRYPTION_KEY or this file, not both")
        _read_kek_file(value)
        return value

    @property
    def keys_in_database(self) -> bool:
        """True when the signing keys are kept in the database (see ``key_store``)."""
        if self.key_store == "auto":
            return bool(self.database_url) and not self.database.startswith("sqlite")
        return self.key_store == "database"

    def key_encryption_key_text(self) -> str | None:
        """The key-encryption key as configured (the file is read again), or ``None``."""
        if self.key_encryption_key is not None:
            return self.key_encryption_key.get_secret_value()
        if self.key_encryption_key_file is not None:
            return _read_kek_file(self.key_encryption_key_file)
        return None

    @field_validator("api_v1_sunset", "api_v2_sunset")
    @classmethod
    def _sunset_after_deprecation(cls, value: Any, info: ValidationInfo) -> Any:
        # RFC 9745 §4: a resource should not be sunset before it is deprecated.
        field = str(info.field_name).replace("_sunset", "_deprecation")
        deprecation = info.data.get(field)
        if value is not None and deprecation is not None and value < deprecation:
            raise ValueError(f"is earlier than {field}")
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _parse_proxies(cls, value: Any) -> Any:
        items = _split_csv(value)
        if not isinstance(items, list | tuple):
            return items
        out = []
        for item in items:
            try:
                out.append(ipaddress.ip_network(str(item), strict=False))
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR network") from None
        return tuple(out)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _parse_origins(cls, value: Any) -> Any:
        items = _split_csv(value)
        if not isinstance(items, list | tuple):
            return items
        # Validate here, so a bad origin stops the start before anything is served.
        from bastion.middleware.cors import parse_origins

        try:
            parse_origins([str(item) for item in items], option="BASTION_CORS_ORIGINS")
        except ConfigError as exc:
            raise ValueError(exc.problem) from None
        return tuple(items)

    @field_validator("api_limit", "auth_limit", mode="before")
    @classmethod
    def _parse_rate(cls, value: Any) -> Any:
        return Rate.parse(value) if isinstance(value, str) else value

    @field_validator("oauth_clients", mode="before")
    @classmethod
    def _parse_clients(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value.strip():
                return ()
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not valid JSON ({exc.msg} at position {exc.pos})") from None
        return value

    @field_validator("oauth_clients")
    @classmethod
    def _unique_clients(cls, value: tuple[OAuthClient, ...]) -> tuple[OAuthClient, ...]:
        ids = [client.client_id for client in value]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"client_id {duplicates[0]!r} is registered twice")
        return value

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str | None) -> str | None:
        # The service speaks asyncio: a synchronous driver URL would fail in a worker with
        # "No module named 'psycopg2'". Never echo the URL: it may hold a password.
        if value is None or not value.strip():
            return None
        scheme = value.partition("://")[0].lower() if "://" in value else ""
        if scheme in SUPPORTED_DATABASE_SCHEMES:
            return value
        backend = scheme.partition("+")[0]
        if backend in ("postgresql", "postgres"):
            raise ValueError(f"{scheme}:// is not an asyncio driver: use {_POSTGRES_EXAMPLE}")
        if backend == "sqlite":
            raise ValueError(f"{scheme}:// is not an asyncio driver: use {_SQLITE_EXAMPLE}")
        plain = scheme.isascii() and scheme.replace("+", "").isalnum()
        shown = f"{scheme}://" if plain else "this URL"
        raise ValueError(
            f"{shown} is not supported: use PostgreSQL ({_POSTGRES_EXAMPLE}) "
            f"or SQLite ({_SQLITE_EXAMPLE})"
        )

    @model_validator(mode="after")
    def _metrics_apart(self) -> Settings:
        # Metrics never share the public port: they name routes and counts an attacker
        # should not read (the contract answers /metrics with 404 there).
        if self.metrics_port is not None and self.metrics_port in (self.port, self.http_port):
            raise ConfigError(
                setting_name("metrics_port"),
                f"{self.metrics_port} is a public port of the service: give another port",
            )
        return self

    @field_validator("data_dir")
    @classmethod
    def _usable_data_dir(cls, value: Path) -> Path:
        # Checked here so that a file in the way or a read-only directory is one line at start,
        # not a PermissionError / FileExistsError traceback from deep inside `bastion serve`.
        problem = data_dir_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("mail_from")
    @classmethod
    def _mail_from(cls, value: str | None) -> str | None:
        if value is None:
            return None
        addresses = getaddresses([value])
        controls = any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)
        if controls or len(addresses) != 1 or addresses[0][1].count("@") != 1:
            raise ValueError('must be an address, e.g. "Bastion <no-reply@example.com>"')
        return value

    @model_validator(mode="after")
    def _check_smtp(self) -> Settings:
        """The mail settings only make sense together; refuse a half-configured SMTP at start."""
        if self.mailer != "smtp":
            return self
        if not self.smtp_host:
            raise ConfigError(setting_name("smtp_host"), "required when BASTION_MAILER=smtp")
        if not self.mail_from:
            raise ConfigError(setting_name("mail_from"), "required when BASTION_MAILER=smtp")
        if self.smtp_password is not None and self.smtp_password_file is not None:
            raise ConfigError(
                setting_name("smtp_password_file"), "give the password or a file, not both"
            )
        has_password = self.smtp_password is not None or self.smtp_password_file is not None
        if has_password != (self.smtp_username is not None):
            raise ConfigError(
                setting_name("smtp_username"), "give both a user name and a password, or neither"
            )
        if self.smtp_username is not None and self.smtp_security == "none":
            raise ConfigError(
                setting_name("smtp_security"),
                "none would send the SMTP password in clear text: use starttls or tls",
            )
        if self.smtp_password_file is not None:
            self.smtp_secret()  # unreadable or empty: one line now, not at the first mail
        for name in ("smtp_ca_file",):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ConfigError(setting_name(name), f"{path} is not a readable file")
        return self

    def smtp_secret(self) -> str | None:
        """The SMTP password, from BASTION_SMTP_PASSWORD or the first line of its _FILE."""
        if self.smtp_password is not None:
            return self.smtp_password.get_secret_value()
        if self.smtp_password_file is None:
            return None
        try:
            text = self.smtp_password_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise ConfigError(
                setting_name("smtp_password_file"),
                f"cannot read {self.smtp_password_file}: {reason}",
            ) from None
        secret = text.splitlines()[0] if text else ""
        if not secret:
            raise ConfigError(setting_name("smtp_password_file"), "the file is empty")
        return secret

    @property
    def smtp_effective_port(self) -> int:
        """The SMTP port, defaulting by security: 465 implicit TLS, 587 submission, 25 relay."""
        if self.smtp_port is not None:
            return self.smtp_port
        return {"tls": 465, "starttls": 587, "none": 25}[self.smtp_security]

    @property
    def database(self) -> str:
        """The database URL, defaulting to a SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'bastion.db').resolve()}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Explicit arguments (command-line flags) > environment > bastion.toml > defaults.
        toml_path = Path(os.environ.get(CONFIG_FILE_ENV, DEFAULT_CONFIG_FILE))
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_path))


# --- start-up checks shared by the settings and the command line ---------------------------

#: Database URL schemes the service can use (it runs on asyncio: async drivers only).
SUPPORTED_DATABASE_SCHEMES = ("postgresql+asyncpg", "sqlite+aiosqlite")

#: ``BASTION_*`` variables that are not settings but are read by the test suite, the
#: benchmarks or the loader itself: never reported as unknown.
TOOL_VARIABLES = frozenset(
    {
        CONFIG_FILE_ENV,  # which bastion.toml to read
        "BASTION_SKIP_TIMING",  # tests: skip statistical timing comparisons on a noisy machine
        "BASTION_SLOW",  # tests: run the slow variants
        "BASTION_FUZZ_EXAMPLES",  # tests: hypothesis examples per fuzz test (make fuzz)
        "BASTION_FUZZ_SHRINK",  # tests: let hypothesis shrink fuzz failures
        "BASTION_KEEP_SCREENSHOT",  # browser tests: keep the screenshots they take
    }
)


def setting_name(field: str) -> str:
    """How a setting is named in messages: the variable, then its bastion.toml key."""
    return f"{ENV_PREFIX}{field.upper()} (or {field} in {DEFAULT_CONFIG_FILE})"


def data_dir_problem(path: Path) -> str | None:
    """Why *path* cannot be (or become) bastion's data directory, or None when it can.

    The directory need not exist (``bastion serve`` creates it), but its nearest existing
    ancestor must be a directory this user may write into.
    """
    try:
        if path.exists() and not path.is_dir():
            return f"{path} is a file, not a directory: remove it or choose another directory"
        if path.is_dir():
            if not os.access(path, os.W_OK | os.X_OK):
                return (
                    f"{path} is not writable by this user (uid {os.getuid()}): "
                    "change its owner or permissions, or choose another directory"
                )
            return None
        parent = path.absolute().parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            return f"{parent} is a file, so {path} cannot be created: choose another directory"
        if not os.access(parent, os.W_OK | os.X_OK):
            return (
                f"{path} cannot be created: {parent} is not writable by this user "
                f"(uid {os.getuid()}); create it for this user or choose another directory"
            )
    except OSError as exc:  # e.g. a path component that is not searchable
        return f"{path} cannot be used: {exc.strerror or exc.__class__.__name__}"
    return None


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A warning for each ``BASTION_*`` variable that is not a setting, with the closest name.

    Settings are read case-insensitively (pydantic-settings' default), so names are compared
    upper-cased. A misspelt variable is otherwise silently ignored, while the same typo in
    bastion.toml stops the start.
    """
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields} | TOOL_VARIABLES
    suffixes = {name.removeprefix(ENV_PREFIX): name for name in known}
    warnings = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in known:
            continue
        shown = name if name.isprintable() and name.isascii() else ascii(name)
        match = difflib.get_close_matches(upper.removeprefix(ENV_PREFIX), suffixes, n=1)
        hint = f"; did you mean {suffixes[match[0]]}?" if match else ""
        warnings.append(f"{shown} is not a bastion setting and is ignored{hint}")
    return warnings


def _config_error(error: Any) -> ConfigError:
    """One readable ConfigError from the first pydantic error: the variable, then the reason."""
    loc = [str(part) for part in error.get("loc", ())] or ["settings"]
    field = loc[0]
    if error.get("type") == "extra_forbidden":
        return ConfigError(f"{field} in {DEFAULT_CONFIG_FILE}", "unknown setting")
    name = setting_name(field)
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    if len(loc) > 1:
        message = f"{'.'.join(loc[1:])}: {message}"
    return ConfigError(name, message)


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, raising :class:`ConfigError` with one readable line on a bad value.

    *overrides* are explicit values (command-line flags); ``None`` values are ignored.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        raise _config_error(exc.errors()[0]) from None
    except (OSError, ValueError) as exc:  # unreadable or malformed bastion.toml
        raise ConfigError(DEFAULT_CONFIG_FILE, str(exc).splitlines()[0]) from None
