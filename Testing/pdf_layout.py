"""Reading a PDF as poppler sees it (``pdftotext -bbox``, Debian's poppler-utils): every word with
its box, per page; and the checks a laid-out document must pass."""

from __future__ import annotations

import re
import shutil
import subprocess
from html import unescape

import pytest

PAGE = re.compile(r'<page width="([\d.]+)" height="([\d.]+)">(.*?)</page>', re.S)
WORD = re.compile(r'<word xMin="([\d.-]+)" yMin="([\d.-]+)" xMax="([\d.-]+)" yMax="([\d.-]+)">(.*?)</word>')
TOLERANCE = 0.5  # points: glyph boxes of neighbouring words may touch


def pages(path) -> list:
    """``[(width, height, [(x0, y0, x1, y1, word)])]`` of each page."""
    if not shutil.which("pdftotext"):
        pytest.skip("pdftotext (poppler-utils) is not installed; Utilities/bootstrap.sh installs it")
    xml = subprocess.run(["pdftotext", "-bbox", str(path), "-"], capture_output=True, text=True, check=True).stdout
    out = []
    for width, height, body in PAGE.findall(xml):
        words = [(float(a), float(b), float(c), float(d), unescape(w)) for a, b, c, d, w in WORD.findall(body)]
        out.append((float(width), float(height), words))
    return out


def layout_problems(path) -> list:
    """Words outside their page, and pairs of words of one line drawn over each other."""
    problems = []
    for number, (width, height, words) in enumerate(pages(path), start=1):
        for x0, y0, x1, y1, word in words:
            if x0 < -TOLERANCE or y0 < -TOLERANCE or x1 > width + TOLERANCE or y1 > height + TOLERANCE:
                problems.append(f"page {number}: {word!r} lies outside the page")
        for n, a in enumerate(words):
            for b in words[n + 1 :]:
                same_line = min(a[3], b[3]) - max(a[1], b[1]) > 0.5 * min(a[3] - a[1], b[3] - b[1])
                overlap = min(a[2], b[2]) - max(a[0], b[0])
                if same_line and overlap > TOLERANCE:
                    problems.append(f"page {number}: {a[4]!r} and {b[4]!r} overlap by {overlap:.1f} pt")
    return problems


def squeezed(text: str) -> str:
    """Text without any white space: a sentence wrapped over lines (or a long word split) still matches."""
    return re.sub(r"\s+", "", text)


def printed_text(path) -> str:
    return " ".join(w[4] for _w, _h, words in pages(path) for w in words)
