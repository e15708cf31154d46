"""A tiny ASGI driver for the middleware tests: exact bytes in, every message out.

httpx and the TestClient normalise URLs (they drop ``/./`` and ``/../``, re-encode paths), so
path attacks and forged scopes are driven here with a raw scope built the way uvicorn builds
it: ``raw_path`` as received, ``path`` percent-decoded from it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass
class Result:
    """What the app sent, plus the scope it ended with and what it read."""

    status: int | None
    headers: list[tuple[bytes, bytes]]
    body: bytes
    messages: list[Message]
    scope: Scope
    received: list[Message] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        """The single value of *name*, ``None`` when absent; fails if it is repeated."""
        values = self.header_list(name)
        assert len(values) <= 1, f"{name} sent {len(values)} times: {values}"
        return values[0] if values else None

    def header_list(self, name: str) -> list[str]:
        key = name.lower().encode()
        return [v.decode("latin-1") for k, v in self.headers if k.lower() == key]

    def json(self) -> Any:
        return json.loads(self.body)


def make_scope(
    method: str = "GET",
    raw_path: bytes | str = b"/",
    *,
    query: bytes = b"",
    headers: Iterable[tuple[bytes | str, bytes | str]] = (),
    scheme: str = "https",
    client: tuple[str, int] | None = ("127.0.0.1", 50000),
    path: str | None = None,
    default_host: bool = True,
    **extra: Any,
) -> Scope:
    raw = raw_path.encode("latin-1") if isinstance(raw_path, str) else raw_path
    hdrs = [
        (
            (k.encode("latin-1") if isinstance(k, str) else k).lower(),
            v.encode("latin-1") if isinstance(v, str) else v,
        )
        for k, v in headers
    ]
    if default_host and not any(k == b"host" for k, _ in hdrs):
        hdrs.insert(0, (b"host", b"testserver"))
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": scheme,
        "path": path if path is not None else unquote(raw.decode("latin-1")),
        "raw_path": raw,
        "query_string": query,
        "root_path": "",
        "headers": hdrs,
        "client": client,
        "server": ("127.0.0.1", 8443),
        "state": {},
    }
    scope.update(extra)
    return scope


async def call(
    app: App,
    method: str = "GET",
    raw_path: bytes | str = b"/",
    *,
    body: bytes | Sequence[bytes] = b"",
    scope: Scope | None = None,
    **scope_kwargs: Any,
) -> Result:
    """Run *app* on one request; *body* as a list means one ``http.request`` message per item."""
    if scope is None:
        scope = make_scope(method, raw_path, **scope_kwargs)
    chunks = [body] if isinstance(body, bytes) else list(body)
    received: list[Message] = []
    index = 0

    async def receive() -> Message:
        nonlocal index
        if index < len(chunks):
            more = index < len(chunks) - 1
            message: Message = {"type": "http.request", "body": chunks[index], "more_body": more}
            index += 1
        else:
            message = {"type": "http.disconnect"}
        received.append(message)
        return message

    messages: list[Message] = []

    async def send(message: Message) -> None:
        messages.append(message)

    await app(scope, receive, send)
    starts = [m for m in messages if m["type"] == "http.response.start"]
    assert len(starts) <= 1, f"two response starts: {starts}"
    start = starts[0] if starts else None
    body_out = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return Result(
        status=start["status"] if start else None,
        headers=[(bytes(k), bytes(v)) for k, v in start.get("headers", [])] if start else [],
        body=body_out,
        messages=messages,
        scope=scope,
        received=received,
    )


async def never_receive() -> Message:
    """For a scope the app must pass through without reading (lifespan, websocket)."""
    raise AssertionError("receive() called")


async def never_send(message: Message) -> None:
    """For a scope the app must pass through without answering."""
    raise AssertionError(f"send() called with {message!r}")


def recorder(
    status: int = 200,
    body: bytes = b"ok",
    headers: Iterable[tuple[bytes, bytes]] = ((b"content-type", b"text/plain"),),
) -> tuple[App, list[Scope]]:
    """An app answering *status*/*body* that records each scope it saw (a copy) and read body."""
    seen: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        data = b""
        if scope["type"] == "http":
            more = True
            while more:
                message = await receive()
                if message["type"] != "http.request":
                    break
                data += message.get("body", b"")
                more = message.get("more_body", False)
        copy = dict(scope)
        copy["_body"] = data
        seen.append(copy)
        out = [*headers, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": body})

    return app, seen
