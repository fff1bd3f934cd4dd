"""The user's actions, one module each: the options a user chooses (a frozen dataclass every
front end builds) and ``run(options, inputs, progress, is_cancelled)``.

The command line, ``pasta batch``, the task process behind the Slicer modules and the web app,
and the server all reach the core through these, so one choice has one name everywhere.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from ..errors import PastaError

# Each action module defines OPTIONS (its options dataclass), INPUTS (what it reads) and
# run(options, inputs, progress, is_cancelled) returning a result with to_dict() and volumes();
# optionally write(result, options, **output) for what it writes where the user said.


def action_names() -> list[str]:
    """Every action, found by scanning this package (a new action is one module defining OPTIONS)."""
    modules = (importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__))
    return sorted(m.__name__.rsplit(".", 1)[1] for m in modules if hasattr(m, "OPTIONS"))


def action(name: str) -> ModuleType:
    """The module of the action ``name`` (``segment``, ``synth``, ``report`` ...)."""
    key = str(name).replace("-", "_")
    if key not in action_names():
        raise PastaError(f"unknown action {name!r}; known: {', '.join(action_names())}")
    return importlib.import_module(f"{__name__}.{key}")


def inputs_from(module: ModuleType, data: dict) -> object:
    """The action's inputs dataclass from the dict of a job (Volumes already loaded)."""
    build = getattr(module.INPUTS, "from_dict", None)
    return build(data) if build is not None else module.INPUTS(**data)
