"""`ddrm-fast` / `python -m ddrm_fast`.

Whatever goes wrong reaches the user as one line on stderr, never a traceback: exit code 2 for a bad invocation
(arguments, files named on the command line, a busy output folder), 1 for anything else (a full disk: one line
naming the folder; a folder job's bad items are reported by the job, which then returns 1 itself).
"""
from __future__ import annotations

import sys
from typing import List, Optional

from .._utils import one_line
from ..files import DiskFull
from .args import Parser


def commands() -> dict:
    """name -> the command's module: each has ``add_parser(sub)`` and ``main(args) -> exit code``."""
    from . import bench, demo, original, restore, serve, train

    return {"demo": demo, "restore": restore, "train": train, "bench": bench, "original": original, "serve": serve}


def build_parser() -> Parser:
    """The `ddrm-fast` parser with every command's subparser."""
    p = Parser(prog="ddrm-fast", description="Fast DDRM image restoration.")
    sub = p.add_subparsers(dest="command", required=True)
    for module in commands().values():
        module.add_parser(sub)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # a usage error (its line already printed), or --help
        return exc.code if isinstance(exc.code, int) else 0
    try:
        return commands()[args.command].main(args)
    except DiskFull as exc:  # not a bad invocation: what was finished stays, a rerun goes on from there
        print(f"ddrm-fast: error: {one_line(exc)}", file=sys.stderr)
        return 1
    except ValueError as exc:  # a bad invocation: arguments, unreadable files named on the command line
        print(f"ddrm-fast: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ddrm-fast: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("ddrm-fast: error: out of memory", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - no traceback reaches the user: the type and the first line
        print(f"ddrm-fast: error: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
        return 1
