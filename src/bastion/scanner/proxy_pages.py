"""Error pages a reverse proxy writes itself, recognised so they are weighted as what they are.

nginx answers some requests before any ``location`` (and so before the API behind it) sees
them: ``TRACE`` (405), a malformed request target or an oversized header (400), a body too
large (413). Its answer is a fixed page::

    <html>
    <head><title>405 Not Allowed</title></head>
    <body>
    <center><h1>405 Not Allowed</h1></center>
    <hr><center>nginx</center>
    </body>
    </html>

Such a page holds no API data and names the product the ``Server`` header already names. So:

* ``disclosure.framework-errors`` does not count it when it shows no version (with a version,
  ``nginx/1.22.1``, it still fails: that is the disclosure);
* ``headers.on-errors`` and ``methods.405-allow`` do not count the pages nginx writes for the
  requests it refuses itself (security headers set by the API behind it cannot be on them; a
  405 for ``TRACE`` from the proxy is not the API's method table). The proxy's pages are named
  in the evidence, so nothing is hidden.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bastion.scanner.evidence import Exchange

# nginx's ngx_http_error_pages: the fixed template (the "Request Header Or Cookie Too Large"
# variants add one <center> line), optionally followed by its MSIE padding comments.
_NGINX_PAGE = re.compile(
    rb"\A<html>\r?\n<head><title>(?P<status>\d{3}) [^<\r\n]{1,60}</title></head>\r?\n"
    rb"<body(?: bgcolor=\"white\")?>\r?\n<center><h1>\d{3} [^<\r\n]{1,60}</h1></center>\r?\n"
    rb"(?:<center>[^<\r\n]{1,80}</center>\r?\n)?"
    rb"<hr><center>(?P<product>(?:nginx|openresty|tengine)(?:/[\w.-]{1,20})?)</center>"
)
MAX_PAGE = 2048  # the template with its padding is under 1 KiB

# What a proxy refuses before routing: bad requests, TRACE/TRACK, limits. A proxy's 404 is not
# here: it means the proxy, not the API, answers that path, and is judged like any answer.
REFUSED_BEFORE_ROUTING = frozenset({400, 405, 408, 411, 413, 414, 431, 494, 501})


@dataclass(frozen=True)
class ProxyPage:
    """A proxy's own error page: the product as the page names it, and whether a version is
    in that name."""

    product: str

    @property
    def versioned(self) -> bool:
        return "/" in self.product

    @property
    def name(self) -> str:
        return self.product.split("/", 1)[0]


def proxy_page(ex: Exchange) -> ProxyPage | None:
    """The proxy that wrote ``ex``'s body itself, or None when the body is not such a page."""
    if ex.status < 400 or len(ex.body) > MAX_PAGE:
        return None
    match = _NGINX_PAGE.match(ex.body)
    if match is None or int(match.group("status")) != ex.status:
        return None
    return ProxyPage(match.group("product").decode("ascii"))


def refused_by_proxy(ex: Exchange) -> ProxyPage | None:
    """The proxy's page for a request it refused before routing it to the API, or None."""
    page = proxy_page(ex)
    if page is None or ex.status not in REFUSED_BEFORE_ROUTING:
        return None
    return page


def describe_skipped(exchanges: list[Exchange]) -> str:
    """``TRACE https://host/ -> 405 (nginx)``, one per page, for a reason text."""
    parts = []
    for ex in exchanges:
        page = proxy_page(ex)
        parts.append(f"{ex.summary} ({page.product if page else 'proxy'})")
    return ", ".join(parts)
