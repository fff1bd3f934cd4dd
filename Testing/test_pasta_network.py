"""PASTA's network: exact parameter layout, checkpoint loading in every accepted form, safety,
and the ``pasta models inspect`` / ``forward`` commands. Networks here are tiny (CPU, 2 cores)."""

from __future__ import annotations

import json
import math
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from pastacore.cli.main import main
from pastacore.errors import PastaError
from pastacore.networks.loading import inspect_checkpoint, load_encoder, load_for_segmentation
from pastacore.networks.unet import PastaUNet, expected_layout

TINY = dict(num_classes=3, base_features=4, num_pool=2)
FIXTURE_NAME = "pasta_state_dict_layout.json"
# SHA256 of json.dumps(sorted([name, shape]), separators=(",", ":")) of the layouts the public PASTA
# code builds (the shared fixture), so the check runs even where the fixture file is not at hand.
LAYOUT_SHA256 = {
    "seg_pastatrainer_k3": "634b5873d16df433298df5ed1ae436f013abd9da546f2213ffb100ad1a2a8dc2",
    "classify_base64_n14": "93ed275e020762e9a12207f0f22a82293bfc47866d6bf3b3285b8ac7d6584fbf",
}


def _fixture_layout(variant):
    here = Path(__file__).resolve()
    for root in (here.parents[1], here.parents[2]):  # the checkout, or the folder it sits in
        path = root / "shared" / "fixtures" / FIXTURE_NAME
        if path.is_file():
            return {name: tuple(shape) for name, shape in json.loads(path.read_text())[variant]}
    return None


def _layout_digest(layout):
    import hashlib

    canon = json.dumps(sorted([name, list(shape)] for name, shape in layout.items()), separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()


def tiny(seed=0, **kwargs):
    torch.manual_seed(seed)
    net = PastaUNet(**{**TINY, **kwargs}).eval()
    with torch.no_grad():  # make norm affine parameters and biases matter in comparisons
        for name, p in net.named_parameters():
            if "instnorm" in name or name.endswith("bias"):
                p.normal_(0, 0.5)
    return net


def sample(shape=(1, 1, 8, 8, 8), seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# --- architecture -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "variant,kwargs",
    [
        ("seg_pastatrainer_k3", dict(num_classes=3)),
        ("classify_base64_n14", dict(num_classes=14, num_head_outputs=14)),
    ],
)
def test_layout_matches_public_pasta_exactly(variant, kwargs):
    with torch.device("meta"):  # 240M parameters described, none allocated
        net = PastaUNet(base_features=64, num_pool=5, input_channels=1, max_features=1024, **kwargs)
    got = {name: tuple(t.shape) for name, t in net.state_dict().items()}
    assert all(t.is_meta for t in net.state_dict().values())
    expected = _fixture_layout(variant)
    if expected is not None:
        assert got == expected
    assert _layout_digest(got) == LAYOUT_SHA256[variant]
    assert len(got) == (104 if "num_head_outputs" in kwargs else 98)
    assert sum(math.prod(s) for s in got.values()) == (240_949_582 if "num_head_outputs" in kwargs else 240_268_032)
    assert got["conv_blocks_localization.0.0.blocks.0.conv.weight"] == (1024, 2048, 3, 3, 3)
    assert got["tu.4.weight"] == (128, 64, 2, 2, 2)
    assert net.feature_channels == 1024
    assert expected_layout(**kwargs) == got


def test_tiny_forward_shapes_and_features():
    net = tiny(num_head_outputs=5)
    x = sample((2, 1, 8, 8, 12))
    with torch.no_grad():
        logits = net(x)
        levels = net(x, deep_supervision=True)
        feats = net.encode_features(x)
        scores = net.classify(x)
    assert logits.shape == (2, 3, 8, 8, 12)
    assert [tuple(o.shape) for o in levels] == [(2, 3, 8, 8, 12), (2, 3, 4, 4, 6)]
    assert torch.equal(levels[0], logits)
    assert feats.shape == (2, 8) and scores.shape == (2, 5)
    # the features are the global mean of the last encoder stage (not the bottleneck)
    with torch.no_grad():
        h = x
        for stage in net.conv_blocks_context[:-1]:
            h = stage(h)
    assert torch.allclose(feats, h.mean(dim=(2, 3, 4)), atol=1e-6)
    assert not any(isinstance(m, torch.nn.InstanceNorm3d) and m.track_running_stats for m in net.modules())


def test_forward_refuses_bad_sizes():
    net = tiny()
    with pytest.raises(PastaError, match="divisible by 4"):
        net(sample((1, 1, 8, 8, 10)))
    with pytest.raises(PastaError, match="input channel"):
        net(sample((1, 2, 8, 8, 8)))
    with pytest.raises(PastaError, match="too small"):
        net(sample((1, 1, 4, 4, 4)))
    assert net.encode_features(sample((1, 1, 5, 7, 9))).shape == (1, 8)  # features need no divisibility
    with pytest.raises(PastaError, match="no classification head"):
        net.classify(sample())


# --- loading --------------------------------------------------------------------------------------
def _same_outputs(a, b, x=None):
    x = sample() if x is None else x
    with torch.no_grad():
        return torch.equal(a(x), b(x))


@pytest.mark.parametrize("wrap", ["flat", "state_dict", "network_weights", "module"])
def test_strict_load_of_every_container(tmp_path, wrap):
    net = tiny()
    sd = net.state_dict()
    obj = {
        "flat": sd,
        "state_dict": {"state_dict": sd, "train_step": 3},
        "network_weights": {"network_weights": sd},
        "module": {"module." + k: v for k, v in sd.items()},
    }[wrap]
    path = tmp_path / "weights.pth"
    torch.save(obj, path)
    loaded = load_for_segmentation(path)
    info = loaded.info
    assert (info.base_features, info.num_pool, info.num_classes, info.input_channels) == (4, 2, 3, 1)
    assert len(info.tensors_loaded) == len(sd) and not info.tensors_missing and not info.tensors_unexpected
    assert info.container == ("flat" if wrap in ("flat", "module") else wrap)
    assert _same_outputs(net, loaded.network)


def test_load_errors_name_the_offending_tensors(tmp_path):
    sd = tiny().state_dict()
    broken = dict(sd)
    broken["tu.0.weight"] = torch.zeros(1, 2, 2, 2, 2)
    del broken["conv_blocks_localization.1.1.blocks.0.conv.bias"]
    broken["extra.weight"] = torch.zeros(1)
    with pytest.raises(PastaError) as err:
        load_for_segmentation(broken)
    text = str(err.value)
    assert "tu.0.weight" in text and "conv_blocks_localization.1.1.blocks.0.conv.bias" in text
    assert "extra.weight" in text and "\n" not in text
    many = {k: v for k, v in sd.items() if not k.startswith("conv_blocks_localization.")}
    with pytest.raises(PastaError, match=r"missing .*and \d+ more"):
        load_for_segmentation(many)
    with pytest.raises(PastaError, match="not a PASTA"):
        load_for_segmentation({"fc.weight": torch.zeros(2, 2)})
    path = tmp_path / "not_weights.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(PastaError, match="dict of weights"):
        load_for_segmentation(path)


def _nnunet_folder(root: Path, net, trainer="TotalLesionTrainer_ft", name="checkpoint_final.pth", fold=0):
    result = root / f"{trainer}__nnUNetPlans__3d_fullres"
    (result / f"fold_{fold}").mkdir(parents=True)
    plans = {
        "dataset_name": "Dataset001_Lung",
        "plans_name": "nnUNetPlans",
        "configurations": {
            "3d_fullres": {"patch_size": [64, 96, 96], "spacing": [1.0, 1.0, 1.0], "normalization_schemes": ["CTNormalization"]}
        },
        "foreground_intensity_properties_per_channel": {
            "0": {"mean": 40.5, "std": 120.0, "median": 35.0, "percentile_00_5": -900.0, "percentile_99_5": 600.0}
        },
    }
    (result / "plans.json").write_text(json.dumps(plans))
    (result / "dataset.json").write_text(
        json.dumps({"labels": {"background": 0, "lung": 1, "lesion": 2}, "channel_names": {"0": "CT"}, "file_ending": ".nii.gz"})
    )
    checkpoint = {
        "network_weights": net.state_dict(),
        "optimizer_state": {},
        "trainer_name": trainer,
        "current_epoch": 500,
        "init_args": {"fold": fold, "configuration": "3d_fullres", "device": torch.device("cpu")},
        "logging": {"mean_fg_dice": [np.float64(0.5), np.float32(0.7)], "lrs": [1e-4]},
        "inference_allowed_mirroring_axes": (0, 1, 2),
    }
    torch.save(checkpoint, result / f"fold_{fold}" / name)
    return result


def test_nnunet_v2_folder_with_old_trainer_name(tmp_path):
    net = tiny()
    result = _nnunet_folder(tmp_path, net)
    for source in (result, result / "fold_0", result / "fold_0" / "checkpoint_final.pth"):
        loaded = load_for_segmentation(source)
        info = loaded.info
        assert info.trainer == "PASTATrainer_ft" and info.trainer_recorded == "TotalLesionTrainer_ft"
        assert info.labels == {"background": 0, "lung": 1, "lesion": 2}
        assert info.patch_size == [64, 96, 96] and info.fold == 0
        assert Path(info.checkpoint_path) == result / "fold_0" / "checkpoint_final.pth"
        assert info.normalization["0"]["mean"] == 40.5 and info.normalization_schemes == ["CTNormalization"]
        assert info.container == "nnunet_v2"
        assert _same_outputs(net, loaded.network)


def test_nnunet_folder_best_checkpoint_and_fewshot(tmp_path):
    result = _nnunet_folder(tmp_path, tiny(), trainer="PASTATrainer_fewshot", name="checkpoint_best.pth", fold=3)
    info = load_for_segmentation(result).info
    assert info.trainer == "PASTATrainer_fewshot" and info.fold == 3 and info.checkpoint == "checkpoint_best.pth"


def test_wrong_trainer_is_refused(tmp_path):
    result = _nnunet_folder(tmp_path, tiny(), trainer="nnUNetTrainer")
    with pytest.raises(PastaError, match="nnUNetTrainer"):
        load_for_segmentation(result)
    with pytest.raises(PastaError, match="nnUNetTrainer"):
        inspect_checkpoint(result / "fold_0" / "checkpoint_final.pth")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PastaError, match="not an nnU-Net result folder"):
        load_for_segmentation(empty)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


@pytest.mark.parametrize("how", ["torch", "pickle"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, how):
    marker = tmp_path / "pwned"
    payload = {"network_weights": tiny().state_dict(), "trainer_name": "PASTATrainer_ft", "evil": _Exploit(marker)}
    path = tmp_path / "checkpoint_final.pth"
    if how == "torch":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    for call in (load_for_segmentation, load_encoder, inspect_checkpoint):
        with pytest.raises(PastaError, match="refusing"):
            call(path)
    assert main(["models", "inspect", str(path)]) == 2
    assert not marker.exists()


def test_encoder_only_load_reports_skipped(tmp_path):
    net = tiny(num_head_outputs=6)
    path = tmp_path / "PASTA_final.pth"
    torch.save(net.state_dict(), path)
    loaded = load_encoder(path)
    info = loaded.info
    assert all(n.startswith("conv_blocks_context.") for n in info.tensors_loaded)
    assert len(info.tensors_loaded) == sum(n.startswith("conv_blocks_context.") for n in net.state_dict())
    assert {"seg_outputs.0.weight", "head.0.weight", "head.4.bias", "tu.0.weight"} <= set(info.tensors_skipped)
    assert not info.tensors_missing and loaded.network.head is None
    x = sample((1, 1, 6, 7, 8))
    with torch.no_grad():
        assert torch.equal(loaded.network.encode_features(x), net.encode_features(x))
        withhead = load_encoder(path, with_head=True).network
        assert torch.equal(withhead.classify(x), net.classify(x))
    # an encoder-only file (no decoder, no seg outputs) still gives features; the bottleneck may be absent
    encoder_only = {
        k: v
        for k, v in net.state_dict().items()
        if k.startswith("conv_blocks_context.") and not k.startswith("conv_blocks_context.2.")
    }
    loaded = load_encoder(encoder_only)
    assert loaded.info.tensors_missing and all(n.startswith("conv_blocks_context.2.") for n in loaded.info.tensors_missing)
    with torch.no_grad():
        assert torch.equal(loaded.network.encode_features(x), net.encode_features(x))
    with pytest.raises(PastaError, match="no segmentation outputs"):
        load_for_segmentation(encoder_only)
    del encoder_only["conv_blocks_context.1.blocks.1.conv.weight"]
    with pytest.raises(PastaError, match="conv_blocks_context.1.blocks.1.conv.weight"):
        load_encoder(encoder_only)


# --- command line -----------------------------------------------------------------------------------
def test_cli_inspect_json_and_text(tmp_path, capsys):
    net = tiny(num_head_outputs=2)
    path = tmp_path / "tiny.pth"
    torch.save({"state_dict": net.state_dict()}, path)
    assert main(["models", "inspect", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["architecture"] == "pasta-generic-unet"
    assert (report["base_features"], report["num_classes"], report["num_pool"], report["num_head_outputs"]) == (4, 3, 2, 2)
    assert len(report["tensors_loaded"]) == len(net.state_dict())
    assert report["tensors_missing"] == [] and report["tensors_unexpected"] == [] and report["trainer"] is None
    result = _nnunet_folder(tmp_path, tiny())
    assert main(["models", "inspect", str(result)]) == 0
    text = capsys.readouterr().out
    assert "PASTATrainer_ft" in text and "lesion" in text and "64x96x96" in text


def test_cli_forward_equals_direct_call(tmp_path, capsys):
    net = tiny()
    weights = tmp_path / "tiny.pth"
    torch.save(net.state_dict(), weights)
    volume = sample((1, 1, 8, 8, 8), seed=5)[0, 0].numpy()
    np.save(tmp_path / "in.npy", volume)
    out = tmp_path / "out.npy"
    assert main(["models", "forward", str(weights), str(tmp_path / "in.npy"), str(out)]) == 0
    with torch.no_grad():
        direct = net(torch.from_numpy(volume)[None, None]).numpy()
    got = np.load(out)
    assert got.shape == (1, 3, 8, 8, 8)
    np.testing.assert_allclose(got, direct, rtol=0, atol=1e-6)
    # refuses to overwrite, then replaces with --overwrite (features this time)
    assert main(["models", "forward", str(weights), str(tmp_path / "in.npy"), str(out), "--features"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["models", "forward", str(weights), str(tmp_path / "in.npy"), str(out), "--features", "--overwrite"]) == 0
    with torch.no_grad():
        feats = net.encode_features(torch.from_numpy(volume)[None, None]).numpy()
    np.testing.assert_allclose(np.load(out), feats, rtol=0, atol=1e-6)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left behind
    np.save(tmp_path / "bad.npy", np.zeros((8, 8, 10), np.float32))
    assert main(["models", "forward", str(weights), str(tmp_path / "bad.npy"), str(tmp_path / "o2.npy")]) == 2
    assert "divisible" in capsys.readouterr().err and not (tmp_path / "o2.npy").exists()


def test_reduced_width_public_checkpoint_keeps_its_full_width_head(tmp_path, lung2):
    """PASTA's public Generic_UNet_classify hard-codes its head as Linear(1024, 512) at any width: such
    a file segments (and gives features); only classifying is refused, with the reason."""
    torch.manual_seed(0)
    public = PastaUNet(num_classes=3, base_features=4, num_pool=2, num_head_outputs=14, head_in_features=1024)
    assert public.state_dict()["head.0.weight"].shape == (512, 1024)
    path = tmp_path / "reduced_public.pth"
    torch.save(public.state_dict(), path)
    info = inspect_checkpoint(path)
    assert info.head_in_features == 1024 and info.feature_channels == 8
    assert not info.tensors_missing and not info.tensors_mismatched and not info.tensors_unexpected
    loaded = load_for_segmentation(path)
    for name, tensor in public.state_dict().items():
        assert torch.equal(loaded.network.state_dict()[name], tensor), name
    features = load_encoder(path).network.encode_features(torch.zeros(1, 1, 8, 8, 8))
    assert features.shape == (1, 8)
    with pytest.raises(PastaError, match="takes 1024 features but its encoder gives 8"):
        load_encoder(path, with_head=True)
    image, _ = lung2
    from pastacore.geometry.boxes import VoxelBox
    from pastacore.inference.segment import segment_volume

    result = segment_volume(image, str(path), roi_box=VoxelBox((30, 200, 150), (36, 260, 210)), amp=False)
    assert result.labels.grid.same_as(image.grid)
