"""The README's first quick-start command runs the demo: it must produce an openable scene and a
report an oncologist would read (a handful of confident candidates, the model named, RECIST 1.1
target lesions and their sum of diameters)."""

import json

import pytest

from pastacore.cli.main import main


def test_demo_writes_a_scene_and_pictures(tmp_path, capsys, sample_dir):
    pytest.importorskip("slicer")
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "pasta_demo.mrb" in printed
    assert "RECIST 1.1 targets" in printed and "Segmentation made by pasta-lung-default" in printed
    facts = json.loads((out / "summary.json").read_text())
    assert facts["round_trip_dice"] > 0.95
    assert abs(facts["reference_tumour_ml"] - 48.4) < 0.5  # the lung2 reference tumour
    assert 2.0 < facts["lungs_litres"] < 7.0
    assert 6.0 < facts["synthetic_lesion_ml"] < 11.0  # "25 mm" nodule: a 25 mm sphere is 8.2 mL
    assert facts["real_tumour_detected"] and facts["synthetic_lesion_found"]
    assert facts["synthetic_lesion_dice"] > 0.5  # the built-in model outlines the new lesion
    for name in (
        "pasta_demo.mrb",
        "lung2_segmentation.png",
        "lung2_synthetic_lesion.png",
        "lung2_with_synthetic_lesion.nii.gz",
        "report/report.json",
        "report/report.pdf",
    ):
        assert (out / name).stat().st_size > 1_000, name
    # the report: a handful of confident candidates, the model named, RECIST targets and their sum
    report = json.loads((out / "report" / "report.json").read_text())
    assert [m["name"] for m in report["models"]] == ["pasta-lung-default"] and report["models"][0]["sha256"]
    assert "pasta-lung-default" in report["origin"] and "pasta-lung-default" in facts["report_models"][0]
    lesions = report["lesions"]
    assert 1 <= len(lesions) <= 10, [(x["volume_ml"], x["mean_probability"]) for x in lesions]
    assert all(x["volume_ml"] >= 0.03 and x["long_axis_mm"] >= 3.0 and x["mean_probability"] >= 0.7 for x in lesions)
    assert all(f"{x['volume_ml']:.2f}" != "0.00" for x in lesions)  # no 0.00 mL rows
    bands = [int(x["mean_probability"] * 10 + 1e-9) for x in lesions]
    assert bands == sorted(bands, reverse=True)  # most confident first
    assert report["below_floor"] and all(x["reasons"] for x in report["below_floor"])
    tumour = [x for x in lesions if x["organ"] == "lung" and x["volume_ml"] > 10]
    assert tumour, "the real tumour (48 mL) is among the confident candidates"
    targets = [x for x in lesions if x["recist"]["role"] == "target"]
    assert 1 <= len(targets) <= 2 and report["recist"]["sum_of_diameters_mm"] == pytest.approx(
        sum(x["recist"]["diameter_mm"] for x in targets), abs=0.11
    )
    assert facts["recist_sum_of_diameters_mm"] == report["recist"]["sum_of_diameters_mm"]
    # the PDF reads like a document: no words drawn over each other or off the page, every note in full
    from pdf_layout import layout_problems, printed_text, squeezed

    pdf = out / "report" / "report.pdf"
    assert layout_problems(pdf) == []
    text = squeezed(printed_text(pdf))
    assert all(squeezed(note) in text for note in report["notes"]), report["notes"]
    html = (out / "report" / "report.html").read_text()
    assert "Sum of diameters" in html and "pasta-lung-default 0.3" in html
    from pastacore.mrml.scene_io import load_mrb

    scene = load_mrb(out / "pasta_demo.mrb").scene
    model_nodes = [
        scene.GetNthNodeByClass(i, "vtkMRMLSegmentationNode")
        for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"))
    ]
    assert any(json.loads(n.GetAttribute("PASTA.Model") or "{}").get("name") == "pasta-lung-default" for n in model_nodes)
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") >= 3
    assert scene.GetNumberOfNodesByClass("vtkMRMLMarkupsROINode") == 1
    assert scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == 1
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") >= 2
    # a second run refuses to overwrite without permission
    assert main(["demo", "--out", str(out)]) == 2


def test_synthetic_lesion_is_scored_on_the_pieces_found_there():
    import numpy as np

    from pastacore.anatomy.masks import pieces_touching
    from pastacore.demo import _dice

    found = np.zeros((20, 20, 20), bool)
    found[2:6, 2:6, 2:6] = True  # found at the new lesion
    found[12:18, 12:18, 12:18] = True  # elsewhere: the real tumour or a false positive
    lesion = np.zeros_like(found)
    lesion[3:7, 2:6, 2:6] = True
    there = pieces_touching(found, lesion)
    assert there.sum() == 64 and not there[12:18, 12:18, 12:18].any()
    assert _dice(there, lesion) == 0.75
    assert not pieces_touching(found, np.zeros_like(found)).any()
