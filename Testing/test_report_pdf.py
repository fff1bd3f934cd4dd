"""The PDF report is a laid-out document (issue 32), checked as poppler reads it: no two words of a
line drawn over each other, none outside its page, every note printed in full, landscape pages
with the header on each, the lesion table's header repeated where the table runs onto the next
page; and a synthetic lesion marked as such in the PDF, the HTML, report.json, RECIST and the
DICOM SR."""

import json

import numpy as np
import pytest
from conftest import phantom_ct
from pdf_layout import layout_problems, pages, printed_text, squeezed

LONG_SOURCE = "/data/models/" + "a-very-long-folder-name-without-spaces-" * 3 + "model.pth"


@pytest.fixture(scope="module")
def many_lesions(tmp_path_factory):
    """A phantom CT with 7 lesions (one of them synthetic) whose attributes fill their rows, long
    notes and a long model path."""
    from pastacore.report.export import make_report, write_report
    from pastacore.report.model import AttributeValue, CaseInfo, ModelProvenance

    image = phantom_ct()
    labels = np.zeros(image.array.shape, np.uint8)
    for n in range(6):
        k, j, i = 3 + 4 * (n % 5), 10 + 12 * (n // 5), 10 + 2 * n
        labels[k : k + 2, j : j + 4, i : i + 3] = 2
    labels[9:15, 36:44, 20:28] = 3  # the synthetic lesion: the largest
    record = {"lesion_type": "lung_tumor", "attributes": {"shape": ["round-like"], "size": [24.0, 24.0, 24.0]}, "seed": 7}
    record["engine"] = "procedural"
    report = make_report(
        image,
        image.with_array(labels, is_label=True),
        case=CaseInfo("phantom-case-with-a-long-identifier-that-must-wrap-in-its-cell", image_name="phantom.nrrd"),
        lesion_labels=[2, 3],
        label_names={2: "Lung tumor", 3: "Lung tumor (synthetic)"},
        models=[ModelProvenance("tiny-lung", "test", "ab" * 32, "segmentation", "model.pth", LONG_SOURCE)],
        synthetic={3: record},
        attributes={
            n: {f"attribute {a}": AttributeValue("a value described at some length " * 6) for a in range(4)} for n in range(1, 8)
        },
    )
    report.notes.append("A long note that must wrap: " + " ".join(f"word{n}" for n in range(120)) + " (the end).")
    folder = tmp_path_factory.mktemp("pdf") / "report"
    write_report(report, image, image.with_array(labels, is_label=True), folder, ("json", "html", "pdf", "sr"))
    return folder, report


def test_the_pdf_is_laid_out_like_a_document(many_lesions):
    folder, report = many_lesions
    pdf = folder / "report.pdf"
    assert layout_problems(pdf) == []
    laid = pages(pdf)
    assert len(laid) >= 3 and all(width > height for width, height, _ in laid)  # landscape
    words = [[w[4] for w in page] for _w, _h, page in laid]
    assert all("PASTA" in page and "SYNTHETIC" in page for page in words)  # the header, on every page
    header_pages = [n for n, page in enumerate(words) if {"axis", "centroid", "attributes", "flags"} <= set(page)]
    row_pages = [n for n, page in enumerate(words) if "described" in page]
    assert len(row_pages) >= 2 and header_pages == row_pages  # the details table runs on: its header repeats
    text = squeezed(printed_text(pdf))
    for note in report.notes:
        assert squeezed(note) in text, note  # every note in full
    assert squeezed(LONG_SOURCE) in text and squeezed(report.case.case_id) in text


def test_a_synthetic_lesion_is_marked_everywhere(many_lesions):
    folder, _report = many_lesions
    data = json.loads((folder / "report.json").read_text())
    synthetic = [lesion for lesion in data["lesions"] if lesion["synthetic"]]
    real = [lesion for lesion in data["lesions"] if not lesion["synthetic"]]
    assert len(synthetic) == 1 and len(real) == 6
    lesion = synthetic[0]
    assert lesion["status"] == "synthetic" and lesion["synthesis"]["seed"] == 7 and lesion["synthesis"]["engine"] == "procedural"
    assert lesion["number"] not in data["recist"]["targets"] and data["recist"]["targets"]  # never an automatic target
    assert lesion["volume_ml"] > max(x["volume_ml"] for x in real)  # though it is the largest
    assert "SYNTHETIC" in (folder / "report.html").read_text()
    assert "SYNTHETIC: inserted by lesion synthesis" in " ".join(
        w[4] for _w, _h, page in pages(folder / "report.pdf") for w in page
    )
    hd = pytest.importorskip("highdicom")
    sr = hd.sr.srread(folder / "dicom" / "sr.dcm")
    for group in sr.content.get_volumetric_roi_measurement_groups():
        evaluations = {e.name.meaning: e.value.meaning for e in group.get_qualitative_evaluations()}
        is_synthetic = str(group.tracking_uid) == lesion["tracking_uid"]
        assert (evaluations["Review status"] == "Synthetic") == is_synthetic
        assert evaluations.get("Synthetic lesion") == ("Yes" if is_synthetic else None)


def test_readers_choose_a_synthetic_target_only_when_asked(many_lesions):
    from pastacore.report.recist import baseline

    _folder, report = many_lesions
    synthetic = next(lesion for lesion in report.lesions if lesion.synthetic)
    chosen = baseline(report.lesions, phantom_ct(), chosen=[synthetic.number])
    assert chosen.targets[0].number == synthetic.number and chosen.chosen_by == "reader"
