"""Client registry: exact redirect URI matching (RFC 9700 §4.1.3) and safe registrations."""

from __future__ import annotations

import pytest

from bastion.config import OAuthClient
from bastion.errors import ConfigError
from bastion.oauth.clients import ClientRegistry, check_redirect_uri, form_action_source

REGISTERED = "https://app.example.com/callback"


@pytest.fixture
def registry() -> ClientRegistry:
    return ClientRegistry(
        [
            OAuthClient(client_id="mobile", redirect_uris=(REGISTERED, "com.example.app:/oauth")),
            OAuthClient(client_id="cli", redirect_uris=("http://127.0.0.1:53682/cb",)),
        ]
    )


def test_registered_uri_matches_exactly(registry: ClientRegistry) -> None:
    client = registry.get("mobile")
    assert client is not None
    assert client.allows(REGISTERED)
    assert client.allows("com.example.app:/oauth")


@pytest.mark.parametrize(
    "attempt",
    [
        REGISTERED + "/",  # suffix: trailing slash
        REGISTERED + "/../../evil",  # extra path (dot segments are not resolved)
        REGISTERED + "x",  # suffix
        REGISTERED + "?next=https://evil.example",  # added query: open redirect attempt
        REGISTERED + "#frag",
        REGISTERED[:-1],  # prefix
        "https://app.example.com/",  # prefix
        "http://app.example.com/callback",  # different scheme
        "HTTPS://app.example.com/callback",  # case of the scheme
        "https://APP.example.com/callback",  # case of the host
        "https://app.example.com:443/callback",  # explicit default port
        "https://app.example.com.evil.example/callback",  # host suffix
        "https://evil.example/callback",
        "https://app.example.com@evil.example/callback",  # userinfo trick
        "https://app.example.com%2F@evil.example/callback",
        "//app.example.com/callback",  # scheme-relative
        "https://app.example.com/Callback",  # path case
        "https://app.example.com/callback%2F",
        " https://app.example.com/callback",
        "https://app.example.com/callback\n",
        "com.example.app:/oauth/",
        "com.example.app://oauth",
    ],
)
def test_anything_but_the_exact_string_is_refused(registry: ClientRegistry, attempt: str) -> None:
    client = registry.get("mobile")
    assert client is not None
    assert not client.allows(attempt)


def test_loopback_port_is_part_of_the_match(registry: ClientRegistry) -> None:
    """RFC 8252 §7.3's any-port exception is deliberately not implemented."""
    client = registry.get("cli")
    assert client is not None
    assert client.allows("http://127.0.0.1:53682/cb")
    assert not client.allows("http://127.0.0.1:53683/cb")
    assert not client.allows("http://localhost:53682/cb")


def test_unknown_and_case_variant_client_ids(registry: ClientRegistry) -> None:
    assert registry.get("MOBILE") is None
    assert registry.get("mobile ") is None
    assert registry.get(None) is None
    assert len(registry) == 2


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example.com/cb",
        "https://app.example.com:8443/cb?tenant=1",
        "http://127.0.0.1:8000/cb",
        "http://[::1]:8000/cb",
        "http://127.0.0.2/cb",
        "com.example.app:/oauth2redirect",
        "com.example.app:/",
    ],
)
def test_registrable_uris(uri: str) -> None:
    assert check_redirect_uri(uri) == uri


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("http://app.example.com/cb", "plain http only for loopback"),
        ("http://localhost:8000/cb", "plain http only for loopback"),
        ("http://10.0.0.1/cb", "plain http only for loopback"),
        ("https://*.example.com/cb", "wildcards"),
        ("https://app.example.com/*", "wildcards"),
        ("https://app.example.com/cb#x", "fragment"),
        ("https://user@app.example.com/cb", "userinfo"),
        ("https:///cb", "needs a host"),
        ("https:app.example.com/cb", "needs a host"),
        ("https://app.example.com:99999/cb", "not a valid port"),
        ("https://app example.com/cb", "spaces and control characters"),
        ("https://app.example.com/cb\r\nX: y", "spaces and control characters"),
        ("javascript:alert(1)", "reverse domain name"),
        ("data:text/html,x", "reverse domain name"),
        ("file:///etc/passwd", "reverse domain name"),
        ("myapp:/cb", "reverse domain name"),
        ("com.example.app://host/cb", "one slash"),
        ("/relative/cb", "absolute URI"),
        ("HTTPS://app.example.com/cb", "lower-case scheme"),
        ("", "non-empty"),
        ("https://app.example.com/" + "a" * 2000, "longer than"),
    ],
)
def test_unsafe_registrations_are_refused(uri: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        check_redirect_uri(uri)


def test_registry_refuses_duplicates_and_bad_uris_at_construction() -> None:
    class Raw:
        def __init__(self, client_id: str, redirect_uris: tuple[str, ...]) -> None:
            self.client_id = client_id
            self.redirect_uris = redirect_uris

    with pytest.raises(ConfigError, match="registered twice"):
        ClientRegistry([Raw("a", (REGISTERED,)), Raw("a", (REGISTERED,))])
    with pytest.raises(ConfigError, match=r"oauth_clients\[0\].redirect_uris"):
        ClientRegistry([Raw("a", ("http://evil.example/cb",))])
    with pytest.raises(ConfigError, match="at least one"):
        ClientRegistry([Raw("a", ())])
    with pytest.raises(ConfigError, match="client_id"):
        ClientRegistry([Raw("a\nb", (REGISTERED,))])


def test_settings_refuse_unsafe_clients_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from bastion.config import load_settings

    monkeypatch.setenv(
        "BASTION_OAUTH_CLIENTS", '[{"client_id": "a", "redirect_uris": ["https://*.x.example/"]}]'
    )
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.name.startswith("BASTION_OAUTH_CLIENTS")
    assert "wildcards" in caught.value.problem
    monkeypatch.setenv(
        "BASTION_OAUTH_CLIENTS",
        '[{"client_id": "a", "redirect_uris": ["https://x.example/"]},'
        ' {"client_id": "a", "redirect_uris": ["https://y.example/"]}]',
    )
    with pytest.raises(ConfigError, match="registered twice"):
        load_settings()


@pytest.mark.parametrize(
    ("uri", "source"),
    [
        ("https://app.example.com/cb?x=1", "https://app.example.com"),
        ("https://app.example.com:8443/cb", "https://app.example.com:8443"),
        ("http://127.0.0.1:5000/cb", "http://127.0.0.1:5000"),
        ("http://[::1]:5000/cb", "http://[::1]:5000"),
        ("com.example.app:/oauth", "com.example.app:"),
    ],
)
def test_form_action_source(uri: str, source: str) -> None:
    assert form_action_source(uri) == source
