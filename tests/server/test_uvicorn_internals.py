"""Fails loudly when a uvicorn internal that bastion.server relies on moves.

``bastion.server`` subclasses uvicorn's httptools protocol, builds uvicorn request cycles for
its refusals, and drives uvicorn's Server without its listener. None of that is uvicorn's
public API, so uvicorn is pinned to one minor version (pyproject.toml) and every internal
used is checked here, by name, signature and behaviour. When one of these tests fails after
a uvicorn upgrade, read the named uvicorn code again before changing bastion.server.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import socket
from typing import Any

import pytest
import uvicorn
from uvicorn.config import Config
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT, FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import Server, ServerState


def _parameters(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_the_pinned_minor_version() -> None:
    # The internals below were read, and the suite run, against this version.
    assert uvicorn.__version__.startswith("0.54."), uvicorn.__version__


def test_protocol_constructor_and_methods_overridden_or_called() -> None:
    assert _parameters(HttpToolsProtocol.__init__) == [
        "self",
        "config",
        "server_state",
        "app_state",
        "_loop",
    ]
    for name in (
        "connection_made",
        "connection_lost",
        "data_received",
        "on_message_begin",
        "on_url",
        "on_header",
        "on_headers_complete",
        "on_body",
        "on_message_complete",
        "on_response_complete",
        "shutdown",
        "_should_upgrade",
    ):
        assert callable(getattr(HttpToolsProtocol, name)), name
    assert _parameters(HttpToolsProtocol._start_asgi_task) == ["self", "cycle", "app"]


def test_headers_complete_builds_the_cycle_and_starts_it_through_start_asgi_task() -> None:
    source = inspect.getsource(HttpToolsProtocol.on_headers_complete)
    # A queued (pipelined) cycle is never created by bastion's protocol, which feeds the
    # parser a head only when no response is pending; refusals start through the same call.
    assert "self.cycle = RequestResponseCycle(" in source
    assert "self._start_asgi_task(self.cycle, app)" in source
    assert "self.parser.should_upgrade() and self._should_upgrade()" in source
    # uvicorn's own keep-alive timer is armed only in on_response_complete, which
    # bastion replaces; data_received (also replaced) is where uvicorn disarms it.
    assert "timeout_keep_alive_task" in inspect.getsource(HttpToolsProtocol.on_response_complete)


def test_the_protocol_attributes_bastion_reads() -> None:
    source = inspect.getsource(HttpToolsProtocol)
    for attribute in (
        "self.parser",
        "self.cycle",
        "self.flow",
        "self.transport",
        "self.server_state",
        "self.app",
        "self.loop",
        "self.client",
        "self.server",
        "self.scheme",
        "self.root_path",
        "self.asgi_version",
        "self.logger",
        "self.access_logger",
        "self.access_log",
    ):
        assert re.search(re.escape(attribute) + r"\b", source), attribute


def test_cycle_constructor_and_state() -> None:
    assert _parameters(RequestResponseCycle.__init__) == [
        "self",
        "scope",
        "transport",
        "flow",
        "logger",
        "access_logger",
        "access_log",
        "default_headers",
        "message_event",
        "expect_100_continue",
        "keep_alive",
        "on_response",
    ]
    source = inspect.getsource(RequestResponseCycle)
    for attribute in (
        "self.response_started",
        "self.response_complete",
        "self.disconnected",
        "self.keep_alive",
        "self.more_body",
        "self.message_event",
        "self.expected_content_length",
        "self.chunked_encoding",
        "self.waiting_for_100_continue",
        "self.default_headers",
    ):
        assert attribute in source, attribute
    # A refusal's cycle closes through its transport's close() once the body is sent:
    # bastion's lingering close hooks that call.
    send = inspect.getsource(RequestResponseCycle.send)
    assert "if not self.keep_alive:\n                    self.transport.close()" in send


def test_flow_control() -> None:
    class Transport:
        paused = 0

        def pause_reading(self) -> None:
            self.paused += 1

        def resume_reading(self) -> None:
            self.paused -= 1

    transport = Transport()
    flow = FlowControl(transport)  # type: ignore[arg-type]
    assert (flow.read_paused, flow.write_paused) == (False, False)
    flow.pause_reading()
    flow.pause_reading()
    assert flow.read_paused and transport.paused == 1  # idempotent
    flow.resume_reading()
    assert not flow.read_paused and transport.paused == 0
    assert HIGH_WATER_LIMIT == 65536


def test_server_state() -> None:
    state = ServerState()
    assert (state.total_requests, state.connections, state.tasks, state.default_headers) == (
        0,
        set(),
        set(),
        [],
    )


async def test_server_startup_without_sockets_opens_no_listener_and_shutdown_closes_ours() -> None:
    """bastion's _Server calls startup(sockets=[]) and appends its Listener to servers."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    server = Server(Config(app, lifespan="on", log_config=None, ws="none"))
    server.config.load()
    server.lifespan = server.config.lifespan_class(server.config)
    await server.startup(sockets=[])
    assert server.started and server.servers == []
    assert isinstance(server.lifespan.state, dict)
    assert server.config.ws_protocol_class is None

    class Closable:
        closed = waited = False

        def close(self) -> None:
            self.closed = True

        async def wait_closed(self) -> None:
            self.waited = True

    closable = Closable()
    server.servers.append(closable)  # type: ignore[arg-type]
    await server.shutdown(sockets=[])
    assert closable.closed and closable.waited


def test_server_capture_signals_is_a_context_manager_bastion_replaces() -> None:
    assert inspect.isfunction(Server.capture_signals)
    assert "startup" in dir(Server) and "shutdown" in dir(Server)
    assert _parameters(Server.startup) == ["self", "sockets"]


def test_connect_accepted_socket_takes_the_tls_timeouts() -> None:
    import uvloop

    for loop_class in (uvloop.Loop, asyncio.BaseEventLoop):
        signature = inspect.signature(loop_class.connect_accepted_socket)
        assert {"ssl", "ssl_handshake_timeout", "ssl_shutdown_timeout"} <= set(
            signature.parameters
        ), loop_class


@pytest.mark.parametrize("family", [socket.AF_INET])
def test_config_accepts_a_protocol_class_and_no_websocket(family: int) -> None:
    from bastion.server.protocol import BastionHttpProtocol

    config = Config(lambda *_: None, http=BastionHttpProtocol, ws="none", log_config=None)
    config.load()
    assert config.http_protocol_class is BastionHttpProtocol
    assert config.ws_protocol_class is None
    assert family == socket.AF_INET
