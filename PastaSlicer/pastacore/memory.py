"""Refuse, before allocating, an array larger than the machine's memory, with the figures."""

from __future__ import annotations

import os

from .errors import PastaError

GIB = float(1 << 30)


def machine_memory() -> int | None:
    """Physical memory in bytes (None where the system does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(nbytes: float, what: str, hint: str = "") -> None:
    """Raise when ``nbytes`` (what a step needs at its peak) exceed the machine's memory."""
    total = machine_memory()
    if total is not None and nbytes > total:
        raise PastaError(
            f"{what} would need about {_gib(nbytes)} of memory; this machine has {_gib(total)}" + (f": {hint}" if hint else "")
        )


def _gib(nbytes: float) -> str:
    gib = nbytes / GIB
    return f"{gib:,.1f} GiB" if gib < 1e6 else f"{gib:.2g} GiB"
