"""Interactive API docs (Swagger UI) under a strict Content-Security-Policy.

Why a page of bastion's own: every response of the stack carries
``Content-Security-Policy: default-src 'none'; frame-ancestors 'none'``, which is right for
JSON and blocks everything a documentation page needs — FastAPI's ``/docs`` renders blank.
Loosening the policy for the whole API (or adding ``'unsafe-inline'``, which lets any
injected markup run script) would trade the docs for the API's protection. Instead this
layer serves one page, at one exact path, with a policy that allows exactly what Swagger UI
uses, and every other path keeps the strict one::

    default-src 'none'; script-src 'nonce-<fresh per response>'; style-src <assets>;
    img-src <assets> data:; connect-src 'self'; base-uri 'none'; form-action 'none';
    frame-ancestors 'none'

* scripts: the two ``<script>`` elements of the page (the bundle and the call that starts
  it) carry a nonce, 128 random bits new on every response (CSP3 §2.3.1 nonce-source); no
  other script can run, injected or not, and never ``'unsafe-inline'`` or ``'unsafe-eval'``.
* styles and images: the stylesheet and icons from where the assets are served (``'self'``
  for local files), plus ``data:`` images (Swagger UI's SVG icons are data URLs in its CSS).
* ``connect-src 'self'``: the page fetches the OpenAPI document and runs "Try it out"
  requests against this origin only.

Assets: by default the files of the ``swagger-ui-bundle-v2`` package (the ``bastion[docs]``
extra), served by this layer under ``<path>/`` — no CDN, works offline and behind a
firewall. ``assets_url="https://cdn.example/swagger-ui/5"`` serves them from elsewhere (the
policy then names that origin). The OpenAPI document itself is the app's (FastAPI's
``/openapi.json``, or any route that returns one).

Use: ``secure(app, docs=True)`` (FastAPI: build the app with ``docs_url=None`` so its CDN page
is not served), or ``secure(app, docs=SwaggerUI(path="/api/docs", openapi_url=...))``.
"""

from __future__ import annotations

import html
import json
import secrets
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bastion.asgi import ASGIApp, Receive, Scope, Send, send_error
from bastion.errors import ConfigError

__all__ = ["ASSET_FILES", "SwaggerUI", "SwaggerUIMiddleware", "local_assets"]

#: The files of Swagger UI's distribution the page uses, with their media types.
ASSET_FILES: dict[str, bytes] = {
    "swagger-ui-bundle.js": b"text/javascript; charset=utf-8",
    "swagger-ui.css": b"text/css; charset=utf-8",
    "favicon-32x32.png": b"image/png",
}
_READ = frozenset({"GET", "HEAD"})
_ALLOW = (b"allow", b"GET, HEAD")
_EXTRA = "pip install 'bastion[docs]'"

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css">
<link rel="icon" type="image/png" href="{assets}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script nonce="{nonce}" src="{assets}/swagger-ui-bundle.js"></script>
<script nonce="{nonce}">
window.ui = SwaggerUIBundle(Object.assign({config}, {{presets: [SwaggerUIBundle.presets.apis]}}));
</script>
</body>
</html>
"""


def local_assets() -> Path:
    """The directory of Swagger UI's files from the ``swagger-ui-bundle-v2`` package.

    Raises :class:`ConfigError` naming the extra when the package is not installed.
    """
    try:
        import swagger_ui_bundle
    except ImportError:
        raise ConfigError(
            "docs", f"local Swagger UI assets need the docs extra: {_EXTRA}"
        ) from None
    root = Path(str(getattr(swagger_ui_bundle, "swagger_ui_path", "")))
    if not all((root / name).is_file() for name in ASSET_FILES):
        # An unexpected layout (another package providing the module): say so, at start.
        found = resources.files("swagger_ui_bundle")
        raise ConfigError("docs", f"no Swagger UI distribution found in {found}; {_EXTRA}")
    return root


class SwaggerUI:
    """Where the docs page lives and what it shows; validated at construction."""

    def __init__(
        self,
        *,
        path: str = "/docs",
        openapi_url: str = "/openapi.json",
        title: str = "API documentation",
        assets_url: str | None = None,
    ) -> None:
        for option, value in (("path", path), ("openapi_url", openapi_url)):
            if (
                not isinstance(value, str)
                or not value.startswith("/")
                or value.startswith("//")
                or any(c in value for c in "?#\\\"'<> ")
                or (option == "path" and value != "/" and value.endswith("/"))
            ):
                raise ConfigError(f"SwaggerUI({option}=...)", f"{value!r} is not a plain path")
        if path == openapi_url:
            raise ConfigError("SwaggerUI(path=...)", "must differ from openapi_url")
        if not isinstance(title, str) or not title.isprintable():
            raise ConfigError("SwaggerUI(title=...)", "must be printable text")
        self.path = path
        self.openapi_url = openapi_url
        self.title = title
        if assets_url is None:
            self.asset_dir: Path | None = local_assets()
            self.assets_origin = "'self'"
        else:
            parts = urlsplit(assets_url) if isinstance(assets_url, str) else None
            if (
                parts is None
                or parts.scheme != "https"
                or not parts.hostname
                or parts.query
                or parts.fragment
                or any(c in assets_url for c in "\"'<> ;,")
            ):
                raise ConfigError(
                    "SwaggerUI(assets_url=...)", f"{assets_url!r} is not an https:// URL"
                )
            self.asset_dir = None
            self.assets_origin = f"{parts.scheme}://{parts.netloc}"
        self.assets_url = None if assets_url is None else assets_url.rstrip("/")
        self.asset_paths = (
            {f"{path.rstrip('/')}/{name}": name for name in ASSET_FILES}
            if self.asset_dir is not None
            else {}
        )

    def csp(self, nonce: str) -> str:
        """The page's policy: the module docstring's, with this response's nonce."""
        origin = self.assets_origin
        return (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src {origin}; "
            f"img-src {origin} data:; connect-src 'self'; base-uri 'none'; "
            "form-action 'none'; frame-ancestors 'none'"
        )

    def page(self, nonce: str, root_path: str = "") -> bytes:
        """The HTML page; every value placed in it is escaped for its context."""
        assets = self.assets_url or f"{root_path}{self.path.rstrip('/')}"
        config = {
            "url": f"{root_path}{self.openapi_url}",
            "dom_id": "#swagger-ui",
            "deepLinking": True,
            "layout": "BaseLayout",
        }
        # JSON inside <script>: "</" and "<!--" must not appear (HTML §4.12.1.3).
        config_js = json.dumps(config).replace("<", "\\u003c").replace(">", "\\u003e")
        return _PAGE.format(
            title=html.escape(self.title),
            assets=html.escape(assets, quote=True),
            nonce=nonce,
            config=config_js,
        ).encode("utf-8")


class SwaggerUIMiddleware:
    """Serve the docs page (and its local assets) at exact paths; pass everything else on."""

    def __init__(self, app: ASGIApp, *, docs: SwaggerUI) -> None:
        if not isinstance(docs, SwaggerUI):
            raise ConfigError("docs", "must be True, False or a SwaggerUI(...)")
        self.app = app
        self.docs = docs
        self._files: dict[str, tuple[bytes, bytes]] = {}  # path -> (body, media type), loaded once

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        docs = self.docs
        if path != docs.path and path not in docs.asset_paths:
            await self.app(scope, receive, send)
            return
        if scope["method"] not in _READ:
            await send_error(scope, send, 405, "Method not allowed", headers=[_ALLOW])
            return
        if path == docs.path:
            nonce = secrets.token_urlsafe(16)
            body = docs.page(nonce, scope.get("root_path", ""))
            headers = [
                (b"content-type", b"text/html; charset=utf-8"),
                (b"content-security-policy", docs.csp(nonce).encode("ascii")),
            ]
        else:
            body, media_type = self._file(path)
            headers = [(b"content-type", media_type)]
        await _send(send, scope, body, headers)

    def _file(self, path: str) -> tuple[bytes, bytes]:
        found = self._files.get(path)
        if found is None:
            name = self.docs.asset_paths[path]  # only filled when there is an asset_dir
            directory = self.docs.asset_dir or Path()
            found = ((directory / name).read_bytes(), ASSET_FILES[name])
            self._files[path] = found
        return found


async def _send(send: Send, scope: Scope, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers.append((b"content-length", b"%d" % len(body)))
    start: dict[str, Any] = {"type": "http.response.start", "status": 200, "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
