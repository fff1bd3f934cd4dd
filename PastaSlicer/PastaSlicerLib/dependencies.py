"""Install PASTA's Python dependencies into Slicer's Python, when the user agrees.

Called from a button or before the first segmentation, never at import time. The
requirements are listed once, in ``pastacore.deps.REQUIREMENTS`` (``>=`` lower bounds).
PyTorch comes through the PyTorch extension (``PyTorchUtils``), which picks the build that
matches the GPU driver. Slicer's own numpy, SimpleITK and requests are never replaced.
"""

import importlib
import importlib.metadata
import logging
import os
import re
import tempfile

import slicer

REQUESTER = "PASTA"

# Provided by Slicer (numpy, SimpleITK, requests) or by the PyTorch extension (torch):
# a transitive requirement must never make pip replace them.
SKIP_PACKAGES = ["torch", "SimpleITK", "numpy", "requests"]


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

    The list itself lives in the core (``pastacore.deps.REQUIREMENTS``), the one place that
    also feeds the hub's dependency table and ``pasta info``.
    """
    from pastacore import deps

    return [r for r in deps.missing_requirements() if _distributionName(r) not in SKIP_PACKAGES]


def torchInstalled():
    return installedVersion("torch") is not None


def _installTorch():
    """Install PyTorch, preferably through the PyTorch extension. Returns True on success."""
    try:
        import PyTorchUtils
    except ImportError:
        PyTorchUtils = None
    if PyTorchUtils is not None:
        torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=True)
        return torch is not None
    logging.warning("PASTA: the PyTorch extension is not installed; installing torch with pip (CPU build may result)")
    slicer.util.pip_install("torch")
    return torchInstalled()


def _writeConstraints():
    """A pip constraints file pinning the installed versions of the packages never to replace."""
    lines = []
    for name in SKIP_PACKAGES:
        version = installedVersion(name)
        if version is not None:
            lines.append(f"{name}=={version}")
    handle, path = tempfile.mkstemp(prefix="pasta-constraints-", suffix=".txt")
    with os.fdopen(handle, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def _installPackages(requirements):
    try:
        import slicer.packaging as packaging
    except ImportError:
        packaging = None
    if packaging is not None and hasattr(packaging, "pip_ensure"):
        # Already confirmed by the user, so no second prompt here.
        packaging.pip_ensure(requirements, skip_packages=SKIP_PACKAGES, prompt_install=False, requester=REQUESTER)
        return
    # Slicer 5.10 has no slicer.packaging: install with pip, constrained so that numpy,
    # SimpleITK, requests and torch stay at the versions Slicer already has.
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
