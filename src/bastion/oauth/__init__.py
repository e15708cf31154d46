"""OAuth 2.0 authorization code with PKCE for public (mobile) clients, framework-free.

:mod:`.pkce` (RFC 7636, S256 only), :mod:`.clients` (exact redirect URIs), :mod:`.codes`
(single-use, hashed, 60 s), :mod:`.sessions` (the browser session cookie), :mod:`.page`
(the login form, its CSP and CSRF defence) and :mod:`.server` (the rules of both endpoints).
Storage is behind two small protocols; the reference service implements them with
SQLAlchemy (:mod:`bastion.service.oauth_store`).
"""

from __future__ import annotations

from bastion.oauth.clients import Client, ClientRegistry, check_redirect_uri
from bastion.oauth.errors import OAuthError
from bastion.oauth.server import (
    AuthorizationRequest,
    AuthorizationServer,
    PageError,
    RedirectError,
    TokenResponse,
)

__all__ = [
    "AuthorizationRequest",
    "AuthorizationServer",
    "Client",
    "ClientRegistry",
    "OAuthError",
    "PageError",
    "RedirectError",
    "TokenResponse",
    "check_redirect_uri",
]
