"""Argument types shared by the subcommands: a bad value is a usage error, never a crash later."""

from __future__ import annotations

import argparse

SEED_MAX = 2 ** 32 - 1


def seed(text: str) -> int:
    """A random seed: a whole number from 0 to 2^32 - 1 (what numpy and torch both accept)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a seed is a whole number from 0 to {SEED_MAX}, got {text!r}") from None
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"a seed is a whole number from 0 to {SEED_MAX}, got {value}")
    return value
