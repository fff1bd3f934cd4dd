"""``pasta info``: versions of the required packages and the torch device a run would use."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="show installed dependencies and the compute device")
    p.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from .. import __version__, deps

    print(f"pastacore {__version__}")
    for status in deps.dependency_status():
        mark = "ok" if status.ok else "MISSING" if status.installed is None else "too old"
        print(f"  {status.name:<10} {status.installed or '-':<14} {status.required:<8} {mark:<8} {status.purpose}")
    print(f"device: {deps.torch_device_info(args.device).describe()}")
