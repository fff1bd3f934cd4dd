"""Argument types shared by the subcommands: a bad value is a usage error, never a crash later."""

from __future__ import annotations

import argparse

SEED_MAX = 2**32 - 1


def seed(text: str) -> int:
    """A random seed: a whole number from 0 to 2^32 - 1 (what numpy and torch both accept)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a seed is a whole number from 0 to {SEED_MAX}, got {text!r}") from None
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"a seed is a whole number from 0 to {SEED_MAX}, got {value}")
    return value


def non_negative(text: str) -> float:
    """A finite number >= 0 (a size or a probability limit)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not (value >= 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def lesion_numbers(text: str) -> list:
    """Lesion numbers of a report, comma-separated ("1,3")."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected lesion numbers such as 1,3, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected lesion numbers such as 1,3 (from 1), got {text!r}")
    return values
