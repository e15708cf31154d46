"""The ``bastion`` command: subcommands, and the exit-code and one-line-error conventions.

Exit codes: 0 success, 1 a finding or failure the command exists to report (``scan`` below
``--fail-under``), 2 a usage error, a bad setting or an unreachable target. A bad flag or
setting prints one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from bastion import __version__
from bastion.config import unknown_variables
from bastion.errors import ConfigError

# Each module defines ``register(subparsers)`` which adds its parser and sets ``func``
# (a callable taking the parsed namespace and returning an exit code).
COMMAND_MODULES = ("serve", "nginx", "scan", "keys")
# Commands that read the BASTION_* settings: a misspelt variable is worth a warning there.
SETTINGS_COMMANDS = frozenset({"serve", "keys"})

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One line, no usage dump: argparse's default is three lines plus usage.
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bastion", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"bastion {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(f"bastion.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in SETTINGS_COMMANDS:
        for warning in unknown_variables(os.environ):
            print(f"bastion: warning: {warning}", file=sys.stderr)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"bastion: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        if exc.filename is None:
            raise
        # A file-system failure the settings checks could not foresee (a race, a read-only
        # mount): one line naming the file, and the variable when the file is in the data dir.
        print(f"bastion: {_file_problem(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _file_problem(exc: OSError) -> str:
    path = Path(os.fsdecode(exc.filename))
    reason = exc.strerror or exc.__class__.__name__
    data_dir = Path(os.environ.get("BASTION_DATA_DIR", ".bastion")).absolute()
    if path.absolute().is_relative_to(data_dir) or data_dir.is_relative_to(path.absolute()):
        return f"BASTION_DATA_DIR (or data_dir in bastion.toml): cannot use {path}: {reason}"
    return f"cannot use {path}: {reason}"
