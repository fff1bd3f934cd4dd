"""Progress bars on stderr for long command-line work.

Shown only on a terminal (``PASTA_PROGRESS=1`` forces them), and wiped when the work fails,
so that a failure leaves exactly one line on stderr: the ``error:`` line.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ..progress import Progress


def _wanted() -> bool:
    if os.environ.get("PASTA_PROGRESS") == "1":
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _tqdm():
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm if _wanted() else None


def _close(handle, failed: bool) -> None:
    if handle is None:
        return
    if failed:
        handle.leave = False  # tqdm clears its line instead of leaving it above the error
    handle.close()


@contextlib.contextmanager
def steps(total: int, description: str) -> Iterator[Callable[[str], None]]:
    """A progress bar counting ``total`` named steps; yields ``advance(label)``."""
    tqdm = _tqdm()
    if tqdm is None:
        yield lambda label="": None
        return
    handle = tqdm(
        total=total,
        desc=description,
        unit="step",
        file=sys.stderr,
        leave=True,
        bar_format="{desc}: {n_fmt}/{total_fmt} |{bar:20}| {elapsed} {postfix}",
    )

    def advance(label=""):
        handle.set_postfix_str(label, refresh=False)
        handle.update(1)

    failed = True
    try:
        yield advance
        failed = False
    finally:
        _close(handle, failed)


@contextlib.contextmanager
def bar(description: str) -> Iterator[Progress]:
    """A 0-100 % progress bar; yields ``progress(fraction, message)`` for core callbacks."""
    tqdm = _tqdm()
    if tqdm is None:
        yield lambda fraction, message="": None
        return
    handle = None

    def progress(fraction, message=""):
        nonlocal handle
        if handle is None:  # created on the first report, after the inputs were checked
            handle = tqdm(
                total=100,
                desc=description,
                file=sys.stderr,
                bar_format="{desc}: {percentage:3.0f}% |{bar:20}| {elapsed} {postfix}",
            )
        handle.n = int(round(100 * min(max(fraction, 0.0), 1.0)))
        handle.set_postfix_str(message, refresh=False)
        handle.refresh()

    failed = True
    try:
        yield progress
        failed = False
    finally:
        _close(handle, failed)
