"""`ddrm-fast` / `python -m ddrm_fast`."""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional


def _parser() -> argparse.ArgumentParser:
    from .demo import TASKS

    p = argparse.ArgumentParser(prog="ddrm-fast", description="Fast DDRM image restoration.")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="restore a synthetic image with the exact Gaussian-prior model and print PSNR")
    d.add_argument("--task", choices=TASKS + ("all",), default="all")
    d.add_argument("--sigma-y", type=float, default=0.05, help="measurement noise std, images in [-1, 1]")
    d.add_argument("--steps", type=int, default=20)
    d.add_argument("--size", type=int, default=64, help="image side (a multiple of 4)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--backend", default="auto", choices=["auto", "reference", "cpu", "cuda"])
    from . import bench, restore, train

    restore.add_parser(sub)
    train.add_parser(sub)
    bench.add_parser(sub)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from . import demo

            return demo.main(args)
        if args.command == "restore":
            from . import restore

            return restore.main(args)
        if args.command == "bench":
            from . import bench

            return bench.main(args)
        if args.command == "train":
            from . import train

            return train.main(args)
    except ValueError as exc:  # bad arguments: one line, nonzero exit
        print(f"ddrm-fast: error: {exc}", file=sys.stderr)
        return 2
    return 1
