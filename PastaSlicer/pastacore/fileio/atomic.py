"""The one place that writes outputs: checked before any work, all-or-nothing, verified.

* :func:`check_outputs` refuses, before any work, two outputs on one path, an output that is
  an input, a suffix the writer cannot write, a missing or unwritable folder, a name too long
  for the file system, and an existing file unless ``overwrite``.
* :func:`atomic_outputs` yields temporary paths in a hidden ``.pasta-*.part`` folder beside
  the outputs; when the body succeeds every file is verified (its header read back and its
  data counted, see :mod:`pastacore.fileio.verify`), flushed to disk and only then moved into
  place. A failed write (disk full, file-size limit, quota), an exception or an interrupt
  (SIGINT, SIGTERM: the command line turns both into exceptions) leaves the previous files as
  they were and no temporary file behind.
* :func:`atomic_directory` does the same for a folder of outputs. In an existing folder only
  the command's own files (``owned`` patterns) are replaced; every other file there is kept.

Write errors are worded once, here: ``could not write NAME: no space left on device``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import tempfile
import threading
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from ..errors import PastaError, option
from . import claims

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence


STAGING_PREFIX, STAGING_SUFFIX = ".pasta-", ".part"
WRITE_REASONS = {
    errno.ENOSPC: "no space left on device",
    errno.EFBIG: "file too large (the file-size limit, ulimit -f, or the file system's maximum)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EIO: "input/output error (failing disk or lost network share?)",
    errno.ENAMETOOLONG: "file name too long for this file system",
}


# --- wording write failures ---------------------------------------------------------------


def write_problem(folder: str | Path) -> str | None:
    """Why writes into ``folder`` fail, when the file system says so (full, size limit)."""
    try:
        stats = os.statvfs(folder)
        if stats.f_bavail * stats.f_frsize < (1 << 16) or (stats.f_files and stats.f_favail == 0):
            return WRITE_REASONS[errno.ENOSPC]
    except (OSError, AttributeError):
        pass
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
        if soft != resource.RLIM_INFINITY:
            biggest = max((p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()), default=0)
            if biggest >= soft:
                return WRITE_REASONS[errno.EFBIG]
    except (ImportError, OSError, ValueError):
        pass
    return None


def write_error(
    name: str | Path, exc: BaseException | None = None, folder: str | Path | None = None, detail: str | None = None
) -> PastaError:
    """The one-line error of a failed write of ``name``."""
    reason = WRITE_REASONS.get(getattr(exc, "errno", None)) if exc is not None else None
    reason = reason or (write_problem(folder) if folder is not None else None)
    if reason is None:
        lines = str(exc).strip().splitlines() if exc is not None else []
        reason = detail or getattr(exc, "strerror", None) or (lines[-1][:160] if lines else "failed")
    return PastaError(f"could not write {name}: {reason}")


def _is_write_failure(exc: BaseException, folder) -> bool:
    """An OSError of the file system, or any error while the disk is full or at the size limit."""
    if isinstance(exc, OSError) and exc.errno in WRITE_REASONS:
        return True
    return isinstance(exc, (OSError, RuntimeError)) and write_problem(folder) is not None


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while outputs are moved into place or temporary files removed.

    The signals are caught and remembered (not blocked: another thread of the process could
    receive a blocked one) and handed to the previous handlers when the block ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending = []
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, lambda number, frame: pending.append(number))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if pending:
            handler = previous[pending[0]]
            if callable(handler):
                handler(pending[0], None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), pending[0])


# --- checking before any work --------------------------------------------------------------


def _suffix_ok(path: Path, suffixes) -> bool:
    return not suffixes or path.name.lower().endswith(tuple(s.lower() for s in suffixes))


def _same_file(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _check_name_length(path: Path, folder: Path) -> None:
    total = len(os.fsencode(os.path.abspath(path)))
    try:
        most = os.pathconf("/" if os.name != "nt" else ".", "PC_PATH_MAX")
    except (OSError, ValueError, AttributeError):
        most = 4096 if os.name != "nt" else 32767
    if total >= most:
        raise PastaError(f"output path {str(path)[:40]}... is {total} bytes long; this system allows paths under {most}")
    try:
        limit = os.pathconf(folder if folder.is_dir() else ".", "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        limit = 255
    length = len(os.fsencode(path.name))
    if length > limit:
        raise PastaError(
            f"output name {path.name[:40]}... is {length} bytes long; this file system allows at most "
            f"{limit}: choose a shorter name"
        )


def _check_writable(folder: Path) -> None:
    """Try it: permission bits say little for root, read-only mounts or special file systems."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        reason = WRITE_REASONS.get(exc.errno, "")
        raise PastaError(f"output folder {folder} is not writable" + (f" ({reason})" if reason else "")) from None


def _parent(path: Path) -> Path:
    return path.parent if str(path.parent) else Path(".")


def check_output_path(
    path: str | Path, overwrite: bool = False, suffixes: Sequence[str] | None = None, claim: bool = True
) -> Path:
    """Refuse an output that exists (unless ``overwrite``), is a folder, cannot be written, or
    does not end with one of ``suffixes`` (when given). ``claim``: hold the output's claim
    (:mod:`.claims`) until the command ends, so no other run writes it meanwhile."""
    path = Path(path)
    _check_name_length(path, _parent(path))
    if path.is_dir():
        raise PastaError(f"output {path} is a folder; give a file name")
    if not _suffix_ok(path, suffixes):
        raise PastaError(f"cannot write {path.name}: use {', '.join(suffixes)}")
    if suffixes and not path.name.endswith(tuple(suffixes)):
        wanted = next(s for s in suffixes if path.name.lower().endswith(s.lower()))
        raise PastaError(f"cannot write {path.name}: write its suffix in lower case ({wanted}), as image readers expect")
    if claim and not is_staged(path) and _parent(path).is_dir():
        claims.acquire(path)
    if path.exists() and not overwrite:
        raise PastaError(f"output {path} already exists; pass {option('overwrite')} to replace it")
    parent = _parent(path)
    if not parent.is_dir():
        raise PastaError(f"output folder {parent} does not exist")
    _check_writable(parent)
    return path


def check_outputs(outputs: Iterable[str | Path | tuple], *, inputs: Iterable[str | Path] = (), overwrite: bool = False) -> list:
    """Check every output before any work (see :func:`check_output_path`), and refuse two
    outputs on one path or an output that is one of ``inputs``.

    ``outputs``: paths, or ``(path, allowed suffixes)`` pairs; ``None`` entries are skipped.
    ``inputs``: the files the command reads (``None`` entries skipped).
    """
    checked = []
    for item in outputs:
        path, suffixes = item if isinstance(item, tuple) else (item, None)
        if path is None or path == "":
            continue
        path = Path(path)
        _check_name_length(path, _parent(path))
        for earlier in checked:
            if _same_file(earlier, path):
                raise PastaError(f"two outputs are the same file ({path}); give each output its own name")
        for source in inputs:
            if source and _same_file(Path(source), path):
                raise PastaError(f"output {path} is also an input; write the result to another file")
        checked.append(check_output_path(path, overwrite, suffixes))
    return checked


def check_folder_apart(folder: str | Path, inputs: Iterable[str | Path]) -> None:
    """Refuse an output folder that is an input, or lies inside an input folder (a DICOM
    folder would then hold our outputs the next time it is read)."""
    shown, folder = folder, Path(os.path.realpath(folder))
    for given in inputs:
        if not given:
            continue
        source = Path(os.path.realpath(given))
        if folder == source:
            raise PastaError(f"output folder {shown} is the input {given}; choose a folder apart from the inputs")
        if source.is_dir() and source in folder.parents:
            raise PastaError(f"output folder {shown} lies inside the input folder {given}; choose a folder apart from the inputs")


# --- writing files --------------------------------------------------------------------------


def is_staged(path: str | Path) -> bool:
    """True for a path inside a staging folder of this module (already a temporary output)."""
    return any(p.name.startswith(STAGING_PREFIX) and p.name.endswith(STAGING_SUFFIX) for p in Path(path).parents)


STALE_UNNAMED_SECONDS = 3600  # a staging folder naming no process (older versions) is left this long


def _staging_pid(name: str) -> int | None:
    """The process a staging folder's name records (``.pasta-<pid>-<random>.part``), if any."""
    head = name[len(STAGING_PREFIX) :].split("-", 1)[0]
    return int(head) if head.isdigit() else None


def remove_stale_staging(folder: str | Path) -> int:
    """Remove what killed runs left in ``folder``: staging folders of processes that have ended
    (and unnamed ones over an hour old). Returns how many were removed."""
    import time

    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        name = entry.name
        if not (
            name.startswith(STAGING_PREFIX) and name.endswith((STAGING_SUFFIX, ".old")) and entry.is_dir(follow_symlinks=False)
        ):
            continue
        pid = _staging_pid(name)
        try:
            stale = (
                not claims.process_alive(pid) if pid is not None else time.time() - entry.stat().st_mtime > STALE_UNNAMED_SECONDS
            )
        except OSError:
            continue
        if stale and pid != os.getpid():
            shutil.rmtree(entry.path, ignore_errors=True)
            removed += 1
    return removed


def _new_staging(folder: Path) -> Path:
    remove_stale_staging(folder)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", suffix=STAGING_SUFFIX, dir=folder))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes it private; what ends up there is an ordinary output
    return staging


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if path.is_dir() else os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EBADF, errno.EROFS):
            raise
    finally:
        os.close(fd)


def _finish(temp: Path, name: str) -> None:
    """Verify one written file and flush it to disk; raises the one-line write error."""
    from .verify import verify_output

    if not temp.is_file():
        raise PastaError(f"could not write {name}: no file was produced")
    problem = verify_output(temp)
    if problem:
        raise write_error(name, folder=temp.parent, detail=problem)
    try:
        _fsync(temp)
    except OSError as exc:
        raise write_error(name, exc, temp.parent) from None


def _remove(folder: Path) -> None:
    with signals_deferred():
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def atomic_outputs(*paths, overwrite: bool = False) -> Iterator[Path | list[Path]]:
    """Yield temporary paths, one per output; move them all into place only on success.

    Each temporary path has the output's own file name inside a hidden folder beside it, so
    writers that pick a format from the name (or store the name, like ``.mrb``) behave as
    for the real output. On any exception the temporary files go and no output is touched.
    Paths that are already inside a staging folder are yielded as they are: the outer write
    verifies and moves them.
    """
    if paths and all(is_staged(p) for p in paths):
        yield [Path(p) for p in paths] if len(paths) != 1 else Path(paths[0])
        return
    targets = [check_output_path(p, overwrite, claim=False) for p in paths]
    with claims.claimed(*targets):
        for target in targets:  # again under the claims: a run that finished since the check is not replaced
            check_output_path(target, overwrite, claim=False)
        yield from _write_files(targets, overwrite)


def _write_files(targets: list, overwrite: bool) -> Iterator[Path | list[Path]]:
    staging = [_new_staging(_parent(t)) for t in targets]
    temps = [folder / target.name for folder, target in zip(staging, targets)]
    try:
        try:
            yield temps if len(temps) != 1 else temps[0]
        except (OSError, RuntimeError) as exc:
            folder = staging[0]
            if not _is_write_failure(exc, folder):
                raise
            name = next(
                (t.name for s, t in zip(staging, targets) if str(getattr(exc, "filename", "") or "").startswith(str(s))),
                targets[0].name,
            )
            raise write_error(name, exc, folder) from None
        for temp, target in zip(temps, targets):
            _finish(temp, target.name)
        if not overwrite:
            for target in targets:
                if target.exists():
                    raise PastaError(
                        f"output {target} was written by another program while this run worked; nothing was replaced"
                    )
        with signals_deferred():
            for temp, target in zip(temps, targets):
                try:
                    os.replace(temp, target)
                except OSError as exc:
                    raise write_error(target.name, exc, _parent(target)) from None
    finally:
        for folder in staging:
            _remove(folder)


# --- writing folders ------------------------------------------------------------------------


def _matches(relative: str, patterns) -> bool:
    parts = PurePosixPath(relative).parts
    for pattern in patterns:
        wanted = PurePosixPath(pattern).parts
        if len(wanted) == len(parts) and all(fnmatchcase(p, w) for p, w in zip(parts, wanted)):
            return True
    return False


def _files_under(folder: Path) -> list:
    """Relative POSIX paths of the files under ``folder``, skipping our own staging folders."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(STAGING_PREFIX)]
        for name in files:
            found.append(Path(root, name).relative_to(folder).as_posix())
    return sorted(found)


def owned_files(folder: str | Path, owned: Sequence[str]) -> list:
    """The files under ``folder`` that a command writing ``owned`` patterns would replace."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return [f for f in _files_under(folder) if owned is None or _matches(f, owned)]


def check_output_dir(path: str | Path, overwrite: bool = False, owned: Sequence[str] | None = None, claim: bool = True) -> Path:
    """Refuse, before any work, an output folder that is a file, has no parent folder, cannot
    be written, or already holds the command's own files (``owned`` patterns; None: any file)
    unless ``overwrite``. Other files in the folder are fine: they are kept."""
    path = Path(path)
    _check_name_length(path, _parent(path))
    if path.exists() and not path.is_dir():
        raise PastaError(f"output {path} is a file; give a folder")
    if claim and not is_staged(path) and _parent(path).is_dir():
        claims.acquire(path, "output folder")  # held until the command ends: no other run writes there meanwhile
    if path.is_dir():
        ours = owned_files(path, owned)
        if ours and not overwrite:
            shown = ", ".join(ours[:3]) + (", ..." if len(ours) > 3 else "")
            if owned is None:
                raise PastaError(f"output folder {path} already holds files; pass {option('overwrite')} to replace them")
            raise PastaError(
                f"output folder {path} already holds outputs of an earlier run ({shown}); pass "
                f"{option('overwrite')} to replace them (other files there are kept)"
            )
        _check_writable(path)
        return path
    parent = _parent(path)
    if not parent.is_dir():
        raise PastaError(f"parent folder {parent} does not exist")
    _check_writable(parent)
    return path


def _verify_tree(staging: Path, shown: str) -> None:
    for relative in _files_under(staging):
        _finish(staging / relative, f"{shown}/{relative}" if shown else relative)
    _fsync(staging)


def _swap_in(staging: Path, target: Path, owned, overwrite: bool) -> None:
    """Move the files written in ``staging`` (inside ``target``) into ``target``, replacing
    only ``owned`` files of an earlier run; undo everything if a move fails."""
    new = _files_under(staging)
    old = owned_files(target, owned)
    if old and not overwrite:
        raise PastaError(f"output folder {target} gained outputs of another run while this one worked; nothing was replaced")
    backup = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", suffix=".old", dir=target))
    moved_old, moved_new, made = [], [], []
    try:
        for relative in old:
            (backup / relative).parent.mkdir(parents=True, exist_ok=True)
            os.replace(target / relative, backup / relative)
            moved_old.append(relative)
        for relative in new:
            destination = target / relative
            for folder in reversed(destination.relative_to(target).parents[:-1]):
                if not (target / folder).is_dir():
                    (target / folder).mkdir()
                    made.append(target / folder)
            os.replace(staging / relative, destination)
            moved_new.append(relative)
    except OSError as exc:
        for relative in reversed(moved_new):
            with contextlib.suppress(OSError):
                os.replace(target / relative, staging / relative)
        for relative in reversed(moved_old):
            with contextlib.suppress(OSError):
                os.replace(backup / relative, target / relative)
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise write_error(target.name or str(target), exc, target) from None
    finally:
        shutil.rmtree(backup, ignore_errors=True)
    for relative in old:  # folders that held only our earlier files and are now empty
        for folder in PurePosixPath(relative).parents[:-1]:
            with contextlib.suppress(OSError):
                (target / folder).rmdir()


@contextlib.contextmanager
def atomic_directory(path: str | Path, overwrite: bool = False, owned: Sequence[str] | None = None) -> Iterator[Path]:
    """Yield a temporary folder; on success its files become the folder ``path``'s.

    A new folder is written beside ``path`` and renamed into place. In an existing folder the
    files are written in a hidden staging folder inside it and moved in one by one, replacing
    only the files that match ``owned`` (relative POSIX patterns such as ``images/lesion_*.png``);
    ``owned=None`` means the folder is entirely ours and is replaced as a whole. Files that
    match no pattern are kept. A staging folder given as ``path`` (nested writes) is used as is.
    """
    path = Path(path)
    if is_staged(path):
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    path = check_output_dir(path, overwrite, owned, claim=False)
    with claims.claimed(path, what="output folder"):
        check_output_dir(path, overwrite, owned, claim=False)  # again under the claim: a run that finished since is not replaced
        yield from _write_folder(path, overwrite, owned)


def _write_folder(path: Path, overwrite: bool, owned) -> Iterator[Path]:
    inside = path.is_dir() and owned is not None
    staging = _new_staging(path if inside else _parent(path))
    shown = path.name or str(path)
    try:
        try:
            yield staging
        except (OSError, RuntimeError) as exc:
            if not _is_write_failure(exc, staging):
                raise
            filename = str(getattr(exc, "filename", "") or "")
            relative = Path(filename).relative_to(staging).as_posix() if filename.startswith(str(staging) + os.sep) else ""
            raise write_error(f"{shown}/{relative}" if relative else shown, exc, staging) from None
        _verify_tree(staging, shown)
        with signals_deferred():
            if inside:
                _swap_in(staging, path, owned, overwrite)
            elif path.exists():
                backup = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", suffix=".old", dir=_parent(path)))
                os.replace(path, backup / "old")
                os.replace(staging, path)
                shutil.rmtree(backup, ignore_errors=True)
            else:
                try:
                    os.replace(staging, path)
                except OSError as exc:
                    raise write_error(shown, exc, _parent(path)) from None
    finally:
        _remove(staging)
