"""``pasta``: the command line of PASTA for 3D Slicer.

Bad input or usage ends with exit code 2 and one line on stderr starting with ``error:``;
a traceback is shown only with ``--debug``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING

from .. import __version__
from ..errors import PastaError, command_line_flag

if TYPE_CHECKING:
    from collections.abc import Sequence


# Subcommand modules, each with ``add_parser(subparsers)``. Front ends living above the core (the
# web app) register theirs as ``pasta.commands`` entry points, so no arrow points up.
ENTRY_POINT_GROUP = "pasta.commands"
COMMANDS = (
    "standardize",
    "segment",
    "models",
    "info",
    "demo",
    "report",
    "compare",
    "synth",
    "dataset",
    "train-default",
    "finetune",
    "pretrain",
    "train-attributes",
    "features",
    "train-head",
    "patches",
    "batch",
    "serve",
)


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


class Interrupted(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every ``finally`` removes its temporary files."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_interrupted(signum, frame):
    raise Interrupted(signum)


@contextlib.contextmanager
def _signals_raise():
    """SIGTERM raises :class:`Interrupted` (SIGINT already raises KeyboardInterrupt)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _quiet(debug: bool):
    """Unless ``--debug``: no Python warnings or library log lines, and what native code prints on
    descriptor 2 (ITK, NIfTI, VTK) kept aside, so stderr holds our own lines only."""
    from ..native import show_native_output

    if debug:
        show_native_output(True)
        try:
            yield
        finally:
            show_native_output(False)
        return
    import logging
    import warnings

    from ..native import captured_stderr

    own = _stderr_of_our_own()
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), captured_stderr():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)
        if own is not None:
            own.flush()
            sys.stderr = sys.__stderr__ if sys.stderr is own else sys.stderr
            own.close()


def _stderr_of_our_own():
    """When ``sys.stderr`` writes to descriptor 2, give it a descriptor of its own first."""
    try:
        if sys.stderr is None or sys.stderr.fileno() != 2:
            return None
    except (AttributeError, ValueError, OSError):
        return None  # e.g. pytest's capture object: it does not use descriptor 2
    sys.stderr.flush()
    stream = os.fdopen(os.dup(2), "w", buffering=1, encoding=sys.stderr.encoding or "utf-8", errors="backslashreplace")
    sys.stderr = stream
    return stream


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    with _signals_raise(), _quiet(args.debug), _outputs_released():
        try:
            return int(args.func(args) or 0)
        except PastaError as exc:
            if args.debug:
                raise
            print(f"error: {readable(exc.render(command_line_flag))}", file=sys.stderr)
            return 2
        except BrokenPipeError:  # `pasta ... | head` closed our output early: not an error of ours
            _discard_stdout()
            return 0
        except KeyboardInterrupt as exc:
            signum = getattr(exc, "signum", signal.SIGINT)
            print(f"error: interrupted ({signal.Signals(signum).name}); unfinished outputs were removed", file=sys.stderr)
            return 128 + int(signum)
        except Exception as exc:  # a bug: say so in one line, keep the traceback for --debug
            if args.debug:
                raise
            first = str(exc).splitlines()[0] if str(exc) else ""
            print(
                f"error: internal error ({type(exc).__name__}: {readable(first)}); rerun with --debug and report it",
                file=sys.stderr,
            )
            return 1


@contextlib.contextmanager
def _outputs_released():
    """The outputs a command claimed (pastacore.fileio.claims) are free again when it ends."""
    from ..fileio.claims import release_all

    try:
        yield
    finally:
        release_all()


LONG_WORD = 120  # a path or value longer than this is shortened in the middle in messages


def readable(message: str) -> str:
    """``message`` with every overlong word (a 4,000-character path) shortened to its two ends."""
    return " ".join(w if len(w) <= LONG_WORD else f"{w[:50]}...{w[-50:]}" for w in message.split(" "))


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so flushing it at exit does not raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":
    sys.exit(main())
