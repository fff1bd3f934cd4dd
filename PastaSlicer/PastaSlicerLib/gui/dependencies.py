"""Install PASTA's Python dependencies into Slicer's Python, when the user agrees.

Called from a button or before the first job, never at import time. The requirements are
listed once, in ``Resources/requirements.txt`` (read by ``pastacore.deps``; ``>=`` lower bounds).
PyTorch comes through the PyTorch extension (``PyTorchUtils``), which picks the build that
matches the GPU driver. The packages Slicer bundles (numpy, SimpleITK, pydicom, pillow,
requests) are pinned to the installed versions, so pip picks e.g. a highdicom that fits
Slicer's pydicom instead of replacing it under Slicer's DICOM module.
"""

import importlib
import importlib.metadata
import logging
import os
import re
import tempfile

import slicer


def _distributionName(requirement):
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise ValueError(f"not a requirement: {requirement!r}")
    return match.group(1)


def installedVersion(name):
    """Installed version of distribution ``name``, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def missingRequirements(groups=()):
    """Requirement strings (``name>=x``) pip should install, of the base list and ``groups``; torch
    and Slicer's own packages excluded.

    The lists live in ``Resources/requirements.txt`` and ``Resources/requirements-<group>.txt``
    (read by ``pastacore.deps``), the one place that also feeds pyproject.toml's extras, the hub's
    dependency table and ``pasta info``.
    """
    from pastacore import deps

    return [r for r in deps.missing_requirements(tuple(groups)) if _distributionName(r) not in deps.KEEP_INSTALLED]


TORCH_FREE_ACTIONS = ("report", "compare")  # actions that never run a network


def needsTorch(action, choices):
    """Whether ``action`` (with the user's ``choices``) runs a network."""
    if action in TORCH_FREE_ACTIONS:
        return False
    if action in ("synth", "dataset"):
        return str(choices.get("backend", "procedural")).startswith("lesiondiffusion")
    return True


def torchInstalled():
    return installedVersion("torch") is not None


def _installTorch():
    """Install PyTorch, preferably through the PyTorch extension (the user has already agreed,
    so it does not ask again). Returns True on success."""
    try:
        import PyTorchUtils
    except ImportError:
        PyTorchUtils = None
    if PyTorchUtils is not None:
        torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False)
        return torch is not None
    logging.warning("PASTA: the PyTorch extension is not installed; installing torch with pip (CPU build may result)")
    slicer.util.pip_install("torch")
    return torchInstalled()


def _writeConstraints():
    """A pip constraints file keeping Slicer's own packages and torch as installed."""
    from pastacore import deps

    handle, path = tempfile.mkstemp(prefix="pasta-constraints-", suffix=".txt")
    with os.fdopen(handle, "w", encoding="utf-8") as f:
        f.write("\n".join(deps.constraints()) + "\n")
    return path


def _installPackages(requirements):
    """pip install, constrained so the packages Slicer bundles stay at their versions: pip then
    picks releases of the others that fit them (``slicer.packaging.pip_ensure``'s skip list
    would instead install a release whose own requirements are left unmet)."""
    constraints = _writeConstraints()
    try:
        with slicer.util.WaitCursor():
            slicer.util.pip_install(["-c", constraints, *requirements])
    finally:
        os.remove(constraints)


def _groupRequirements(group):
    from pastacore import deps

    return [s.requirement for s in deps.dependency_status((group,)) if s.group == group]


def ensureDependencies(includeTorch=True, askConfirmation=True, action=None, choices=None):
    """Install what is missing after asking the user. Returns True when everything is installed.

    ``action``: a user action (``segment``, ``finetune``...): its requirement groups
    (``pastacore.deps.groups_for_action``) and torch only when it runs a network. Returns False
    when the user declines, in testing mode (tests must not change the Python environment), or
    when an install did not complete. Raises nothing for a declined install; pip failures are
    logged and reported through the return value.
    """
    from pastacore import deps

    choices = choices or {}
    groups = deps.groups_for_action(action, **choices) if action else []
    if action:
        includeTorch = needsTorch(action, choices)
    missing = missingRequirements(groups)
    needTorch = includeTorch and not torchInstalled()
    if not missing and not needTorch:
        return True
    wanted = (["torch (through the PyTorch extension)"] if needTorch else []) + missing
    if slicer.app.testingEnabled():
        logging.warning("PASTA: not installing Python packages in testing mode: " + ", ".join(wanted))
        return False
    purposes = [deps.requirement_group(g).purpose for g in groups if any(r in missing for r in _groupRequirements(g))]
    if askConfirmation and not slicer.util.confirmOkCancelDisplay(
        "PASTA needs Python packages that are not installed yet. Install them now?\n\n"
        + "".join(f"{p}\n" for p in purposes)
        + "\nThis downloads several hundred megabytes and can take a few minutes.",
        detailedText="\n".join(wanted),
    ):
        return False
    try:
        if needTorch and not _installTorch():
            logging.error("PASTA: PyTorch was not installed")
            return False
        if missing:
            _installPackages(missing)
    except Exception as exc:  # pip errors come in several types; show one message
        logging.error(f"PASTA: installing Python packages failed: {exc}")
        slicer.util.errorDisplay(f"Installing Python packages failed: {exc}", detailedText="\n".join(wanted))
        return False
    importlib.invalidate_caches()
    stillMissing = missingRequirements(groups) + ([] if torchInstalled() or not includeTorch else ["torch"])
    if stillMissing:
        logging.error("PASTA: still missing after install: " + ", ".join(stillMissing))
        return False
    return True
