"""The wheel, installed into fresh virtual environments: the core install is the stack only.

Builds the wheel once, then: the core install pulls in none of the service's or scanner's
dependencies, ``import bastion`` and ``secure()`` work on a plain Starlette app there (no
FastAPI), the CLI names the extra it needs; ``[fastapi]`` adds FastAPI's own tree and nothing
else. pip uses this machine's index configuration and cache, as a user's pip would.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.install]

ROOT = Path(__file__).resolve().parent.parent
NOT_IN_CORE = (
    "sqlalchemy",
    "asyncpg",
    "aiosqlite",
    "redis",
    "rich",
    "httpx",
    "fastapi",
    "uvicorn",
    "pydantic-settings",
    "argon2-cffi",
    "python-multipart",
    "pyjwt",
)


def run(*cmd: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, ROOT)
    assert built.returncode == 0, built.stderr
    (path,) = out.glob("bastion-*.whl")
    return path


def make_venv(where: Path, requirement: str) -> Path:
    """A fresh venv (no pip of its own: this pip installs into it) with *requirement*."""
    made = run(sys.executable, "-m", "venv", "--without-pip", where)
    assert made.returncode == 0, made.stderr
    python = where / "bin" / "python"
    installed = run(sys.executable, "-m", "pip", "--python", python, "install", "-q", requirement)
    assert installed.returncode == 0, installed.stderr
    return python


def distributions(python: Path) -> set[str]:
    code = (
        "import importlib.metadata as m, json, re;"
        "print(json.dumps(sorted({re.sub(r'[-_.]+', '-', d.metadata['Name']).lower()"
        " for d in m.distributions()})))"
    )
    listed = run(python, "-c", code)
    assert listed.returncode == 0, listed.stderr
    return set(json.loads(listed.stdout))


@pytest.fixture(scope="module")
def core(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield make_venv(tmp_path_factory.mktemp("core") / "venv", str(wheel))


def test_core_install_is_the_stack_only(core: Path) -> None:
    installed = distributions(core)
    assert "bastion" in installed and "starlette" in installed
    assert {"pydantic", "cryptography"} <= installed
    assert sorted(installed & set(NOT_IN_CORE)) == []


SMOKE = textwrap.dedent(
    """
    import asyncio, json, sys
    import bastion
    from bastion import secure, CORSMiddleware, RateLimit, ConfigError
    from bastion.middleware import CORSMiddleware as C2
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def hello(request):
        return JSONResponse({"hello": "world"})

    asgi = secure(Starlette(routes=[Route("/api/hello", hello)]))

    async def main():
        sent = []
        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}
        async def send(message):
            sent.append(message)
        scope = {"type": "http", "method": "GET", "path": "/api/hello", "raw_path": b"/api/hello",
                 "query_string": b"", "headers": [(b"host", b"127.0.0.1:8000")],
                 "scheme": "http", "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000),
                 "root_path": "", "http_version": "1.1", "asgi": {"version": "3.0"}}
        await asgi(scope, receive, send)
        start = sent[0]
        headers = {k.decode(): v.decode() for k, v in start["headers"]}
        return start["status"], headers

    status, headers = asyncio.run(main())
    try:
        secure(Starlette(), cors_origins=["*"])
    except ConfigError as exc:
        refused = str(exc)
    heavy = [m for m in ("fastapi", "sqlalchemy", "redis", "httpx", "rich", "uvicorn")
             if m in sys.modules]
    print(json.dumps({"status": status, "headers": headers, "refused": refused,
                      "heavy": heavy, "same": CORSMiddleware is C2}))
    """
)


def test_import_and_secure_work_without_fastapi(core: Path) -> None:
    result = run(core, "-c", SMOKE)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["status"] == 200  # plain HTTP on loopback: served, not redirected
    assert out["headers"]["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert out["headers"]["ratelimit-policy"] == '"api";q=100;w=900'
    assert out["refused"].startswith("cors_origins: '*' is not an exact origin")
    assert out["heavy"] == [] and out["same"] is True
    no_fastapi = run(core, "-c", "import fastapi")
    assert no_fastapi.returncode != 0


@pytest.mark.parametrize(
    ("argv", "extra"), [(["serve"], "service"), (["scan", "https://x.test/"], "scanner")]
)
def test_cli_names_the_missing_extra(core: Path, argv: list[str], extra: str) -> None:
    result = run(core.parent / "bastion", *argv)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert f"pip install 'bastion[{extra}]'" in result.stderr


def test_fastapi_extra_adds_only_fastapis_tree(
    wheel: Path, core: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    python = make_venv(
        tmp_path_factory.mktemp("fastapi") / "venv", f"bastion[fastapi] @ {wheel.as_uri()}"
    )
    added = distributions(python) - distributions(core)
    # FastAPI's dependency closure, read from the installed metadata (no packaging needed).
    walk = textwrap.dedent(
        """
        import importlib.metadata as m, json, re
        norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
        seen, todo = set(), ["fastapi"]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            try:
                requirements = m.requires(name) or []
            except m.PackageNotFoundError:
                continue  # excluded by its marker here (e.g. python_version < "3.11")
            seen.add(name)
            for req in requirements:
                if "extra ==" in req:
                    continue
                todo.append(norm(re.split(r"[ ;<>=!~\\[(]", req, maxsplit=1)[0]))
        print(json.dumps(sorted(seen)))
        """
    )
    tree = run(python, "-c", walk)
    assert tree.returncode == 0, tree.stderr
    fastapi_tree = set(json.loads(tree.stdout))
    assert "fastapi" in added
    assert added <= fastapi_tree, added - fastapi_tree
    assert not added & {"sqlalchemy", "uvicorn", "redis", "httpx", "rich"}


# --- BearerAuth with the core install (lib-tokens) -------------------------------------------

BEARER_SMOKE = textwrap.dedent(
    """
    import asyncio, base64, json, sys, threading, time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    from bastion import BearerAuth, Principal

    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    key = ec.generate_private_key(ec.SECP256R1())
    nums = key.public_key().public_numbers()
    jwk = {"kty": "EC", "crv": "P-256", "kid": "k1", "x": b64(nums.x.to_bytes(32, "big")),
           "y": b64(nums.y.to_bytes(32, "big"))}
    seg = lambda o: b64(json.dumps(o).encode())
    signing = seg({"alg": "ES256", "kid": "k1"}) + "." + seg(
        {"iss": "https://idp.test", "aud": "api", "sub": "42", "exp": int(time.time()) + 60})
    r, s = decode_dss_signature(key.sign(signing.encode(), ec.ECDSA(hashes.SHA256())))
    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    s = min(s, n - s)
    token = signing + "." + b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

    static = BearerAuth(jwks={"keys": [jwk]}, issuer="https://idp.test", audience="api")
    body = json.dumps({"keys": [jwk]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = "http://127.0.0.1:%d/jwks" % server.server_address[1]
    remote = BearerAuth(jwks_url=url, issuer="https://idp.test", audience="api")
    scope = {"type": "http", "headers": [(b"authorization", b"Bearer " + token.encode())]}
    principal = asyncio.run(remote.authenticate(scope))
    heavy = [m for m in ("fastapi", "httpx", "argon2", "jwt", "sqlalchemy", "requests")
             if m in sys.modules]
    print(json.dumps({"static": static.verify(token).subject, "remote": principal.subject,
                      "is_principal": isinstance(principal, Principal), "heavy": heavy}))
    server.shutdown()
    """
)


def test_bearer_auth_works_with_the_core_install(core: Path) -> None:
    # Static keys and a JWKS fetched over loopback with the standard library: no FastAPI,
    # no HTTP client, no PyJWT, no argon2 in the bare install.
    result = run(core, "-c", BEARER_SMOKE)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out == {"static": "42", "remote": "42", "is_principal": True, "heavy": []}
