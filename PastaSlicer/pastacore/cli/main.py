"""``pasta``: the command line of PASTA for 3D Slicer.

Bad input or usage ends with exit code 2 and one line on stderr starting with ``error:``;
a traceback is shown only with ``--debug``.
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import PastaError

# Subcommand modules, each with ``add_parser(subparsers)``. Front ends living above the core (the
# web app) register theirs as ``pasta.commands`` entry points, so no arrow points up.
ENTRY_POINT_GROUP = "pasta.commands"
COMMANDS = ("standardize", "segment", "models", "info", "demo", "report", "synth", "dataset", "train-default", "train-attributes", "features", "train-head")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, as for every other error
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = _Parser(prog="pasta", description="PASTA pan-tumour CT workflow: standardise, segment, synthesise, report.")
    parser.add_argument("--version", action="version", version=f"pasta {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f".{name.replace('-', '_')}_cmd", __package__).add_parser(sub)
    for entry in _registered_commands():
        entry.load().add_parser(sub)
    return parser


def _registered_commands() -> list:
    from importlib.metadata import entry_points

    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except PastaError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; no output was written", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: say so in one line, keep the traceback for --debug
        if args.debug:
            raise
        print(f"error: internal error ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
              "rerun with --debug and report it", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
