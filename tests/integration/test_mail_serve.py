"""`bastion serve` with ``BASTION_MAILER=smtp`` against a real SMTP server (aiosmtpd).

The reset mail goes over STARTTLS with AUTH, its link resets the password; a relay that
answers ``451`` first gets the mail on the retry; a relay that hangs or is down never changes
the ``202`` (sending is off the request path) and is logged without the token or the address.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Server
from tests.support import free_port, wait_until
from tests.support_auth import GENEROUS_LIMITS, new_email, new_password
from tests.support_smtp import MailServer

pytestmark = pytest.mark.integration

ServeFactory = Callable[..., Server]
CREDENTIALS = ("bastion", "relay-password-9f3c")


def register(server: Server) -> tuple[str, str]:
    email, password = new_email(), new_password()
    with server.client() as client:
        body = {"email": email, "password": password}
        assert client.post("/api/v1/auth/register", json=body).status_code == 202
    return email, password


def ask_reset(server: Server, email: str) -> None:
    with server.client() as client:
        response = client.post("/api/v1/password-reset", json={"email": email})
    assert response.status_code == 202 and response.json() == {"status": "accepted"}


def test_reset_mail_over_starttls_with_auth(serve: ServeFactory, tmp_path: Path) -> None:
    with MailServer(tmp_path, security="starttls", credentials=CREDENTIALS) as smtp:
        server = serve(env={**GENEROUS_LIMITS, **smtp.env(credentials=CREDENTIALS)})
        email, _password = register(server)
        ask_reset(server, email)
        (mail,) = smtp.wait_for(1)
        assert smtp.handler.envelopes[0] == ("no-reply@example.test", [email], True)
    assert mail["To"] == email and mail["Subject"] == "Reset your password"
    match = re.search(r"/password-reset\?token=([A-Za-z0-9_-]{43})\s*$", mail.get_content(), re.M)
    assert match is not None
    new = new_password()
    with server.client() as client:
        body = {"token": match.group(1), "password": new}
        assert client.post("/api/v1/password-reset/confirm", json=body).status_code == 204
        login = client.post("/api/v1/auth/login", json={"email": email, "password": new})
        assert login.status_code == 200
    log = server.log()
    assert match.group(1) not in log and email not in log and CREDENTIALS[1] not in log
    assert server.stop() == 0


def test_a_transient_refusal_is_retried(serve: ServeFactory, tmp_path: Path) -> None:
    with MailServer(tmp_path, security="tls", fail_first=1) as smtp:
        server = serve(env={**GENEROUS_LIMITS, **smtp.env()})
        email, _password = register(server)
        ask_reset(server, email)
        (mail,) = smtp.wait_for(1)
        assert smtp.handler.data_commands == 2
    token = re.search(r"\?token=([A-Za-z0-9_-]{43})", mail.get_content())
    assert token is not None
    masked = f"{email[0]}***@example.test"
    wait_until(lambda: "delivered (attempt 2)" in server.log(), what="the delivery log line")
    log = server.log()
    assert f"mail to {masked} not delivered (attempt 1 of 5): SMTPDataError 451" in log
    assert token.group(1) not in log and email not in log


@pytest.fixture
def silent_relay() -> Iterator[tuple[int, threading.Event]]:
    """A TCP server that accepts and then says nothing (a hung relay); set the event to free it."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        try:
            connection, _addr = listener.accept()
        except OSError:
            return
        held.append(connection)
        accepted.set()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1], accepted
    listener.close()
    for connection in held:
        connection.close()
    thread.join(5)


def test_a_hung_or_dead_relay_never_changes_the_202(
    serve: ServeFactory, tmp_path: Path, silent_relay: tuple[int, threading.Event]
) -> None:
    port, accepted = silent_relay
    env = {
        **GENEROUS_LIMITS,
        "BASTION_MAILER": "smtp",
        "BASTION_SMTP_HOST": "127.0.0.1",
        "BASTION_SMTP_PORT": str(port),
        "BASTION_MAIL_FROM": "no-reply@example.test",
        "BASTION_SMTP_TIMEOUT": "60",  # far longer than the client waits for its answer
        "BASTION_SMTP_ATTEMPTS": "1",
    }
    server = serve(env=env)
    email, _password = register(server)
    ask_reset(server, email)  # the client gives up after 10 s: the answer cannot wait 60 s
    assert accepted.wait(15), "the mail was never attempted"
    ask_reset(server, email)  # and the next request is not stuck behind the first mail
    assert server.stop() == 0  # SIGTERM with a mail still in flight: a clean stop
    log = server.log()
    assert "not delivered" in log and email not in log

    dead = serve(env={**env, "BASTION_SMTP_PORT": str(free_port())})
    email, _password = register(dead)
    ask_reset(dead, email)
    wait_until(lambda: "not delivered" in dead.log(), what="the delivery failure line")
    assert "not delivered (1 attempts): ConnectionRefusedError" in dead.log()
    assert email not in dead.log()
