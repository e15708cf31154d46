"""The public surface: ``bastion`` exports, ``bastion.middleware`` layers, a light import."""

from __future__ import annotations

import json
import subprocess
import sys

import bastion
import bastion.middleware
from bastion.asgi import PRINCIPAL_KEY


def test_every_exported_name_resolves() -> None:
    exported = set(bastion.__all__) - {"__version__"}
    assert exported == set(bastion._EXPORTS)
    for name in exported:
        assert getattr(bastion, name) is not None, name
    assert {"secure", "RateLimit", "ConfigError", "CORSMiddleware", "SwaggerUI"} <= exported


def test_layers_are_importable_from_bastion_middleware() -> None:
    for name in bastion.middleware.__all__:
        assert getattr(bastion.middleware, name) is getattr(bastion, name), name
    from bastion.middleware import CORSMiddleware  # the failing import

    assert CORSMiddleware.__module__ == "bastion.middleware.cors"


def test_principal_scope_key_is_the_bearer_layers() -> None:
    from bastion.auth.bearer import PRINCIPAL_KEY as BEARER_KEY

    assert PRINCIPAL_KEY == BEARER_KEY == "bastion.principal"


def test_import_bastion_and_secure_load_nothing_heavy() -> None:
    code = (
        "import sys, json, bastion; from bastion import secure, RateLimit, CORSMiddleware;"
        "print(json.dumps(sorted(m for m in ('fastapi','sqlalchemy','redis','httpx','rich',"
        "'uvicorn','pydantic_settings','argon2','aiosqlite','asyncpg') if m in sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_unknown_name_is_an_attribute_error() -> None:
    try:
        bastion.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("bastion.no_such_thing resolved")
