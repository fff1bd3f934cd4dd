"""Progress bars on stderr for long command-line work (quiet when not a terminal, unless forced)."""

from __future__ import annotations

import contextlib
import sys


@contextlib.contextmanager
def steps(total: int, description: str):
    """A progress bar counting ``total`` named steps; yields ``advance(label)``."""
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    if tqdm is None:
        def advance(label=""):
            print(f"  {label}", file=sys.stderr)
        yield advance
        return
    bar = tqdm(total=total, desc=description, unit="step", file=sys.stderr, leave=True,
               bar_format="{desc}: {n_fmt}/{total_fmt} |{bar:20}| {elapsed} {postfix}")
    try:
        def advance(label=""):
            bar.set_postfix_str(label, refresh=False)
            bar.update(1)
        yield advance
    finally:
        bar.close()


@contextlib.contextmanager
def bar(description: str):
    """A 0-100 % progress bar; yields ``progress(fraction, message)`` for core callbacks."""
    try:
        from tqdm import tqdm
    except ImportError:
        yield lambda fraction, message="": None
        return
    handle = None

    def progress(fraction, message=""):
        nonlocal handle
        if handle is None:  # created on the first report, after the inputs were checked
            handle = tqdm(total=100, desc=description, file=sys.stderr,
                          bar_format="{desc}: {percentage:3.0f}% |{bar:20}| {elapsed} {postfix}")
        handle.n = int(round(100 * min(max(fraction, 0.0), 1.0)))
        handle.set_postfix_str(message, refresh=False)
        handle.refresh()

    try:
        yield progress
    finally:
        if handle is not None:
            handle.close()
