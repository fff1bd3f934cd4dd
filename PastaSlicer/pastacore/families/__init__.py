"""Model families: each brings its network, weight layouts and preprocessing behind one interface.

PASTA's own network (``pastacore.networks``) is the default family. Every other family is a
sub-package ``pastacore/families/<name>/`` whose ``__init__`` imports no torch and registers
itself::

    from .. import ModelFamily, register

    register(ModelFamily(name="gcis", description="...", module=f"{__name__}.family", task="segmentation"))

Its ``module`` (imported on first use; torch allowed there) provides:

- ``check_config(config: dict) -> dict``: the validated config (it may hold the ``family``
  key), defaults filled in; a
  :class:`~pastacore.errors.PastaError` naming the field for a bad value.
- ``forward(checkpoint: Path, config: dict, inputs: dict, device: str) -> dict``: what
  ``pasta models forward CKPT IN.pt OUT.pt --config CFG.json`` writes to ``OUT.pt`` for the
  tensors of ``IN.pt``.
- ``verify(checkpoint: Path, config: dict) -> dict``: load the weights strictly into the
  configured network (``weights_only``) or refuse in one line; a JSON-ready summary that the
  model store keeps (``family_summary`` in ``model.json``).
- ``segmentation_model(checkpoint: Path, config: dict, description: dict) -> SegmentationModel``
  (task ``segmentation`` only): a network our standard pipeline runs, or one whose
  ``pipeline(volume, options, progress, is_cancelled)`` runs the model's own.
- optionally ``prompts(config: dict) -> list | None``: for models that take a text prompt
  (``SegmentOptions.prompt``), the known prompts the front ends offer; None when the model takes none.

Families are found by scanning this package: a new family is one sub-package and its
``register`` line, with no list to extend.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from ..errors import PastaError

TASKS = ("segmentation", "encoder")
FAMILY_KEY = "family"  # the key of a model config naming its family


@dataclass(frozen=True)
class ModelFamily:
    name: str  # the "family" value of a model config
    description: str  # one line for people
    module: str  # the implementation, imported on first use
    requirement_group: str = ""  # the requirement group (pip extra) it needs beyond the base list
    task: str = "segmentation"  # segmentation or encoder

    def implementation(self) -> ModuleType:
        """The family's module; a missing optional package is one line naming what to install."""
        try:
            return importlib.import_module(self.module)
        except ModuleNotFoundError as exc:
            from ..deps import install_hint

            raise PastaError(
                f"the {self.name} model family needs the Python package {exc.name!r}: {install_hint(self.requirement_group)}"
            ) from None

    def describe(self) -> str:
        return f"{self.name}: {self.description}"


_FAMILIES: dict[str, ModelFamily] = {}
_SCANNED = False


def register(family: ModelFamily) -> ModelFamily:
    """Add ``family`` (a second family of the same name replaces the first)."""
    if family.task not in TASKS:
        raise ValueError(f"model family {family.name}: task must be one of {TASKS}, got {family.task!r}")
    _FAMILIES[family.name] = family
    return family


def _scan() -> None:
    global _SCANNED
    if _SCANNED:
        return
    _SCANNED = True
    for module in pkgutil.iter_modules(__path__):
        if module.ispkg:
            importlib.import_module(f"{__name__}.{module.name}")


def families() -> list[ModelFamily]:
    """Every registered family, by name."""
    _scan()
    return [_FAMILIES[name] for name in sorted(_FAMILIES)]


def family_named(name: str) -> ModelFamily:
    _scan()
    family = _FAMILIES.get(str(name))
    if family is None:
        known = ", ".join(sorted(_FAMILIES)) or "none"
        raise PastaError(f"unknown model family {name!r} (known: {known})")
    return family


def family_of(config: dict, where: str = "the model config") -> ModelFamily:
    """The family a config names under ``"family"``."""
    if not isinstance(config, dict) or not isinstance(config.get(FAMILY_KEY), str):
        raise PastaError(f'{where} names no model family (a "{FAMILY_KEY}" key, e.g. "{FAMILY_KEY}": "gcis")')
    return family_named(config[FAMILY_KEY])


def read_model_config(path: str | Path) -> dict:
    """A model config file: a JSON object naming its family, checked by that family."""
    from ..fileio.jsonfile import read_json_object
    from ..fileio.readers import require_regular_file

    path = require_regular_file(path, "model config")
    return checked_config(read_json_object(path, f"the model config {path.name}"), path.name)


def checked_config(config: dict, where: str = "the model config") -> dict:
    """``config`` validated by its family (defaults filled in), keeping its ``family`` key."""
    family = family_of(config, where)
    checked = family.implementation().check_config(dict(config))
    return {**checked, FAMILY_KEY: family.name}
