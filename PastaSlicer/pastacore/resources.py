"""Locate the extension-wide data files in the top-level ``Resources/`` folder.

Label names, terminology codes, the attribute vocabulary and the model manifest are data,
kept once in ``Resources/`` and read here. The folder is found (in order) through the
``PASTA_RESOURCES`` environment variable, as package data of an installed wheel
(``pastacore/_resources``), next to the module folders in a Slicer install tree
(``PastaResources``), or in the source checkout (``Resources`` two levels up).
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import PastaError

if TYPE_CHECKING:
    from typing import Any


_MARKER = "terminology.json"


def resources_dir() -> Path:
    here = Path(__file__).resolve().parent
    candidates = []
    if os.environ.get("PASTA_RESOURCES"):
        candidates.append(Path(os.environ["PASTA_RESOURCES"]))
    candidates += [here / "_resources", here.parent / "PastaResources", here.parent.parent / "Resources"]
    for folder in candidates:
        if (folder / _MARKER).is_file():
            return folder
    raise PastaError("the PASTA Resources folder was not found; reinstall the extension or set PASTA_RESOURCES")


@functools.cache
def load_json(name: str) -> Any:
    """Parse ``Resources/<name>`` once per process."""
    path = resources_dir() / name
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PastaError(f"cannot read resource {name}: {exc}") from exc
