"""``bastion keys``: manage the token signing keys, wherever the deployment keeps them.

``bastion keys rotate`` adds a new signing key and retires the current one; the retired key
stays in the JWKS (and keeps verifying) until every token it signed has expired. With the
keys in the data directory, running servers pick the new key up within about a second; with
the keys in the database (``BASTION_KEY_STORE``, README "Many hosts"), every host sharing it
does within a few seconds, without a restart.
``bastion keys list`` shows the keys that currently verify.
``bastion keys generate-kek`` prints a fresh key-encryption key for
``BASTION_KEY_ENCRYPTION_KEY`` (the same one goes to every host).
"""

from __future__ import annotations

import argparse
from typing import Any

from bastion.config import load_settings


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("keys", help="manage the token signing keys")
    actions = p.add_subparsers(dest="keys_command", required=True, parser_class=type(p))
    rotate = actions.add_parser("rotate", help="add a new signing key; retire the current one")
    rotate.set_defaults(func=run_rotate)
    listing = actions.add_parser("list", help="list the keys that currently verify tokens")
    listing.set_defaults(func=run_list)
    kek = actions.add_parser(
        "generate-kek", help="print a new key-encryption key (BASTION_KEY_ENCRYPTION_KEY)"
    )
    kek.set_defaults(func=run_generate_kek)


def run_rotate(_args: argparse.Namespace) -> int:
    from bastion.service import signing_keys

    ring = signing_keys.prepare(load_settings())  # imports an on-disk ring, if due
    try:
        key = ring.rotate()
        print(f"new signing key {key.kid} ({key.alg})")
        for old in ring.verifying_keys():
            if old.kid != key.kid:
                print(f"still verifying {old.kid} until its tokens expire")
        if ring.directory is None:
            print(
                "every host sharing the database signs with it within "
                f"{signing_keys.POLL_INTERVAL + 1:.0f} seconds"
            )
    finally:
        ring.close()
    return 0


def run_list(_args: argparse.Namespace) -> int:
    from bastion.service import signing_keys

    ring = signing_keys.key_ring(load_settings())
    try:
        ring.load()
        for key in ring.verifying_keys():
            state = "signing" if key.kid == ring.active.kid else "retired"
            print(f"{key.kid}  {key.alg}  {state}")
    finally:
        ring.close()
    return 0


def run_generate_kek(_args: argparse.Namespace) -> int:
    from bastion.auth.key_encryption import generate

    print(generate())
    return 0
