"""``secure(app, settings)``: the protective layers composed in one documented order.

(Placeholder composition while the layers land; the order is documented in ``secure``.)
"""

from __future__ import annotations

from bastion.asgi import ASGIApp
from bastion.config import Settings


class Stack:
    """Resources the layers share with the app (the rate-limit store), built once per process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def ping_store(self) -> bool:
        return True

    async def close(self) -> None:
        return None


def secure(app: ASGIApp, settings: Settings, *, stack: Stack | None = None) -> ASGIApp:
    """Wrap *app* in every bastion layer configured by *settings*."""
    return app


def secure_redirect(settings: Settings) -> ASGIApp:
    """The plain-HTTP listener's app: redirect GET/HEAD to HTTPS, refuse other methods."""
    from bastion.middleware.https import redirect_app

    return redirect_app(settings.port)
