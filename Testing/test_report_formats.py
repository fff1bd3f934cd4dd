"""Report formats register by name: a new format is one writer and one registration line, and
the command line, the Slicer report panel's controller and the web app list it."""

import json

import numpy as np
import pytest
from conftest import make_volume

from pastacore.cli.main import main
from pastacore.errors import PastaError
from pastacore.fileio import write_volume
from pastacore.report import formats as F


def write_lesion_count(context, names):
    (context.folder / "lesions.txt").write_text(f"{len(context.report.lesions)} lesion(s)\n", encoding="utf-8")


@pytest.fixture
def toy_format():
    fmt = F.register(
        F.ReportFormat(
            "toy", "Toy", "lesions.txt: the number of lesions", ("lesions.txt",), write_lesion_count, preselected=False
        )
    )
    yield fmt
    F.unregister("toy")


@pytest.fixture
def case(tmp_path):
    image = make_volume((20, 24, 24))
    labels = np.zeros(image.array.shape, np.uint8)
    labels[4:8, 4:10, 4:10] = 2
    labels[12:16, 14:20, 14:20] = 2
    write_volume(image, tmp_path / "ct.nii.gz")
    write_volume(image.with_array(labels, is_label=True), tmp_path / "seg.nii.gz")
    return [str(tmp_path / "ct.nii.gz"), str(tmp_path / "seg.nii.gz")]


def test_the_built_in_formats_are_registered_once():
    assert F.format_names() == ("json", "html", "pdf", "seg", "sr")
    assert [f.name for f in F.choose_formats(["json", "sr", "html", "json"])] == ["sr", "html", "json"]  # SR adds a note first
    assert {"report.json", "type.json", "report.pdf", "dicom/seg.dcm", "dicom/ct/CT*.dcm"} <= set(F.report_files())


def test_a_registered_format_is_written_by_pasta_report(toy_format, case, tmp_path, capsys):
    assert main(["report", *case, "--out-dir", str(tmp_path / "r"), "--formats", "toy"]) == 0, capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["lesions.txt"]
    assert (tmp_path / "r" / "lesions.txt").read_text() == "2 lesion(s)\n"
    # with the built-in ones; overwriting replaces the toy's file as one of the report's own
    assert main(["report", *case, "--out-dir", str(tmp_path / "r"), "--formats", "json,toy", "--overwrite"]) == 0
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["lesions.txt", "report.json", "type.json"]
    assert len(json.loads((tmp_path / "r" / "report.json").read_text())["lesions"]) == 2
    assert "lesions.txt" in F.report_files()


def test_a_registered_format_is_listed_by_the_cli_and_the_front_ends(toy_format, capsys):
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "toy: lesions.txt: the number of lesions" in help_text
    assert "json: report.json and type.json" in help_text
    from PastaSlicerLib.controllers.report import ReportController

    assert ReportController.formats()[-1] == "toy"
    assert {
        "name": "toy",
        "label": "Toy",
        "description": "lesions.txt: the number of lesions",
        "preselected": False,
    } in ReportController.format_choices()


def test_an_unknown_format_is_refused_with_the_registered_ones(toy_format, case, tmp_path, capsys):
    with pytest.raises(PastaError, match="unknown report format nope; choose from json,html,pdf,seg,sr,toy"):
        F.choose_formats(["json", "nope"])
    assert main(["report", *case, "--out-dir", str(tmp_path / "r"), "--formats", "nope"]) == 2
    assert "choose from json,html,pdf,seg,sr,toy" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_an_unavailable_format_is_refused_before_any_work(case, tmp_path, capsys):
    F.register(
        F.ReportFormat(
            "later",
            "Later",
            "never written",
            ("later.txt",),
            write_lesion_count,
            available=lambda: "its library is not installed",
        )
    )
    try:
        assert main(["report", *case, "--out-dir", str(tmp_path / "r"), "--formats", "json,later"]) == 2
        assert "the report format later cannot be written here: its library is not installed" in capsys.readouterr().err
        assert not (tmp_path / "r").exists()
    finally:
        F.unregister("later")
    assert "later" not in F.format_names()
