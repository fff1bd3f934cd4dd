"""The two hooks every long piece of work takes: progress and cancel.

``progress(fraction, message)`` says how far the work is (0 to 1) and what it is doing;
``is_cancelled()`` says whether the user asked to stop. Either may be None.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[float, str], None]
Cancelled = Callable[[], bool]


def reporter(progress: Progress | None) -> Progress:
    """``progress``, or a hook that ignores every report."""
    return progress or _ignore


def _ignore(fraction: float, message: str = "") -> None:
    return None
