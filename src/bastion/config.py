"""Settings: ``BASTION_*`` environment > ``bastion.toml`` > defaults.

Every value is validated when the settings are built. A bad value raises
:class:`~bastion.errors.ConfigError` whose message names the variable (and its
``bastion.toml`` key) and says what is wrong, so the command line can print one line
and exit instead of a traceback.
"""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
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
    mailer: Literal["outbox"] = "outbox"

    # --- API version lifecycle: RFC 9745 Deprecation, RFC 8594 Sunset (unset: not sent) -
    api_v1_deprecation: AwareDatetime | None = None
    api_v1_sunset: AwareDatetime | None = None
    api_v1_deprecation_link: str | None = Field(None, pattern=_LINK_PATTERN)
    api_v2_deprecation: AwareDatetime | None = None
    api_v2_sunset: AwareDatetime | None = None
    api_v2_deprecation_link: str | None = Field(None, pattern=_LINK_PATTERN)

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


def _config_error(error: Any) -> ConfigError:
    """One readable ConfigError from the first pydantic error: the variable, then the reason."""
    loc = [str(part) for part in error.get("loc", ())] or ["settings"]
    field = loc[0]
    if error.get("type") == "extra_forbidden":
        return ConfigError(f"{field} in {DEFAULT_CONFIG_FILE}", "unknown setting")
    name = f"{ENV_PREFIX}{field.upper()} (or {field} in {DEFAULT_CONFIG_FILE})"
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
