"""The ``bastion`` command: subcommands, and the exit-code and one-line-error conventions.

Exit codes: 0 success, 1 a finding or failure the command exists to report (``scan`` below
``--fail-under``), 2 a usage error, a bad setting or an unreachable target. A bad flag or
setting prints one line on stderr, never a traceback.

The core install is the stack only; ``serve`` and ``keys`` need the ``[service]`` extra and
``scan`` the ``[scanner]`` one. Without it the command still exists (``--help`` lists it) and
says in one line which extra to install, exit status 2 — whether its module cannot be
imported at all or a dependency is first needed while it runs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bastion import __version__
from bastion.errors import ConfigError

# Each module defines ``register(subparsers)`` which adds its parser and sets ``func``
# (a callable taking the parsed namespace and returning an exit code).
COMMAND_MODULES = ("serve", "nginx", "scan", "keys", "db")
# module -> (the subcommand it registers, the extra its dependencies come with)
COMMANDS: dict[str, tuple[str, str | None]] = {
    "serve": ("serve", "service"),
    "nginx": ("nginx-config", None),
    "scan": ("scan", "scanner"),
    "keys": ("keys", "service"),
    "db": ("db", "service"),
}
# Commands that read the BASTION_* settings: a misspelt variable is worth a warning there.
SETTINGS_COMMANDS = frozenset({"serve", "keys", "db"})

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def missing_extra_line(command: str, extra: str, module: str | None) -> str:
    """The one line a command prints when its extra is not installed."""
    missing = f" (no module named {module!r})" if module else ""
    return (
        f"bastion {command}: this command needs the [{extra}] extra{missing}; "
        f"install it with: pip install 'bastion[{extra}]'"
    )


def _register_missing(subparsers: Any, command: str, extra: str, module: str | None) -> None:
    """A stand-in subcommand whose module could not be imported: it names the extra."""
    # prefix_chars that no flag uses: every argument is taken as is, none is "unrecognized".
    p = subparsers.add_parser(
        command, help=f"(needs: pip install 'bastion[{extra}]')", prefix_chars="\0", add_help=False
    )
    p.add_argument("rest", nargs="*", help=argparse.SUPPRESS)

    def explain(_args: argparse.Namespace) -> int:
        print(missing_extra_line(command, extra, module), file=sys.stderr)
        return EXIT_USAGE

    p.set_defaults(func=explain)


def _third_party(exc: ModuleNotFoundError) -> str | None:
    """The top-level name of a missing third-party module, ``None`` for bastion's own."""
    name = (exc.name or "").split(".")[0]
    return None if not name or name == "bastion" else name


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One line, no usage dump: argparse's default is three lines plus usage.
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bastion", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"bastion {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMAND_MODULES:
        command, extra = COMMANDS[name]
        try:
            module = importlib.import_module(f"bastion.cli.{name}")
        except ModuleNotFoundError as exc:
            missing = _third_party(exc)
            if extra is None or missing is None:
                raise
            _register_missing(subparsers, command, extra, missing)
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command in SETTINGS_COMMANDS:
            _warn_unknown_variables()
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
    except ModuleNotFoundError as exc:
        extra = _extra_of(args.command)
        missing = _third_party(exc)
        if extra is None or missing is None:
            raise
        print(missing_extra_line(args.command, extra, missing), file=sys.stderr)
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


def _warn_unknown_variables() -> None:
    # Imported here: bastion.config needs the [service] extra (a missing one is reported by
    # main's ModuleNotFoundError branch, like any other dependency of the command).
    from bastion.config import unknown_variables

    for warning in unknown_variables(os.environ):
        print(f"bastion: warning: {warning}", file=sys.stderr)


def _extra_of(command: str) -> str | None:
    for name, extra in COMMANDS.values():
        if name == command:
            return extra
    return None
