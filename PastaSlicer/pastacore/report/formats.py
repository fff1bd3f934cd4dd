"""The report formats: each writer registers itself here by name, and everything that lists
formats (``pasta report --formats``, the Slicer report panel, the web app) reads this registry.

A new format is one module with a writer and one line::

    register(ReportFormat("txt", "Text", "report.txt: one line per lesion", ("report.txt",), write_txt))

``write(context, names)`` writes into ``context.folder`` (the staged report folder); formats that
share a writer (HTML and PDF share the key images, the DICOM SR needs the SEG) are written by one
call, ``names`` saying which of them were asked for. Formats are written in ``order`` (lower
first: the DICOM writer adds a note that the others show).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PastaError

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from ..progress import Progress


@dataclass(frozen=True)
class ReportFormat:
    name: str  # what --formats and the front ends call it: "json", "pdf"...
    label: str  # short title for a check box: "JSON", "PDF"
    description: str  # what it writes, in words
    outputs: tuple  # file patterns it writes in the report folder (what overwriting may replace)
    write: Callable  # write(context: ReportContext, names: tuple) -> None
    preselected: bool = True  # offered checked by the front ends
    order: int = 50  # lower is written first
    available: Callable | None = None  # () -> "" when it can be written, else why not
    listed: int = 50  # lower is listed first by the front ends (then in registration order)


@dataclass
class ReportContext:
    """What a writer gets: the report, the CT and labels it measured, the folder to write into."""

    report: object
    image: object
    labels: object
    folder: Path
    baseline_dir: object = None  # a follow-up's baseline report folder
    progress: Callable | None = None


_FORMATS: dict = {}  # name -> (ReportFormat, registration number)
_loaded = False


def register(fmt: ReportFormat) -> ReportFormat:
    """Add (or replace) the format ``fmt.name``."""
    _FORMATS[fmt.name] = (fmt, len(_FORMATS))
    return fmt


def unregister(name: str) -> None:
    _FORMATS.pop(name, None)


def report_formats() -> tuple:
    """Every registered :class:`ReportFormat`, as front ends list them (by ``listed``, then as
    they were registered). The formats of this package are found by importing its modules (a
    new format is one module with its ``register`` line); others register when imported."""
    global _loaded
    if not _loaded:
        import importlib
        import pkgutil

        _loaded = True
        for module in pkgutil.iter_modules(importlib.import_module(__package__).__path__):
            importlib.import_module(f"{__package__}.{module.name}")
    return tuple(fmt for fmt, _ in sorted(_FORMATS.values(), key=lambda item: (item[0].listed, item[1])))


def format_names() -> tuple:
    return tuple(f.name for f in report_formats())


def report_files() -> tuple:
    """Every file pattern a report folder can hold (what overwriting a report replaces)."""
    return tuple(dict.fromkeys(pattern for f in report_formats() for pattern in f.outputs))


def get_format(name: str) -> ReportFormat:
    formats = {f.name: f for f in report_formats()}
    if name not in formats:
        raise PastaError(f"unknown report format {name or '(none)'}; choose from {','.join(formats)}")
    fmt = formats[name]
    reason = fmt.available() if fmt.available else ""
    if reason:
        raise PastaError(f"the report format {name} cannot be written here: {reason}")
    return fmt


def choose_formats(names: Iterable[str] | None) -> tuple:
    """The :class:`ReportFormat` of each name (duplicates dropped), in writing order; an
    unknown or unavailable name is an error."""
    chosen = [get_format(name) for name in dict.fromkeys(names)]
    if not chosen:
        get_format("")  # no name: the unknown-format error, which lists the formats
    return tuple(sorted(chosen, key=lambda f: f.order))


def write_formats(
    context: ReportContext,
    formats: Sequence[ReportFormat],
    step: Progress = lambda fraction, message="": None,
) -> None:
    """Write the chosen formats: one call per writer, with the names asked of it."""
    groups: dict = {}
    for fmt in formats:
        groups.setdefault(fmt.write, []).append(fmt)
    for n, (write, group) in enumerate(groups.items()):
        step(n / len(groups), "/".join(f.label for f in group))
        write(context, tuple(f.name for f in group))
