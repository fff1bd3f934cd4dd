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
    assert abs(facts["tumour_volume_ml"] - 48.4) < 0.5  # the lung2 reference tumour
    for name in ("pasta_demo.mrb", "lung2_tumour.png", "lung2_tumour_1mm.png"):
        assert (out / name).stat().st_size > 10_000
    from pastacore.mrml.scene_io import load_mrb

    scene = load_mrb(out / "pasta_demo.mrb").scene
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 1
    assert scene.GetNumberOfNodesByClass("vtkMRMLMarkupsROINode") == 1
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") >= 2
    # a second run refuses to overwrite without permission
    assert main(["demo", "--out", str(out)]) == 2
