"""What a report says, once, for the HTML page and the PDF document alike: a :class:`Document`
of blocks (headings, paragraphs, key-value rows, tables, figures, lists) that
:mod:`.report_html` and :mod:`.report_pdf` only lay out.

Content: the case identifiers and where the segmentation came from (model, version, checksum, or
that it is unknown); for a synthetic case, which lesions are synthetic; for a follow-up, the
response with both time points side by side; RECIST 1.1 targets and their sum of diameters; the
lesions (most confident first; a main table and a table of details, so that each fits a page's
width); what was left under the reporting floor; one key-image figure per lesion; notes and
the disclaimer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .assess import status_text

if TYPE_CHECKING:
    from .model import CaseReport, LesionReport


@dataclass
class Heading:
    text: str


@dataclass
class Paragraph:
    text: str
    style: str = "normal"  # normal, strong, warning, small


@dataclass
class KeyValues:
    rows: list  # [(key, value)]


@dataclass
class Table:
    columns: tuple  # column titles
    rows: list  # [[cell text]]
    widths: tuple  # relative column widths (the PDF's proportions)
    marked: tuple = ()  # row indices to highlight (synthetic lesions)
    collapsed: str = ""  # HTML: folded under this summary line


@dataclass
class Figure:
    png: bytes  # the picture
    src: str  # its file in the HTML report's folder
    alt: str
    caption: str
    new_page: bool = True  # PDF: one figure per page
    heading: str = ""  # a heading just before it (after the page break)
    share: float = 0.8  # PDF: the most of a page's height the picture takes (two of a pair share a page)


@dataclass
class Bullets:
    items: list


@dataclass
class Document:
    title: str
    header: str  # one line on every PDF page
    warning: str  # the disclaimer, shown first and last
    blocks: list = field(default_factory=list)


LESION_COLUMNS = (
    ("#", 3),
    ("lesion", 13),
    ("organ", 10),
    ("status", 13),
    ("RECIST 1.1", 9),
    ("confidence (mean / max)", 9),
    ("volume (mL)", 7),
    ("long x short axis (mm)", 10),
    ("max 3D diameter (mm)", 8),
    ("mean ± SD (HU)", 8),
)
DETAIL_COLUMNS = (
    ("#", 3),
    ("axis slice", 5),
    ("min / median / max (HU)", 10),
    ("centroid RAS (mm)", 13),
    ("slices", 6),
    ("attributes", 36),
    ("flags", 20),
)
BELOW_COLUMNS = (
    ("name", 20),
    ("volume (mL)", 8),
    ("long axis (mm)", 8),
    ("confidence", 8),
    ("centroid RAS (mm)", 16),
    ("why", 34),
)
COMPARISON_COLUMNS = (("RECIST role", 10), ("organ", 12), ("baseline", 18), ("follow-up", 18), ("change", 14), ("state", 18))
DEFINITIONS = (
    "Definitions: volume, maximum 3D diameter, principal axes and HU statistics follow pyradiomics (VoxelVolume, "
    "Maximum3DDiameter, Major/Minor/LeastAxisLength, first-order Mean, StandardDeviation, Minimum, Maximum, Median); "
    "long and short axes follow RECIST 1.1 in the acquisition slice."
)
ORDER = (
    "Most confident first (in steps of 0.1), then largest. Confidence: the model's mean and maximum lesion probability over "
    "the lesion as it proposed it; it orders the candidates and is not a calibrated probability of disease."
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
    if lesion.synthetic:
        from ..synthetic import describe

        parts.append(describe(lesion.synthetic))
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


def lesion_rows(report: CaseReport) -> list:
    """The main table's rows: what a reader scans first."""
    rows = []
    for lesion in report.lesions:
        m = lesion.measurement
        rows.append(
            [
                str(m.index),
                m.name,
                _organ_text(m),
                status_text(lesion.status),
                role_text(lesion),
                confidence_text(lesion),
                f"{m.volume_ml:.2f}",
                f"{m.long_axis_mm:.1f} x {m.short_axis_mm:.1f}",
                f"{m.max_diameter_3d_mm:.1f}",
                f"{m.mean_hu:.0f} ± {m.std_hu:.0f}",
            ]
        )
    return rows


def detail_rows(report: CaseReport) -> list:
    rows = []
    for lesion in report.lesions:
        m = lesion.measurement
        rows.append(
            [
                str(m.index),
                str(m.axis_slice),
                f"{m.min_hu:.0f} / {m.median_hu:.0f} / {m.max_hu:.0f}",
                ", ".join(f"{c:.1f}" for c in m.centroid_ras_mm),
                f"{m.slice_range[0]}-{m.slice_range[1]}",
                _attributes_text(lesion),
                "; ".join(m.flags) or "-",
            ]
        )
    return rows


def table_rows(report: CaseReport) -> list:
    """Every measurement of each lesion in one row (the main table's columns, then the details')."""
    return [main + detail[1:] for main, detail in zip(lesion_rows(report), detail_rows(report))]


def case_lines(report: CaseReport) -> list:
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


def synthetic_line(report: CaseReport) -> str:
    """The synthetic case's warning: which lesions were inserted (empty when none was)."""
    numbers = [str(lesion.number) for lesion in report.lesions if lesion.synthetic]
    if not numbers:
        return ""
    one = len(numbers) == 1
    return (
        f"SYNTHETIC CASE: lesion {', '.join(numbers)} {'was' if one else 'were'} inserted by lesion synthesis "
        f"(not a finding of this patient); the tables mark {'it' if one else 'them'} SYNTHETIC."
    )


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


def figure_title(report: CaseReport, lesion: LesionReport) -> tuple:
    """(title, subtitle) drawn on a lesion's key-image figure."""
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


def _table(columns, rows, **extra) -> Table:
    return Table(tuple(c for c, _ in columns), rows, tuple(w for _, w in columns), **extra)


def build_document(report: CaseReport, figures: list, window_name: str = "", pairs: list = ()) -> Document:
    """The report's content. ``figures``: ``[(lesion, png bytes, src)]`` key images; ``pairs``: a
    follow-up's ``[(row of comparison pairs, (baseline png, src) or None, (follow-up png, src) or None)]``."""
    blocks: list = []
    synthetic = synthetic_line(report)
    if synthetic:
        blocks.append(Paragraph(synthetic, "warning"))
    blocks.append(KeyValues(case_lines(report)))
    if report.comparison:
        blocks += _comparison_blocks(report, pairs)
    if report.time_point != "follow-up":
        blocks.append(Heading("RECIST 1.1 baseline"))
        blocks += [Paragraph(line, "strong") for line in recist_lines(report)]
        recist = [
            [str(lesion.number), role_text(lesion), lesion.recist.get("reason", "")] for lesion in report.lesions if lesion.recist
        ]
        if recist:
            blocks.append(_table((("#", 3), ("role", 12), ("why", 85)), recist))
    marked = tuple(n for n, lesion in enumerate(report.lesions) if lesion.synthetic)
    blocks += [Heading("Lesions"), Paragraph(ORDER, "small"), _table(LESION_COLUMNS, lesion_rows(report), marked=marked)]
    blocks += [Heading("Lesion details"), _table(DETAIL_COLUMNS, detail_rows(report), marked=marked)]
    if report.below_floor:
        summary = f"{len(report.below_floor)} piece(s) under the reporting floor, not reported as lesions"
        rows = [
            [
                r["name"],
                f"{r['volume_ml']:.3f}",
                f"{r['long_axis_mm']:.1f}",
                "-" if r["mean_probability"] is None else f"{r['mean_probability']:.2f}",
                ", ".join(f"{c:.1f}" for c in r["centroid_ras_mm"]),
                "; ".join(r["reasons"]),
            ]
            for r in report.below_floor
        ]
        blocks += [Heading("Below the reporting floor"), _table(BELOW_COLUMNS, rows, collapsed=summary)]
    blocks += [Heading("Notes"), Bullets(list(report.notes) + [DEFINITIONS])]
    for n, (lesion, png, src) in enumerate(figures):
        m = lesion.measurement
        caption = (
            f"Lesion {lesion.number}: {m.name} ({role_text(lesion)}{', SYNTHETIC' if lesion.synthetic else ''}). Axial slice "
            f"{m.axis_slice} with the long (yellow) and short (blue) axes where they were measured; coronal and sagittal "
            f"slices through the centroid, the dashed line at the axial slice's level. {window_name} window in every view, "
            "true voxel proportions, scale bar in mm."
        )
        blocks.append(Figure(png, src, f"lesion {lesion.number} key images", caption, heading="" if n else "Key images"))
    return Document(
        title=f"PASTA lesion report: {report.case.case_id} ({report.time_point})",
        header=f"PASTA lesion report {report.case.case_id}" + (" - SYNTHETIC CASE" if synthetic else ""),
        warning=report.disclaimer,
        blocks=blocks,
    )


def _comparison_blocks(report: CaseReport, pairs) -> list:
    c = report.comparison
    blocks = [
        Heading(f"Response (RECIST 1.1): both time points, {c['baseline_case']} (baseline) -> {c['followup_case']} (follow-up)")
    ]
    blocks += [Paragraph(line) for line in recist_lines(report)]
    blocks.append(_table(COMPARISON_COLUMNS, comparison_rows(report)))
    for row, then, now in pairs:
        role = f"target {row['target_number']}" if row["role"] == "target" else row["role"]
        for picture, when, number in ((then, "baseline", row.get("baseline")), (now, "follow-up", row.get("followup"))):
            if picture is None:
                blocks.append(
                    Paragraph(f"{role}: not seen at {when}" if not number else f"{role}: {when} lesion {number}, no image")
                )
                continue
            caption = f"{role}, {when} lesion {number}" + (
                f": {row['baseline_mm']:.1f} -> {row['followup_mm']:.1f} mm"
                if when == "follow-up" and row.get("baseline")
                else ""
            )
            blocks.append(
                Figure(picture[0], picture[1], f"{when} lesion {number}", caption, new_page=when == "baseline", share=0.4)
            )
    return blocks
