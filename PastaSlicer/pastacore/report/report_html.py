"""``report.html`` (with ``images/lesion_N.png``) and ``report.pdf``: one content
(:func:`.document.build_document`), laid out twice: as an HTML page here and as a paginated
document by :mod:`.report_pdf` (ReportLab). Each lesion's key-image figure
(:mod:`pastacore.report.key_images`; one window for the whole report) is drawn once and goes to
the PNG and the PDF page.
"""

from __future__ import annotations

import html
import io
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from .document import (  # noqa: F401  (the report's content; these names are read from here too)
    Bullets,
    Document,
    Figure,
    Heading,
    KeyValues,
    Paragraph,
    Table,
    build_document,
    comparison_rows,
    confidence_text,
    figure_title,
    recist_lines,
    role_text,
    table_rows,
)
from .formats import ReportFormat, register
from .key_images import lesion_figure, lesion_mask, report_window

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..geometry.volume import Volume
    from ..progress import Progress
    from .model import CaseReport


def write_html_pdf(
    report: CaseReport,
    image: Volume,
    labels: Volume,
    out_dir: str | Path,
    formats: Sequence[str] = ("html", "pdf"),
    progress: Progress | None = None,
    baseline_dir: str | Path | None = None,
) -> list:
    """Write ``report.html`` (+ images) and/or ``report.pdf`` into ``out_dir``; return the paths.

    ``baseline_dir``: the baseline report folder of a follow-up report; its key images are
    copied beside this report's (``images/baseline_lesion_N.png``) and shown side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    written = []
    window_name, window = report_window(image, [lesion.measurement for lesion in report.lesions])
    if "html" in formats:
        (out_dir / "images").mkdir(exist_ok=True)
    figures = []
    for n, lesion in enumerate(report.lesions):
        m = lesion.measurement
        box, mask = lesion_mask(labels.array, m)
        title, subtitle = figure_title(report, lesion)
        fig = lesion_figure(image, box, mask, m, title=title, window=window, subtitle=subtitle)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110, facecolor="black")
        plt.close(fig)
        src = f"images/lesion_{m.index}.png"
        figures.append((lesion, buffer.getvalue(), src))
        if "html" in formats:
            (out_dir / src).write_bytes(buffer.getvalue())
            written.append(out_dir / src)
        if progress:
            progress((n + 1) / max(1, len(report.lesions)), f"lesion {m.index}")
    document = build_document(report, figures, window_name, _pairs(report, baseline_dir, figures))
    if "pdf" in formats:
        from .report_pdf import write_pdf

        write_pdf(document, out_dir / "report.pdf", subject=report.disclaimer)
        written.append(out_dir / "report.pdf")
    if "html" in formats:
        written += [out_dir / p for p in _copy_baseline_images(report, baseline_dir, out_dir).values()]
        (out_dir / "report.html").write_text(render_html(document), encoding="utf-8")
        written.append(out_dir / "report.html")
    return written


def _pairs(report: CaseReport, baseline_dir, figures) -> list:
    """A follow-up's lesions seen at both time points: (pair row, baseline picture, follow-up picture)."""
    if not baseline_dir or not report.comparison:
        return []
    here = {lesion.number: (png, src) for lesion, png, src in figures}
    pairs = []
    for row in report.comparison.get("pairs", []):
        number = row.get("baseline")
        then = Path(baseline_dir) / "images" / f"lesion_{number}.png"
        picture = (then.read_bytes(), f"images/baseline_lesion_{number}.png") if number and then.is_file() else None
        now = here.get(row.get("followup"))
        if picture is not None or now is not None:
            pairs.append((row, picture, now))
    return pairs


def _copy_baseline_images(report, baseline_dir, out_dir) -> dict:
    """``{baseline lesion number: relative path}`` of the baseline key images copied here."""
    if not baseline_dir or not report.comparison:
        return {}
    copied = {}
    for row in report.comparison.get("pairs", []):
        number = row.get("baseline")
        source = Path(baseline_dir) / "images" / f"lesion_{number}.png"
        if number and source.is_file():
            name = f"images/baseline_lesion_{number}.png"
            shutil.copyfile(source, out_dir / name)
            copied[number] = name
    return copied


# -- the HTML page ---------------------------------------------------------------------------------

STYLE = """body{font-family:sans-serif;margin:1.5em;} table{border-collapse:collapse;font-size:0.85em;margin:0.5em 0}
td,th{border:1px solid #aaa;padding:3px 6px;text-align:left;vertical-align:top} .warning{color:#b00000;font-weight:bold}
.small{font-size:0.85em} tr.marked td{background:#fff0c0;font-weight:bold} figure{margin:1em 0}
img{max-width:100%;background:#000}"""


def render_html(document: Document) -> str:
    """The document as one HTML page."""
    e = html.escape
    parts = [
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{e(document.title)}</title>',
        f"<style>{STYLE}</style></head>\n<body><h1>{e(document.title)}</h1>",
        f'<p class="warning">{e(document.warning)}</p>',
    ]
    parts += [_html_block(block) for block in document.blocks]
    parts.append(f'<p class="warning">{e(document.warning)}</p></body></html>\n')
    return "\n".join(parts)


def _html_block(block) -> str:
    e = html.escape
    if isinstance(block, Heading):
        return f"<h2>{e(block.text)}</h2>"
    if isinstance(block, Paragraph):
        text = f"<b>{e(block.text)}</b>" if block.style == "strong" else e(block.text)
        return f'<p class="{block.style}">{text}</p>'
    if isinstance(block, KeyValues):
        return "<table>" + "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in block.rows) + "</table>"
    if isinstance(block, Table):
        head = "".join(f"<th>{e(c)}</th>" for c in block.columns)
        rows = ("<tr class='marked'>" if n in block.marked else "<tr>" for n in range(len(block.rows)))
        body = "".join(start + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for start, row in zip(rows, block.rows))
        table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        return f"<details><summary>{e(block.collapsed)}</summary>{table}</details>" if block.collapsed else table
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{e(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, Figure):
        return (
            f"<h2>{e(block.heading)}</h2>" if block.heading else ""
        ) + f'<figure><img src="{e(block.src)}" alt="{e(block.alt)}"><figcaption>{e(block.caption)}</figcaption></figure>'
    raise TypeError(f"unknown report block {type(block).__name__}")


def _write_html_pdf(context, names) -> None:
    write_html_pdf(context.report, context.image, context.labels, context.folder, names, baseline_dir=context.baseline_dir)


register(
    ReportFormat(
        "html",
        "HTML",
        "report.html with key images",
        ("report.html", "images/lesion_*.png", "images/baseline_lesion_*.png"),
        _write_html_pdf,
        order=20,
        listed=20,
    )
)
register(ReportFormat("pdf", "PDF", "report.pdf with key images", ("report.pdf",), _write_html_pdf, order=20, listed=30))
