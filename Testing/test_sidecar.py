"""The segmentation sidecar: one path rule (one stem) for the writer (``pasta segment``) and the
reader (``pasta report``), whatever the label map's suffix."""

import json

import numpy as np
import pytest
from conftest import make_volume

from pastacore.cli.main import main
from pastacore.fileio import write_volume
from pastacore.fileio.readers import image_stem
from pastacore.inference.sidecar import read_sidecar, sidecar_path, write_sidecar


@pytest.mark.parametrize(
    "name,expected",
    [
        ("seg.nii.gz", "seg.json"),
        ("seg.nii", "seg.json"),
        ("seg.mha", "seg.json"),
        ("seg.mhd", "seg.json"),
        ("seg.nrrd", "seg.json"),
        ("seg.seg.nrrd", "seg.json"),
        ("SEG.NII.GZ", "SEG.json"),
        ("a.b.nii.gz", "a.b.json"),
        ("labels", "labels.json"),
    ],
)
def test_one_sidecar_name_per_label_map(tmp_path, name, expected):
    assert sidecar_path(tmp_path / name) == tmp_path / expected
    assert image_stem(tmp_path / name) + ".json" == expected


def test_a_missing_or_broken_sidecar_reads_as_empty(tmp_path):
    assert read_sidecar(tmp_path / "seg.nii.gz") == {}
    (tmp_path / "seg.json").write_text("[1, 2]")
    assert read_sidecar(tmp_path / "seg.nii.gz") == {}
    (tmp_path / "seg.json").write_text("{not json")
    assert read_sidecar(tmp_path / "seg.nii.gz") == {}


def _write_labels(labels, path):
    if path.name.endswith(".mha"):  # pasta writes NIfTI/NRRD only; other tools write MetaImage
        import SimpleITK as sitk

        from pastacore.fileio.sitk_bridge import sitk_from_volume

        sitk.WriteImage(sitk_from_volume(labels), str(path))
    else:
        write_volume(labels, path)


@pytest.mark.parametrize("suffix", [".mha", ".nii.gz"])
def test_report_reads_the_sidecar_segment_writes(tmp_path, capsys, suffix):
    image = make_volume((20, 24, 24), spacing=(2.0, 1.0, 1.0))
    labels = np.zeros(image.array.shape, np.uint8)
    labels[4:16, 4:20, 4:20] = 1
    labels[8:12, 8:14, 8:14] = 2
    write_volume(image, tmp_path / "ct.nii.gz")
    seg = tmp_path / f"seg{suffix}"
    _write_labels(image.with_array(labels, is_label=True), seg)
    write_sidecar(
        sidecar_path(seg),
        {
            "labels": {"1": {"name": "liver"}, "2": {"name": "liver tumor"}},
            "model": {"name": "toy-model", "version": "7", "sha256": "ab" * 32},
        },
    )
    assert read_sidecar(seg)["model"]["name"] == "toy-model"
    code = main(["report", str(tmp_path / "ct.nii.gz"), str(seg), "--out-dir", str(tmp_path / "r"), "--formats", "json"])
    assert code == 0, capsys.readouterr().err
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert [m["name"] for m in data["models"]] == ["toy-model"]
    (lesion,) = data["lesions"]
    assert lesion["organ"] == "liver" and lesion["term"] == "tumor@liver"
    assert data["case"]["segmentation_name"] == seg.name
