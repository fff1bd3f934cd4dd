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


def missingRequirements():
    """Requirement strings (``name>=x``) pip should install; torch and Slicer's own packages excluded.

    The list itself lives in ``Resources/requirements.txt`` (read by ``pastacore.deps``), the one
    place that also feeds pyproject.toml, the hub's dependency table and ``pasta info``.
    """
    from pastacore import deps

    return [r for r in deps.missing_requirements() if _distributionName(r) not in deps.KEEP_INSTALLED]


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


def ensureDependencies(includeTorch=True, askConfirmation=True):
    """Install what is missing after asking the user. Returns True when everything is installed.

    Returns False when the user declines, in testing mode (tests must not change the
    Python environment), or when an install did not complete. Raises nothing for a declined
    install; pip failures are logged and reported through the return value.
    """
    missing = missingRequirements()
    needTorch = includeTorch and not torchInstalled()
    if not missing and not needTorch:
        return True
    wanted = (["torch (through the PyTorch extension)"] if needTorch else []) + missing
    if slicer.app.testingEnabled():
        logging.warning("PASTA: not installing Python packages in testing mode: " + ", ".join(wanted))
        return False
    if askConfirmation and not slicer.util.confirmOkCancelDisplay(
        "PASTA needs Python packages that are not installed yet. Install them now?\n\n"
        "This downloads several hundred megabytes and can take a few minutes.",
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
    stillMissing = missingRequirements() + ([] if torchInstalled() or not includeTorch else ["torch"])
    if stillMissing:
        logging.error("PASTA: still missing after install: " + ", ".join(stillMissing))
        return False
    return True
