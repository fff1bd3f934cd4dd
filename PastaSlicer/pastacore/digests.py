"""SHA256 of files: how models, sample downloads, reports and cohort records identify bytes."""

from __future__ import annotations

import hashlib
from pathlib import Path

BLOCK = 1 << 20  # bytes read at a time


def sha256_of(path: str | Path) -> str:
    """The SHA256 (hex) of the bytes of the file at ``path``, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()
