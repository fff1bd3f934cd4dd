"""The README's first quick-start command runs the demo: it must produce an openable scene."""

import json

import pytest

from pastacore.cli.main import main


def test_demo_writes_a_scene_and_pictures(tmp_path, capsys, sample_dir):
    pytest.importorskip("slicer")
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "pasta_demo.mrb" in printed
    facts = json.loads((out / "summary.json").read_text())
    assert facts["round_trip_dice"] > 0.95
    assert abs(facts["reference_tumour_ml"] - 48.4) < 0.5  # the lung2 reference tumour
    assert 2.0 < facts["lungs_litres"] < 7.0
    assert 6.0 < facts["synthetic_lesion_ml"] < 11.0  # "25 mm" nodule: a 25 mm sphere is 8.2 mL
    assert facts["real_tumour_detected"] and facts["synthetic_lesion_found"]
    assert facts["synthetic_lesion_dice"] > 0.5  # the built-in model outlines the new lesion
    for name in ("pasta_demo.mrb", "lung2_segmentation.png", "lung2_synthetic_lesion.png",
                 "lung2_with_synthetic_lesion.nii.gz", "report/report.json", "report/report.pdf"):
        assert (out / name).stat().st_size > 1_000, name
    from pastacore.mrml.scene_io import load_mrb

    scene = load_mrb(out / "pasta_demo.mrb").scene
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") >= 3
    assert scene.GetNumberOfNodesByClass("vtkMRMLMarkupsROINode") == 1
    assert scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == 1
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") >= 2
    # a second run refuses to overwrite without permission
    assert main(["demo", "--out", str(out)]) == 2


def test_synthetic_lesion_is_scored_on_the_pieces_found_there():
    import numpy as np

    from pastacore.demo import _dice
    from pastacore.inference.regions import pieces_touching

    found = np.zeros((20, 20, 20), bool)
    found[2:6, 2:6, 2:6] = True        # found at the new lesion
    found[12:18, 12:18, 12:18] = True  # elsewhere: the real tumour or a false positive
    lesion = np.zeros_like(found)
    lesion[3:7, 2:6, 2:6] = True
    there = pieces_touching(found, lesion)
    assert there.sum() == 64 and not there[12:18, 12:18, 12:18].any()
    assert _dice(there, lesion) == 0.75
    assert not pieces_touching(found, np.zeros_like(found)).any()
