"""``pasta synth --labels SOURCE_SEG`` (issue 32): the output mask holds the source's labels plus the
lesion as a new label, its sidecar names every label, marks the synthetic one and keeps the
source's model and candidates; ``pasta report`` on it lists the source's lesion and the synthetic
one, marked."""

import json

import numpy as np
from conftest import phantom_ct

from pastacore.cli.main import main
from pastacore.fileio import read_volume, write_volume


def test_synth_keeps_the_source_labels_and_marks_the_lesion(tmp_path, capsys):
    ct = phantom_ct()  # lungs at R = +-48 mm; 3 x 3 x 4 mm voxels
    labels = np.zeros(ct.array.shape, np.uint8)
    lungs = ct.array == -850
    labels[lungs] = 1
    labels[10:14, 36:44, 52:58] = 2  # a "tumour" in the lung at i = 56 (R = -48)
    write_volume(ct, tmp_path / "ct.nrrd")
    write_volume(ct.with_array(labels, is_label=True), tmp_path / "seg.nii.gz")
    model = {"name": "tiny-lung", "version": "test", "sha256": "ab" * 32}
    (tmp_path / "seg.json").write_text(
        json.dumps({"labels": {"1": {"name": "Lung"}, "2": {"name": "Lung tumor"}}, "model": model, "candidates": {"2": []}})
    )
    code = main(
        [
            "synth",
            str(tmp_path / "ct.nrrd"),
            "--box=36,-18,-18,60,18,18",  # the other lung (R = +48)
            "--attributes",
            "12 mm round-like solid lung nodule",
            "--seed",
            "4",
            "--labels",
            str(tmp_path / "seg.nii.gz"),
            "--out-image",
            str(tmp_path / "case.nii.gz"),
            "--out-mask",
            str(tmp_path / "mask.nii.gz"),
            "--out-report",
            str(tmp_path / "synthesis.json"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert "synthetic lesion as label 3" in capsys.readouterr().out
    mask = read_volume(tmp_path / "mask.nii.gz", is_label=True).array
    lesion = mask == 3
    assert lesion.any() and np.array_equal(mask[~lesion], labels[~lesion])  # the source's labels, the lesion added
    assert not (lesion & (labels == 2)).any()
    sidecar = json.loads((tmp_path / "mask.json").read_text())
    assert {k: v["name"] for k, v in sidecar["labels"].items()} == {"1": "Lung", "2": "Lung tumor", "3": "Lung tumor (synthetic)"}
    assert sidecar["labels"]["3"]["synthetic"]["seed"] == 4 and sidecar["model"] == model
    assert "synthetic" not in sidecar["labels"]["2"]

    code = main(
        [
            "report",
            str(tmp_path / "case.nii.gz"),
            str(tmp_path / "mask.nii.gz"),
            "--out-dir",
            str(tmp_path / "r"),
            "--formats",
            "json",
        ]
    )
    assert code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    marked = {lesion["synthetic"]: lesion for lesion in report["lesions"]}
    assert set(marked) == {True, False} and len(report["lesions"]) == 2
    assert marked[True]["status"] == "synthetic" and marked[True]["synthesis"]["lesion_type"] == "lung_tumor"
    assert marked[False]["status"] == "manual"  # the source's model recorded no candidate there: drawn by a person
    assert report["models"][0]["name"] == "tiny-lung"
