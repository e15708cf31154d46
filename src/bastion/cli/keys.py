"""``bastion keys``: manage the token signing keys in the data directory.

``bastion keys rotate`` adds a new signing key and retires the current one; the retired key
stays in the JWKS (and keeps verifying) until every token it signed has expired. Running
servers pick the new key up within about a second, without a restart.
``bastion keys list`` shows the keys that currently verify.
"""

from __future__ import annotations

import argparse
from typing import Any

from bastion.auth.keys import KeyRing
from bastion.config import load_settings


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("keys", help="manage the token signing keys")
    actions = p.add_subparsers(dest="keys_command", required=True, parser_class=type(p))
    rotate = actions.add_parser("rotate", help="add a new signing key; retire the current one")
    rotate.set_defaults(func=run_rotate)
    listing = actions.add_parser("list", help="list the keys that currently verify tokens")
    listing.set_defaults(func=run_list)


def _ring() -> KeyRing:
    from bastion.service.routes.auth import key_ring

    return key_ring(load_settings())


def run_rotate(_args: argparse.Namespace) -> int:
    ring = _ring()
    ring.ensure()
    key = ring.rotate()
    print(f"new signing key {key.kid} ({key.alg})")
    for old in ring.verifying_keys():
        if old.kid != key.kid:
            print(f"still verifying {old.kid} until its tokens expire")
    return 0


def run_list(_args: argparse.Namespace) -> int:
    ring = _ring()
    ring.load()
    for key in ring.verifying_keys():
        state = "signing" if key.kid == ring.active.kid else "retired"
        print(f"{key.kid}  {key.alg}  {state}")
    return 0
