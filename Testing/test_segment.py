"""Segmentation end to end: region restriction, mapping back to the original grid, the
``pasta segment`` command, and refusal of bad input. The networks are tiny: a pointwise
"threshold network" whose correct output is known exactly, and a small PASTA U-Net."""

import json

import numpy as np
import pytest
import torch

from pastacore.cli.main import main
from pastacore.errors import CancelledError, PastaError
from pastacore.fileio import read_volume
from pastacore.geometry.boxes import VoxelBox
from pastacore.geometry.standardize import standardize
from pastacore.inference.segment import segment_volume
from pastacore.inference.segmentation_model import SegmentationModel
from pastacore.preprocessing.normalize import pasta_slf
from pastacore.terminology import segment_info


def threshold_model(threshold=0.5):
    """Label 2 where the SLF-normalised intensity exceeds ``threshold`` (about -30 HU), else 0."""
    conv = torch.nn.Conv3d(1, 3, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.copy_(torch.tensor([0.0, -1000.0, -100.0 * threshold]))
        conv.weight[2, 0] = 100.0
    return SegmentationModel(conv, (32, 32, 32), {1: segment_info("lung"), 2: segment_info("tumor@lung")}, (), (2,))


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from pastacore.networks.unet import PastaUNet

    torch.manual_seed(0)
    network = PastaUNet(num_classes=3, base_features=4, num_pool=2)
    path = tmp_path_factory.mktemp("model") / "tiny.pth"
    torch.save(network.state_dict(), path)
    return path


def test_threshold_network_result_maps_back_exactly(lung1):
    image, _ = lung1
    box = VoxelBox((20, 200, 300), (30, 300, 400))
    result = segment_volume(image, threshold_model(), roi_box=box, overlap=0.25, amp=False)
    assert result.labels.grid.same_as(image.grid) and result.labels.array.dtype == np.uint8
    # expected: threshold on the standard grid inside the (standardised) box, mapped back
    std = standardize(image, is_label=False)
    box_mask = np.zeros(image.array.shape, np.uint8)
    box_mask[box.slices] = 1
    region = standardize(image.with_array(box_mask, is_label=True), is_label=True).volume.array > 0
    expected = np.where(region & (pasta_slf(std.volume.array) > 0.5), 2, 0).astype(np.uint8)
    expected = std.to_source(std.volume.with_array(expected, is_label=True)).array
    assert np.array_equal(result.labels.array, expected)
    assert set(np.unique(result.labels.array)) == {0, 2}
    assert result.tiles_run <= result.tiles_total
    # reduced precision (bf16 where the CPU has it) changes at most a few voxels at the threshold
    fast = segment_volume(image, threshold_model(), roi_box=box, overlap=0.25, amp=True)
    assert (fast.labels.array == expected).mean() > 0.999


def test_organ_mask_restricts_and_bad_masks_are_refused(lung1, lung2):
    image, tumour = lung1
    result = segment_volume(image, threshold_model(), organ_mask=tumour)
    found = result.labels.array > 0
    solid = (tumour.array > 0) & (image.array > 20)
    assert found[solid].mean() > 0.95  # the solid part of the (part-solid) tumour is found
    assert not found[:, :100].any()  # nothing far from the organ (+20 mm)
    with pytest.raises(PastaError, match="does not match the image grid"):
        segment_volume(image, threshold_model(), organ_mask=lung2[1])
    with pytest.raises(PastaError, match="organ mask is empty"):
        segment_volume(image, threshold_model(), organ_mask=tumour.with_array(np.zeros_like(tumour.array)))


def test_cancel_leaves_nothing(lung1):
    with pytest.raises(CancelledError):
        segment_volume(lung1[0], threshold_model(), roi_box=VoxelBox((20, 200, 300), (30, 300, 400)), is_cancelled=lambda: True)


def test_mr_input_is_refused(sample_dir):
    with pytest.raises(PastaError, match="does not look like CT"):
        segment_volume(read_volume(sample_dir / "brain1_image.nrrd"), threshold_model())


def test_cli_segment_with_a_pasta_checkpoint(tmp_path, sample_dir, tiny_checkpoint, capsys):
    out = tmp_path / "seg.nii.gz"
    # RAS box around the lung1 tumour region (a few cm)
    image = read_volume(sample_dir / "lung1_image.nrrd")
    centre = (image.grid.ijk_to_ras() @ np.array([256, 256, 24, 1.0]))[:3]
    roi = ",".join(f"{v:.1f}" for v in (*(centre - 20), *(centre + 20)))
    code = main(
        [
            "segment",
            str(sample_dir / "lung1_image.nrrd"),
            "--out",
            str(out),
            "--model",
            str(tiny_checkpoint),
            f"--roi={roi}",
            "--device",
            "cpu",
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    labels = read_volume(out, is_label=True)
    assert labels.grid.same_as(image.grid) and set(np.unique(labels.array)) <= {0, 1, 2}
    sidecar = json.loads((tmp_path / "seg.json").read_text())
    assert set(sidecar["labels"]) == {"1", "2"} and len(sidecar["model"]["sha256"]) == 64
    assert sidecar["model"]["architecture"]["base_features"] == 4
    # a bare reduced-width weight file: the user is told that patch size and labels were guessed
    assert sidecar["model"]["assumed"] == ["patch size", "labels"]
    assert len(sidecar["warnings"]) == 1 and "warning: nothing describes" in err and "patch size 128x128x128" in err
    # no overwrite without permission, and nothing written on failure
    assert (
        main(
            ["segment", str(sample_dir / "lung1_image.nrrd"), "--out", str(out), "--model", str(tiny_checkpoint), f"--roi={roi}"]
        )
        == 2
    )
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args,message",
    [
        (["--model", "no-such-model"], "no installed model named"),
        (["--roi", "1,2,3"], "six comma-separated numbers"),
        (["--roi", "5000,5000,5000,5010,5010,5010"], "entirely outside"),
        (["--overlap", "1.5"], "overlap must be in"),
    ],
)
def test_cli_segment_bad_input(tmp_path, sample_dir, tiny_checkpoint, capsys, args, message):
    argv = ["segment", str(sample_dir / "lung1_image.nrrd"), "--out", str(tmp_path / "o.nii.gz")]
    if "--model" not in args:
        argv += ["--model", str(tiny_checkpoint)]
    assert main(argv + args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert list(tmp_path.iterdir()) == []


def test_cli_segment_wrong_organ_label(tmp_path, sample_dir, tiny_checkpoint, capsys):
    argv = [
        "segment",
        str(sample_dir / "lung1_image.nrrd"),
        "--out",
        str(tmp_path / "o.nii.gz"),
        "--model",
        str(tiny_checkpoint),
        "--organ-mask",
        str(sample_dir / "lung1_label.nrrd"),
        "--organ-label",
        "7",
    ]
    assert main(argv) == 2
    assert "label 7 is not present" in capsys.readouterr().err


def test_organ_sources(lung1, tmp_path):
    from pastacore.anatomy.organs import classical_organ, organ_from_labels

    image, tumour = lung1
    lungs = classical_organ(image, "lungs")
    assert lungs.grid.same_as(image.grid)
    assert 2.0 < lungs.array.sum() * np.prod(image.grid.spacing) / 1e6 < 7.0  # litres of lung
    assert lungs.array[tumour.array > 0].mean() > 0.9  # lung1's nodule lies inside the lungs
    # a TotalSegmentator v2 style map: lobes 10-14 are lung, 5 is liver
    total = tumour.with_array(np.zeros_like(tumour.array))
    total.array[lungs.array > 0] = 12
    total.array[:5] = 5
    picked = organ_from_labels(total, organ="lung", totalsegmentator_version=2)
    assert np.array_equal(picked.array > 0, total.array == 12)
    assert organ_from_labels(total, organ="liver").array.sum() == (total.array == 5).sum()
    with pytest.raises(PastaError, match="no pancreas found"):
        organ_from_labels(total, organ="pancreas")
    with pytest.raises(PastaError, match="built-in organ masks"):
        classical_organ(image, "heart")


def test_postprocess_keeps_lesions_of_the_organ_only():
    """A mass reaching out of the user's organ mask is kept (clipped 10 mm out); a piece that
    only borders it from outside (no voxel in it) goes; so does a piece below the minimum
    size. With the model's organ label alone, lesions inside the organ all stay."""
    from pastacore.inference.segment import _postprocess

    labels = np.zeros((40, 60, 90), np.uint8)
    labels[:, :, :40] = 1  # the organ: i < 40
    labels[10:30, 20:40, 35:65] = 2  # a mass: 5 voxels in the organ, 25 out
    labels[10:20, 45:55, 41:47] = 2  # borders the organ from outside only
    labels[2:4, 2:4, 10:12] = 2  # 8 mm^3 inside the organ
    user_organ = np.zeros(labels.shape, bool)
    user_organ[:, :, :40] = True
    out = _postprocess(labels.copy(), (2,), (1,), user_organ, 20.0, (1.0, 1.0, 1.0))
    mass = out[10:30, 20:40, :] == 2
    assert mass[:, :, 35:50].all()  # up to 10 mm beyond the organ
    assert not mass[:, :, 50:].any()  # no further
    assert not (out[10:20, 45:55, 41:47] == 2).any()
    assert not (out[2:4, 2:4, 10:12] == 2).any()
    assert (out == 1).sum() == (labels == 1).sum()  # organ labels untouched
    kept = _postprocess(labels.copy(), (2,), (1,), user_organ, 0.0, (1.0, 1.0, 1.0))
    assert (kept[2:4, 2:4, 10:12] == 2).all()
    inside = np.zeros_like(labels)
    inside[:, :, :40] = 1
    inside[10:20, 10:20, 10:20] = 2  # a tumour within the model's organ
    assert (_postprocess(inside.copy(), (2,), (1,), None, 20.0, (1.0, 1.0, 1.0)) == inside).all()


@pytest.mark.parametrize(
    "organ, note", [(None, "restricted to the lungs (the model's organ"), ("body", "air outside the body skipped")]
)
def test_cli_searches_the_model_organ_unless_told_otherwise(tmp_path, tiny_lung_model, organ, note):
    from conftest import phantom_ct

    from pastacore.fileio import write_volume

    write_volume(phantom_ct(), tmp_path / "ct.nii.gz")
    extra = ["--organ", organ] if organ else []
    assert (
        main(["segment", str(tmp_path / "ct.nii.gz"), "--out", str(tmp_path / "seg.nii.gz"), "--model", tiny_lung_model] + extra)
        == 0
    )
    notes = json.loads((tmp_path / "seg.json").read_text())["notes"]
    assert any(n.startswith(note) for n in notes), notes
