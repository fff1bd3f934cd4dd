"""``report.html`` (with ``images/lesion_N.png``) and ``report.pdf`` (matplotlib's PdfPages).

Both hold the case identifiers, where the segmentation came from (model, version, checksum, or
that it is unknown), a table of the lesions (most confident first, with their status and RECIST
role), the RECIST 1.1 target lesions and their sum of diameters, what was left under the
reporting floor, for a follow-up the response with both time points side by side, one
key-image figure per lesion (see :mod:`pastacore.report.key_images`; one window for the whole
report), notes and the disclaimer. Each figure is drawn once and written to the PNG and the
PDF page.
"""

from __future__ import annotations

import html
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from .assess import status_text
from .formats import ReportFormat, register
from .key_images import lesion_figure, lesion_mask, report_window

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ..geometry.volume import Volume
    from .model import CaseReport, LesionReport


COLUMNS = (
    "#",
    "lesion",
    "organ",
    "confidence (mean / max)",
    "status",
    "RECIST 1.1",
    "volume (mL)",
    "long x short axis (mm)",
    "max 3D diameter (mm)",
    "axis slice",
    "mean ± SD (HU)",
    "min / median / max (HU)",
    "centroid RAS (mm)",
    "slices",
    "attributes",
    "flags",
)


def _organ_text(m) -> str:
    if not m.organ:
        return m.side or "-"
    text = m.organ + (f" ({m.side})" if m.side and m.side not in m.organ.lower() else "")
    return text + (" [adjacent]" if m.organ_relation == "adjacent" else "")


def _attributes_text(lesion) -> str:
    parts = []
    for name, a in lesion.attributes.items():
        p = f" {100 * a.probabilities[a.value]:.0f}%" if a.probabilities and a.value in a.probabilities else ""
        parts.append(f"{name}: {a.value}{p}")
    return "; ".join(parts) or "-"


def confidence_text(lesion: LesionReport) -> str:
    if lesion.mean_probability is None:
        return "-"
    return f"{lesion.mean_probability:.2f} / {lesion.max_probability:.2f}"


def role_text(lesion: LesionReport) -> str:
    recist = lesion.recist or {}
    role = recist.get("role", "")
    if role == "target":
        return f"target {recist.get('target_number', '')}".strip()
    if role == "new":
        return "new lesion"
    if role:
        return role
    return "not a lesion (normal node)" if recist.get("is_node") else "-"


def table_rows(report: CaseReport) -> list:
    rows = []
    for lesion in report.lesions:
        m = lesion.measurement
        rows.append(
            [
                str(m.index),
                m.name,
                _organ_text(m),
                confidence_text(lesion),
                status_text(lesion.status),
                role_text(lesion),
                f"{m.volume_ml:.2f}",
                f"{m.long_axis_mm:.1f} x {m.short_axis_mm:.1f}",
                f"{m.max_diameter_3d_mm:.1f}",
                str(m.axis_slice),
                f"{m.mean_hu:.0f} ± {m.std_hu:.0f}",
                f"{m.min_hu:.0f} / {m.median_hu:.0f} / {m.max_hu:.0f}",
                ", ".join(f"{c:.1f}" for c in m.centroid_ras_mm),
                f"{m.slice_range[0]}-{m.slice_range[1]}",
                _attributes_text(lesion),
                "; ".join(m.flags) or "-",
            ]
        )
    return rows


def _case_lines(report) -> list:
    c = report.case
    lines = [
        ("Case", c.case_id),
        ("Time point", report.time_point),
        ("Patient ID", c.patient_id),
        ("Study UID", c.study_uid),
        ("Series UID", c.series_uid),
        ("Image", c.image_name),
        ("Segmentation", c.segmentation_name),
        ("Origin", report.origin),
        ("Software", f"{report.software['name']} {report.software['version']}"),
        ("Created", report.created),
    ]
    for model in report.models:
        lines.append((f"Model ({model.role or 'model'})", model.describe()))
    if not report.models:
        lines.append(
            ("Models", "none recorded: the segmentation's origin is unknown (measurements only; attributes not predicted)")
        )
    if report.floor:
        from ..candidates import Floor

        lines.append(("Reporting floor", "lesions with a " + Floor(**report.floor).describe() + " are listed apart"))
    return [(k, v) for k, v in lines if v]


def recist_lines(report: CaseReport) -> list:
    """Sentences on RECIST 1.1 for the report's header (baseline) or its response (follow-up)."""
    recist = report.recist or {}
    if not recist:
        return []
    if report.time_point == "follow-up" and report.comparison:
        c = report.comparison
        percent = "" if c.get("sum_change_percent") is None else f" ({c['sum_change_percent']:+.1f} %)"
        return [
            f"Response (RECIST 1.1): {c['overall_response']}",
            c["rule"],
            f"Sum of diameters: {c['sum_baseline_mm']:.1f} mm at baseline, {c['sum_followup_mm']:.1f} mm now"
            f"{percent}; nadir {c['nadir_mm']:.1f} mm.",
            f"Registration: {c['registration']}",
        ]
    targets = [lesion for lesion in report.lesions if lesion.role == "target"]
    if not targets:
        return ["RECIST 1.1: no measurable lesion, so no target lesion and no sum of diameters."]
    listed = ", ".join(
        f"{lesion.number} ({lesion.recist['diameter_mm']:.1f} mm)"
        for lesion in sorted(targets, key=lambda x: x.recist.get("target_number", 0))
    )
    chosen = "chosen by the reader" if recist.get("chosen_by") == "reader" else "chosen automatically, largest first"
    return [
        f"RECIST 1.1 target lesions ({chosen}): {listed}.",
        f"Sum of diameters: {recist['sum_of_diameters_mm']:.1f} mm (long axes; short axes for lymph nodes), on "
        f"{recist['slice_thickness_mm']:g} mm slices (measurable from {recist.get('minimum_long_axis_mm', 10):g} mm).",
    ]


def _figure_title(report, lesion) -> tuple:
    m = lesion.measurement
    role = role_text(lesion)
    title = f"Lesion {m.index}: {m.name}" + (f" - {role}" if role != "-" else "")
    parts = [status_text(lesion.status)]
    if lesion.mean_probability is not None:
        parts.append(f"confidence {lesion.mean_probability:.2f} (max {lesion.max_probability:.2f})")
    if report.time_point == "follow-up":
        parts.append(f"baseline lesion {lesion.baseline_number}" if lesion.baseline_number else "no baseline lesion")
    parts.append(report.disclaimer)
    return title, "; ".join(parts)


def write_html_pdf(
    report: CaseReport,
    image: Volume,
    labels: Volume,
    out_dir: str | Path,
    formats: Sequence[str] = ("html", "pdf"),
    progress: Callable[[float, str], None] | None = None,
    baseline_dir: str | Path | None = None,
) -> list:
    """Write ``report.html`` (+ images) and/or ``report.pdf`` into ``out_dir``; return the paths.

    ``baseline_dir``: the baseline report folder of a follow-up report; its key images are
    copied beside this report's (``images/baseline_lesion_N.png``) and shown side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    out_dir = Path(out_dir)
    written = []
    window_name, window = report_window(image, [lesion.measurement for lesion in report.lesions])
    pdf = (
        PdfPages(out_dir / "report.pdf", metadata={"Title": f"PASTA report {report.case.case_id}", "Subject": report.disclaimer})
        if "pdf" in formats
        else None
    )
    try:
        if pdf is not None:
            _pdf_summary(report, pdf, plt)
        images, pictures = [], {}
        if "html" in formats:
            (out_dir / "images").mkdir(exist_ok=True)
        for n, lesion in enumerate(report.lesions):
            m = lesion.measurement
            box, mask = lesion_mask(labels.array, m)
            title, subtitle = _figure_title(report, lesion)
            fig = lesion_figure(image, box, mask, m, title=title, window=window, subtitle=subtitle)
            if "html" in formats:
                name = f"images/lesion_{m.index}.png"
                fig.savefig(out_dir / name, dpi=80, facecolor="black")
                images.append(name)
                written.append(out_dir / name)
            if pdf is not None:
                pdf.savefig(fig, facecolor="black")
                if baseline_dir and report.comparison:
                    pictures[m.index] = _png(fig)
            plt.close(fig)
            if progress:
                progress((n + 1) / max(1, len(report.lesions)), f"lesion {m.index}")
        if pdf is not None and pictures:
            _pdf_side_by_side(report, Path(baseline_dir), pictures, pdf, plt)
    finally:
        if pdf is not None:
            pdf.close()
            written.append(out_dir / "report.pdf")
    if "html" in formats:
        baseline_images = _copy_baseline_images(report, baseline_dir, out_dir)
        written += [out_dir / p for p in baseline_images.values()]
        (out_dir / "report.html").write_text(_html(report, images, window_name, baseline_images), encoding="utf-8")
        written.append(out_dir / "report.html")
    return written


def _png(fig):
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, facecolor="black")
    buffer.seek(0)
    return buffer


def _pdf_side_by_side(report, baseline_dir: Path, pictures: dict, pdf, plt) -> None:
    """One page per lesion seen at both time points: the baseline key images above the follow-up's."""
    for row in report.comparison.get("pairs", []):
        then = baseline_dir / "images" / f"lesion_{row.get('baseline')}.png"
        now = pictures.get(row.get("followup"))
        if not (row.get("baseline") and now is not None and then.is_file()):
            continue
        fig, axes = plt.subplots(2, 1, figsize=(11.69, 8.27), facecolor="black")
        role = f"target {row['target_number']}" if row["role"] == "target" else row["role"]
        for ax, source, when in (
            (axes[0], then, f"baseline lesion {row['baseline']}"),
            (axes[1], now, f"follow-up lesion {row['followup']}"),
        ):
            ax.imshow(plt.imread(source))
            ax.set_title(when, color="white", fontsize=9)
            ax.axis("off")
        fig.suptitle(
            f"{role}: {row['baseline_mm']:.1f} -> {row['followup_mm']:.1f} mm - {report.disclaimer}", color="white", fontsize=10
        )
        pdf.savefig(fig, facecolor="black")
        plt.close(fig)


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


def _pdf_summary(report, pdf, plt) -> None:
    fig = plt.figure(figsize=(11.69, 8.27))
    fig.text(0.03, 0.96, f"PASTA lesion report - {report.case.case_id}", fontsize=14, weight="bold", va="top")
    fig.text(0.03, 0.925, report.disclaimer, fontsize=10, color="#b00000", va="top")
    y = 0.89
    for key, value in _case_lines(report):
        fig.text(0.03, y, f"{key}: {value}"[:220], fontsize=7.5, va="top")
        y -= 0.022
    for line in recist_lines(report):
        fig.text(0.03, y, line[:220], fontsize=8, va="top", weight="bold")
        y -= 0.024
    ax = fig.add_axes([0.02, 0.05, 0.96, max(0.1, y - 0.08)])
    ax.axis("off")
    rows = table_rows(report)
    if rows:
        table = ax.table(cellText=[[c[:40] for c in r] for r in rows], colLabels=COLUMNS, loc="upper center", cellLoc="left")
        table.auto_set_font_size(False)
        table.set_fontsize(5.0)
        table.scale(1, 1.3)
    for number, note in enumerate(report.notes[:4]):
        fig.text(0.03, max(0.04 - 0.015 * number, 0.003), note[:230], fontsize=6, va="bottom")
    pdf.savefig(fig)
    plt.close(fig)
    if report.comparison:
        _pdf_comparison(report, pdf, plt)


def comparison_rows(report: CaseReport) -> list:
    """Rows of the side-by-side table of a follow-up: role, baseline, follow-up, change."""
    rows = []
    for row in (report.comparison or {}).get("pairs", []):
        role = f"target {row['target_number']}" if row["role"] == "target" else row["role"]
        then = f"lesion {row['baseline']}: {row['baseline_mm']:.1f} mm" if row.get("baseline") else "-"
        now = f"lesion {row['followup']}: {row['followup_mm']:.1f} mm" if row.get("followup") else "not found (0 mm)"
        change = (
            "-"
            if row.get("change_mm") is None
            else f"{row['change_mm']:+.1f} mm"
            + (f" ({row['change_percent']:+.0f} %)" if row.get("change_percent") is not None else "")
        )
        rows.append([role, row.get("organ") or "-", then, now, change, row.get("state", "")])
    return rows


COMPARISON_COLUMNS = ("RECIST role", "organ", "baseline", "follow-up", "change", "state")


def _pdf_comparison(report, pdf, plt) -> None:
    fig = plt.figure(figsize=(11.69, 8.27))
    c = report.comparison
    fig.text(
        0.03,
        0.96,
        f"RECIST 1.1 response: {c['baseline_case']} (baseline) -> {c['followup_case']} (follow-up)",
        fontsize=13,
        weight="bold",
        va="top",
    )
    y = 0.92
    for line in recist_lines(report):
        fig.text(0.03, y, line[:200], fontsize=8, va="top")
        y -= 0.025
    ax = fig.add_axes([0.03, 0.08, 0.94, max(0.1, y - 0.1)])
    ax.axis("off")
    rows = comparison_rows(report)
    if rows:
        table = ax.table(cellText=rows, colLabels=COMPARISON_COLUMNS, loc="upper center", cellLoc="left")
        table.auto_set_font_size(False)
        table.set_fontsize(7)
        table.scale(1, 1.4)
    fig.text(0.03, 0.03, report.disclaimer, fontsize=8, color="#b00000")
    pdf.savefig(fig)
    plt.close(fig)


def _html_comparison(report, images, baseline_images) -> str:
    if not report.comparison:
        return ""
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in COMPARISON_COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in comparison_rows(report))
    here = {lesion.number: src for lesion, src in zip(report.lesions, images)}
    pictures = []
    for row in report.comparison.get("pairs", []):
        then, now = baseline_images.get(row.get("baseline")), here.get(row.get("followup"))
        if not (then or now):
            continue

        def cell(src, number, when):
            if src:
                return f'<td><img src="{e(src)}" alt="{e(when)} lesion {number}"></td>'
            return f"<td>{e('not seen at ' + when if not number else when + ' lesion ' + str(number) + ': no image')}</td>"

        pictures.append(
            f"<tr><th>{e(row['role'])} {row.get('target_number') or ''}</th>"
            f"{cell(then, row.get('baseline'), 'baseline')}"
            f"{cell(now, row.get('followup'), 'follow-up')}</tr>"
        )
    side = (
        (
            f"<table class='side'><thead><tr><th></th><th>baseline</th><th>follow-up</th></tr></thead>"
            f"<tbody>{''.join(pictures)}</tbody></table>"
        )
        if pictures
        else ""
    )
    lines = "".join(f"<p>{e(line)}</p>" for line in recist_lines(report))
    return (
        f"<h2>Response (RECIST 1.1): both time points</h2>{lines}"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{side}"
    )


def _html_recist(report) -> str:
    if report.time_point == "follow-up":
        return ""
    e = html.escape
    lines = "".join(f"<p><b>{e(line)}</b></p>" for line in recist_lines(report))
    rows = "".join(
        f"<tr><td>{lesion.number}</td><td>{e(role_text(lesion))}</td><td>{e(lesion.recist.get('reason', ''))}</td></tr>"
        for lesion in report.lesions
        if lesion.recist
    )
    return (
        f"<h2>RECIST 1.1 baseline</h2>{lines}<table><thead><tr><th>#</th><th>role</th><th>why</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def _html_below(report) -> str:
    if not report.below_floor:
        return ""
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(r['name'])}</td><td>{r['volume_ml']:.3f}</td><td>{r['long_axis_mm']:.1f}</td>"
        f"<td>{'-' if r['mean_probability'] is None else format(r['mean_probability'], '.2f')}</td>"
        f"<td>{e(', '.join(format(c, '.1f') for c in r['centroid_ras_mm']))}</td><td>{e('; '.join(r['reasons']))}</td></tr>"
        for r in report.below_floor
    )
    return (
        f"<details><summary>{len(report.below_floor)} piece(s) under the reporting floor, not reported as "
        f"lesions</summary><table><thead><tr><th>name</th><th>volume (mL)</th><th>long axis (mm)</th>"
        f"<th>confidence</th><th>centroid RAS (mm)</th><th>why</th></tr></thead><tbody>{rows}</tbody></table>"
        f"</details>"
    )


def _html(report, images, window_name: str = "", baseline_images=None) -> str:
    e = html.escape
    case = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in _case_lines(report))
    head = "".join(f"<th>{e(c)}</th>" for c in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in table_rows(report))
    figures = "".join(
        f'<figure><img src="{e(src)}" alt="lesion {lesion.number} key images">'
        f"<figcaption>Lesion {lesion.number}: {e(lesion.measurement.name)} ({e(role_text(lesion))}). Axial slice "
        f"{lesion.measurement.axis_slice} with the long (yellow) and short (blue) axes where they were measured; "
        f"coronal and sagittal slices through the centroid, the dashed line at the axial slice's level. "
        f"{e(window_name)} window in every view, true voxel proportions, scale bar in mm.</figcaption></figure>"
        for lesion, src in zip(report.lesions, images)
    )
    notes = "".join(f"<li>{e(n)}</li>" for n in report.notes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>PASTA report {e(report.case.case_id)}</title>
<style>body{{font-family:sans-serif;margin:1.5em;}} table{{border-collapse:collapse;font-size:0.85em}}
td,th{{border:1px solid #aaa;padding:3px 6px;text-align:left}} .warn{{color:#b00000;font-weight:bold}}
figure{{margin:1em 0}} img{{max-width:100%;background:#000}} table.side img{{max-width:48vw}}</style></head>
<body><h1>PASTA lesion report: {e(report.case.case_id)} ({e(report.time_point)})</h1>
<p class="warn">{e(report.disclaimer)}</p>
<table>{case}</table>
{_html_comparison(report, images, baseline_images or {})}
{_html_recist(report)}
<h2>Lesions</h2>
<p>Most confident first (in steps of 0.1), then largest. Confidence: the model's mean and maximum lesion probability
over the lesion as it proposed it; it orders the candidates and is not a calibrated probability of disease.</p>
<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
{_html_below(report)}
<h2>Key images</h2>{figures}
<h2>Notes</h2><ul>{notes}<li>Definitions: volume, maximum 3D diameter, principal axes and HU statistics follow
pyradiomics (VoxelVolume, Maximum3DDiameter, Major/Minor/LeastAxisLength, first-order Mean, StandardDeviation,
Minimum, Maximum, Median); long and short axes follow RECIST 1.1 in the acquisition slice.</li></ul>
<p class="warn">{e(report.disclaimer)}</p></body></html>
"""


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
