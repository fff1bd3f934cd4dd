"""``report.html`` (with ``images/lesion_N.png``) and ``report.pdf`` (matplotlib's PdfPages).

Both hold the case identifiers, a table of the lesions, one key-image figure per lesion (see
:mod:`pastacore.report.key_images`), the model provenance, notes and the disclaimer. Each
figure is drawn once and written to the PNG and the PDF page.
"""

from __future__ import annotations

import html
from pathlib import Path

from .key_images import lesion_figure, lesion_mask

COLUMNS = ("#", "lesion", "organ", "volume (mL)", "max 3D diameter (mm)", "long x short axis (mm)", "axis slice",
           "mean ± SD (HU)", "min / median / max (HU)", "centroid RAS (mm)", "slices", "attributes", "flags")


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


def table_rows(report) -> list:
    rows = []
    for lesion in report.lesions:
        m = lesion.measurement
        rows.append([
            str(m.index), m.name, _organ_text(m), f"{m.volume_ml:.2f}", f"{m.max_diameter_3d_mm:.1f}",
            f"{m.long_axis_mm:.1f} x {m.short_axis_mm:.1f}", str(m.axis_slice),
            f"{m.mean_hu:.0f} ± {m.std_hu:.0f}", f"{m.min_hu:.0f} / {m.median_hu:.0f} / {m.max_hu:.0f}",
            ", ".join(f"{c:.1f}" for c in m.centroid_ras_mm), f"{m.slice_range[0]}-{m.slice_range[1]}",
            _attributes_text(lesion), "; ".join(m.flags) or "-",
        ])
    return rows


def _case_lines(report) -> list:
    c = report.case
    lines = [("Case", c.case_id), ("Patient ID", c.patient_id), ("Study UID", c.study_uid),
             ("Series UID", c.series_uid), ("Image", c.image_name), ("Segmentation", c.segmentation_name),
             ("Software", f"{report.software['name']} {report.software['version']}"), ("Created", report.created)]
    for model in report.models:
        lines.append((f"Model ({model.role or 'model'})",
                      f"{model.name} {model.version} sha256 {model.sha256[:16] + '…' if model.sha256 else 'unknown'}"))
    if not report.models:
        lines.append(("Models", "none recorded (measurements only; attributes not predicted)"))
    return [(k, v) for k, v in lines if v]


def write_html_pdf(report, image, labels, out_dir, formats=("html", "pdf"), progress=None) -> list:
    """Write ``report.html`` (+ images) and/or ``report.pdf`` into ``out_dir``; return the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    out_dir = Path(out_dir)
    written = []
    pdf = PdfPages(out_dir / "report.pdf", metadata={"Title": f"PASTA report {report.case.case_id}",
                                                     "Subject": report.disclaimer}) if "pdf" in formats else None
    try:
        if pdf is not None:
            _pdf_summary(report, pdf, plt)
        images = []
        if "html" in formats:
            (out_dir / "images").mkdir(exist_ok=True)
        for n, lesion in enumerate(report.lesions):
            m = lesion.measurement
            box, mask = lesion_mask(labels.array, m)
            fig = lesion_figure(image, box, mask, m, title=f"Lesion {m.index}: {m.name} - {report.disclaimer}")
            if "html" in formats:
                name = f"images/lesion_{m.index}.png"
                fig.savefig(out_dir / name, dpi=80, facecolor="black")
                images.append(name)
                written.append(out_dir / name)
            if pdf is not None:
                pdf.savefig(fig, facecolor="black")
            plt.close(fig)
            if progress:
                progress((n + 1) / max(1, len(report.lesions)), f"lesion {m.index}")
    finally:
        if pdf is not None:
            pdf.close()
            written.append(out_dir / "report.pdf")
    if "html" in formats:
        (out_dir / "report.html").write_text(_html(report, images), encoding="utf-8")
        written.append(out_dir / "report.html")
    return written


def _pdf_summary(report, pdf, plt) -> None:
    fig = plt.figure(figsize=(11.69, 8.27))
    fig.text(0.03, 0.96, f"PASTA lesion report - {report.case.case_id}", fontsize=14, weight="bold", va="top")
    fig.text(0.03, 0.925, report.disclaimer, fontsize=10, color="#b00000", va="top")
    y = 0.89
    for key, value in _case_lines(report):
        fig.text(0.03, y, f"{key}: {value}", fontsize=7.5, va="top")
        y -= 0.022
    ax = fig.add_axes([0.02, 0.05, 0.96, max(0.1, y - 0.08)])
    ax.axis("off")
    rows = table_rows(report)
    if rows:
        table = ax.table(cellText=[[c[:60] for c in r] for r in rows], colLabels=COLUMNS, loc="upper center",
                         cellLoc="left")
        table.auto_set_font_size(False)
        table.set_fontsize(5.5)
        table.scale(1, 1.3)
    for note in report.notes[:4]:
        y_note = 0.04 - 0.015 * report.notes.index(note)
        fig.text(0.03, max(y_note, 0.003), note[:230], fontsize=6, va="bottom")
    pdf.savefig(fig)
    plt.close(fig)


def _html(report, images) -> str:
    e = html.escape
    case = "".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in _case_lines(report))
    head = "".join(f"<th>{e(c)}</th>" for c in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in table_rows(report))
    figures = "".join(
        f'<figure><img src="{e(src)}" alt="lesion {lesion.number} key images">'
        f"<figcaption>Lesion {lesion.number}: {e(lesion.measurement.name)}. Axial slice "
        f"{lesion.measurement.axis_slice} with the long (yellow) and short (blue) axes; coronal and sagittal "
        f"slices through the centroid.</figcaption></figure>"
        for lesion, src in zip(report.lesions, images))
    notes = "".join(f"<li>{e(n)}</li>" for n in report.notes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>PASTA report {e(report.case.case_id)}</title>
<style>body{{font-family:sans-serif;margin:1.5em;}} table{{border-collapse:collapse;font-size:0.85em}}
td,th{{border:1px solid #aaa;padding:3px 6px;text-align:left}} .warn{{color:#b00000;font-weight:bold}}
figure{{margin:1em 0}} img{{max-width:100%;background:#000}}</style></head>
<body><h1>PASTA lesion report: {e(report.case.case_id)}</h1>
<p class="warn">{e(report.disclaimer)}</p>
<table>{case}</table>
<h2>Lesions</h2>
<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
<h2>Key images</h2>{figures}
<h2>Notes</h2><ul>{notes}<li>Definitions: volume, maximum 3D diameter, principal axes and HU statistics follow
pyradiomics (VoxelVolume, Maximum3DDiameter, Major/Minor/LeastAxisLength, first-order Mean, StandardDeviation,
Minimum, Maximum, Median); long and short axes follow RECIST 1.1 in the acquisition slice.</li></ul>
<p class="warn">{e(report.disclaimer)}</p></body></html>
"""
