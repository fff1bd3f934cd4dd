"""Write outputs all-or-nothing and never over the user's files by accident."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import PastaError


def check_output_path(path, overwrite: bool = False) -> Path:
    """Refuse an output that exists (unless ``overwrite``), is a folder, or cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise PastaError(f"output {path} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise PastaError(f"output {path} already exists; pass --overwrite to replace it")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise PastaError(f"output folder {parent} does not exist")
    _check_writable(parent)
    return path


def _check_writable(folder: Path) -> None:
    """Try it: permission bits say little for root, read-only mounts or special file systems."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError:
        raise PastaError(f"output folder {folder} is not writable") from None


@contextlib.contextmanager
def atomic_outputs(*paths, overwrite: bool = False):
    """Yield temporary paths, one per output; move them all into place only on success.

    Each temporary path has the output's own file name inside a hidden folder beside it, so
    writers that pick a format from the name (or store the name, like ``.mrb``) behave as
    for the real output. On any exception the temporary files go and no output is touched.
    """
    targets = [check_output_path(p, overwrite) for p in paths]
    staging = [Path(tempfile.mkdtemp(prefix=".pasta-", suffix=".part", dir=t.parent)) for t in targets]
    temps = [folder / target.name for folder, target in zip(staging, targets)]
    try:
        yield temps if len(temps) != 1 else temps[0]
        for temp, target in zip(temps, targets):
            if not temp.is_file():
                raise PastaError(f"writing {target} produced no file")
        for temp, target in zip(temps, targets):
            os.replace(temp, target)
    finally:
        for folder in staging:
            shutil.rmtree(folder, ignore_errors=True)


def check_output_dir(path, overwrite: bool = False) -> Path:
    """Refuse, before any work, an output folder that is a file or already holds files."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise PastaError(f"output {path} is a file; give a folder")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise PastaError(f"output folder {path} already holds files; pass --overwrite to replace them")
    return path


@contextlib.contextmanager
def atomic_directory(path, overwrite: bool = False):
    """Yield a temporary folder beside ``path``; move it into place on success."""
    path = check_output_dir(path, overwrite)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise PastaError(f"parent folder {parent} does not exist")
    _check_writable(parent)
    temp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temp, 0o777 & ~umask)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        yield temp
        if path.exists():
            backup = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=parent))
            os.replace(path, backup / "old")
            os.replace(temp, path)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(temp, path)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
