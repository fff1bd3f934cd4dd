"""``report.pdf``: the report's :class:`~.document.Document` laid out as a document with
ReportLab's platypus (a pure-Python package): A4 landscape pages (the lesion table needs the
width), a header and page number on every page, text that wraps inside table cells (long words
are split, never drawn past a cell's edge), table headers repeated on each page a table runs
onto, notes that wrap, and one key-image figure per page scaled to fit.

Text is set in the PDF's standard Helvetica, which covers Latin-1 and the Windows-1252
punctuation; any other character is replaced so nothing is drawn as an empty box.
"""

from __future__ import annotations

import io
from pathlib import Path
from xml.sax.saxutils import escape

from .document import Bullets, Document, Figure, Heading, KeyValues, Paragraph, Table

MARGIN = 36.0  # points (half an inch)
HEADER_GAP = 16.0
MARKED = "#fff0c0"  # the row of a synthetic lesion
GRID = "#999999"


def _styles() -> dict:
    from reportlab.lib import colors
    from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet

    base = getSampleStyleSheet()
    normal = ParagraphStyle("pasta-normal", parent=base["Normal"], fontName="Helvetica", fontSize=9, leading=11.5)
    return {
        "title": ParagraphStyle("pasta-title", parent=normal, fontName="Helvetica-Bold", fontSize=15, leading=19, spaceAfter=4),
        "heading": ParagraphStyle(
            "pasta-heading",
            parent=normal,
            fontName="Helvetica-Bold",
            fontSize=11.5,
            leading=14,
            spaceBefore=8,
            spaceAfter=4,
            keepWithNext=1,  # never alone at the foot of a page
        ),
        "normal": ParagraphStyle("pasta-para", parent=normal, spaceAfter=3),
        "strong": ParagraphStyle("pasta-strong", parent=normal, fontName="Helvetica-Bold", spaceAfter=3),
        "warning": ParagraphStyle(
            "pasta-warning", parent=normal, fontName="Helvetica-Bold", textColor=colors.HexColor("#b00000"), spaceAfter=4
        ),
        "small": ParagraphStyle("pasta-small", parent=normal, fontSize=8, leading=10, spaceAfter=3),
        "cell": ParagraphStyle("pasta-cell", parent=normal, fontSize=7.5, leading=9),
        "head": ParagraphStyle("pasta-head", parent=normal, fontName="Helvetica-Bold", fontSize=7.5, leading=9),
        "caption": ParagraphStyle("pasta-caption", parent=normal, fontSize=8, leading=10, spaceBefore=4),
        "bullet": ParagraphStyle("pasta-bullet", parent=normal, fontSize=8.5, leading=10.5, leftIndent=12, bulletIndent=2),
    }


def pdf_text(text: object) -> str:
    """``text`` as Paragraph markup: XML-escaped, and in Windows-1252 (what Helvetica can draw)."""
    plain = str(text).encode("cp1252", "replace").decode("cp1252")
    return escape(plain)


def write_pdf(document: Document, path: str | Path, subject: str = "") -> None:
    """Lay ``document`` out into the PDF file ``path``."""
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.platypus import SimpleDocTemplate

    styles = _styles()
    size = landscape(A4)
    pdf = SimpleDocTemplate(
        str(path),
        pagesize=size,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN + HEADER_GAP,
        bottomMargin=MARGIN,
        title=pdf_text(document.title),
        subject=subject,
        author="PASTA for 3D Slicer",
    )
    width = size[0] - 2 * MARGIN
    story = [_para(document.title, styles["title"]), _para(document.warning, styles["warning"])]
    for block in document.blocks:
        story += _flowables(block, styles, width, size[1] - 2 * MARGIN - HEADER_GAP)
    story.append(_para(document.warning, styles["warning"]))

    def decorate(canvas, doc):
        canvas.saveState()
        canvas.setFont("Helvetica", 8)
        top = size[1] - MARGIN + 4
        canvas.drawString(MARGIN, top, pdf_text(document.header))
        canvas.drawRightString(size[0] - MARGIN, top, f"page {doc.page}")
        canvas.setFillColorRGB(0.69, 0, 0)
        canvas.drawCentredString(size[0] / 2, MARGIN / 2, pdf_text(document.warning))
        canvas.restoreState()

    pdf.build(story, onFirstPage=decorate, onLaterPages=decorate)


def _para(text, style):
    from reportlab.platypus import Paragraph as RLParagraph

    return RLParagraph(pdf_text(text), style)


def _flowables(block, styles, width, height) -> list:
    from reportlab.platypus import ListFlowable, ListItem, PageBreak

    if isinstance(block, Heading):
        return [_para(block.text, styles["heading"])]
    if isinstance(block, Paragraph):
        return [_para(block.text, styles.get(block.style, styles["normal"]))]
    if isinstance(block, KeyValues):
        rows = [[k, str(v)] for k, v in block.rows]
        return [_table(["", ""], rows, (18, 82), styles, width, header=False)]
    if isinstance(block, Table):
        flowables = [_para(block.collapsed, styles["small"])] if block.collapsed else []
        return flowables + [_table(block.columns, block.rows, block.widths, styles, width, marked=block.marked)]
    if isinstance(block, Bullets):
        items = [ListItem(_para(item, styles["bullet"]), leftIndent=12) for item in block.items]
        return [ListFlowable(items, bulletType="bullet", start="-", leftIndent=12, bulletFontSize=8)]
    if isinstance(block, Figure):
        heading = [_para(block.heading, styles["heading"])] if block.heading else []
        return ([PageBreak()] if block.new_page else []) + heading + _figure(block, styles, width, height)
    raise TypeError(f"unknown report block {type(block).__name__}")


def _table(columns, rows, weights, styles, width, header=True, marked=()):
    from reportlab.lib import colors
    from reportlab.platypus import Table as RLTable
    from reportlab.platypus import TableStyle

    total = float(sum(weights))
    widths = [width * w / total for w in weights]
    cells = [[_para(c, styles["cell"]) for c in row] for row in rows]
    if header:
        cells.insert(0, [_para(c, styles["head"]) for c in columns])
    if not cells:
        return _para("(none)", styles["small"])
    table = RLTable(cells, colWidths=widths, repeatRows=1 if header else 0, hAlign="LEFT")
    commands = [
        ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor(GRID)),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (-1, -1), 3),
        ("RIGHTPADDING", (0, 0), (-1, -1), 3),
        ("TOPPADDING", (0, 0), (-1, -1), 2),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
    ]
    if header:
        commands.append(("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e6e6e6")))
    else:
        commands.append(("BACKGROUND", (0, 0), (0, -1), colors.HexColor("#f2f2f2")))
    offset = 1 if header else 0
    commands += [("BACKGROUND", (0, n + offset), (-1, n + offset), colors.HexColor(MARKED)) for n in marked]
    table.setStyle(TableStyle(commands))
    return table


def _figure(block, styles, width, height) -> list:
    from reportlab.lib.utils import ImageReader
    from reportlab.platypus import Image, KeepTogether

    reader = ImageReader(io.BytesIO(block.png))
    w, h = reader.getSize()
    room = height * block.share  # a caption below
    scale = min(width / w, room / h)
    picture = Image(io.BytesIO(block.png), width=w * scale, height=h * scale)
    return [KeepTogether([picture, _para(block.caption, styles["caption"])])]
