"""The PyMIC family (MIS-FM's FMUNet and PCT-Net): PyMIC's layouts and sizes, ``pasta models
forward`` against an independent functional reference (``pymic_reference``), refusals of files
that do not fit, PyMIC's name-and-shape start rule, and a PCT-Net segmenting a real CT with a
sliding window of its input size. Checkpoints are seeded here in PyMIC's layout; nothing is
downloaded."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from conftest import run_cli
from pymic_reference import Tracked, fmunet_reference, pct_position_index, pctnet_reference

from pastacore.errors import PastaError
from pastacore.families.pymic.checkpoint import build_network, class_dependent, load_start, read_pymic_file
from pastacore.families.pymic.config import check_config

FMUNET = {"family": "pymic", "net_type": "FMUNet", "class_num": 3, "feature_chns": [4, 8, 8, 16, 16], "res_mode": 1}
# input 16x48x48 in resolution mode 1 -> pyramid 8x12x12 (windows of 4: shifted, padded), 4x6x6 (window
# 4: not shifted, padded to 8), 2x3x3 (the window shrinks to 2)
PCTNET = {
    "family": "pymic",
    "net_type": "PCTNet",
    "class_num": 3,
    "input_size": [16, 48, 48],
    "feature_chns": [4, 8, 16, 16, 32],
    "num_heads": [2, 2, 4],
    "window_sizes": [4, 4, 4],
    "resolution_mode": 1,
    "multiscale_pred": True,
}


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    pass


run = run_cli


def seeded_network(config: dict, seed: int = 0) -> torch.nn.Module:
    """The configured network with random values in every tensor (BatchNorm statistics and the
    position-bias tables included; the stored position index as built)."""
    torch.manual_seed(seed)
    network = build_network(check_config(config))
    with torch.no_grad():
        for name, tensor in network.state_dict().items():
            if not tensor.dtype.is_floating_point:
                continue
            if name.endswith("running_var"):
                tensor.uniform_(0.5, 2.0)
            elif tensor.ndim >= 2:
                tensor.normal_(0.0, tensor[0].numel() ** -0.5)
            else:
                tensor.normal_(0.0, 0.3)
    return network.eval()


def save_pymic(network: torch.nn.Module, path, iteration: int = 1200) -> None:
    """A checkpoint as PyMIC's agent saves it (valid_pred a numpy float32)."""
    torch.save(
        {
            "iteration": iteration,
            "valid_pred": np.float32(0.8125),
            "model_state_dict": network.state_dict(),
            "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 1e-3, "params": [0]}]},
        },
        path,
    )


def write_json(path, data) -> str:
    path.write_text(json.dumps(data))
    return str(path)


# --- configs and layouts ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config, field",
    [
        ({"net_type": "FMUNet"}, "class_num"),
        ({"net_type": "UNet3D", "class_num": 2}, "net_type"),
        ({"net_type": "FMUNet", "class_num": 2, "dropout": [0, 0.2]}, "dropout"),
        ({"net_type": "FMUNet", "class_num": 2, "feature_chns": [8, 16]}, "feature_chns"),
        ({"net_type": "PCTNet", "class_num": 2}, "input_size"),
        ({"net_type": "PCTNet", "class_num": 2, "input_size": [16, 40, 48]}, "input_size"),
        ({"net_type": "PCTNet", "class_num": 2, "input_size": [16, 32, 32], "num_heads": [3, 8, 16]}, "num_heads"),
        ({"net_type": "PCTNet", "class_num": 2, "input_size": [16, 32, 32], "update_mode": 1}, "update_mode"),
    ],
)
def test_a_bad_config_is_refused_naming_its_field(config, field):
    with pytest.raises(PastaError, match=field):
        check_config(config)


def test_absent_parameters_take_pymic_defaults():
    fm = check_config({"net_type": "FMUNet", "class_num": 2})
    assert (fm["feature_chns"], fm["dropout"], fm["res_mode"], fm["depth"], fm["multiscale_pred"]) == (
        [32, 64, 128, 256, 512],
        0.2,
        0,
        2,
        True,
    )
    pct = check_config({"net_type": "PCTNet", "class_num": 2, "input_size": [64, 128, 128]})
    assert (pct["dropout"], pct["depths"], pct["num_heads"], pct["window_sizes"], pct["resolution_mode"]) == (
        [0, 0, 0.2, 0.2, 0.2],
        [2, 2, 2],
        [4, 8, 16],
        [6, 6, 6],
        0,
    )
    assert pct["multiscale_pred"] is False and pct["feature_chns"] == [32, 64, 128, 256, 512]


@pytest.mark.parametrize(
    "config, entries, millions, outputs",
    [
        ({"net_type": "FMUNet", "class_num": 2}, 146, 47.33, 8),
        (
            {
                "net_type": "PCTNet",
                "class_num": 2,
                "input_size": [64, 128, 128],
                "feature_chns": [24, 48, 128, 256, 512],
                "resolution_mode": 1,
            },
            684,
            45.29,
            16,
        ),
    ],
)
def test_released_configs_have_the_released_layouts(config, entries, millions, outputs):
    """State-dict entries and parameters of the released files; the tensors another class count
    changes are exactly the output convolutions (those a start leaves new)."""
    with torch.device("meta"):
        two = build_network(check_config(config))
        five = build_network(check_config({**config, "class_num": 5}))
    state2, state5 = two.state_dict(), five.state_dict()
    assert len(state2) == entries
    assert round(sum(p.numel() for p in two.parameters()) / 1e6, 2) == millions
    differ = [n for n in state2 if state2[n].shape != state5[n].shape]
    assert len(differ) == outputs
    assert differ == [n for n in state2 if class_dependent(check_config(config), n)]


def test_pct_position_index_is_pct_nets_own_formula():
    from pastacore.families.pymic.window_attention import relative_position_index

    for window in [(6, 6, 6), (4, 4, 4), (2, 3, 5)]:
        ours = relative_position_index(window).numpy()
        assert np.array_equal(ours, pct_position_index(window))
    w = 6  # Swin-3D's index would be (ds + 5) * 121 + (dh + 5) * 11 + (dw + 5): a different table lookup
    swin = (np.arange(w)[:, None] - np.arange(w)[None] + w - 1) * (2 * w - 1) ** 2
    assert not np.array_equal(relative_position_index((w, 1, 1)).numpy(), swin)


# --- forward against the reference ---------------------------------------------------------------


@pytest.mark.parametrize("config", [FMUNET, PCTNET, {**PCTNET, "multiscale_pred": False, "resolution_mode": 0}])
def test_models_forward_matches_the_reference(capsys, tmp_path, config):
    network = seeded_network(config)
    save_pymic(network, tmp_path / "net.pt")
    size = config.get("input_size", [16, 32, 32])
    x = torch.randn(1, 1, *size, generator=torch.Generator().manual_seed(1))
    torch.save({"x": x}, tmp_path / "in.pt")
    cfg = write_json(tmp_path / "cfg.json", config)
    code, _, err = run(capsys, "models", "forward", tmp_path / "net.pt", tmp_path / "in.pt", tmp_path / "out.pt", "--config", cfg)
    assert code == 0, err
    out = torch.load(tmp_path / "out.pt", weights_only=True)
    state = Tracked(torch.load(tmp_path / "net.pt", weights_only=False)["model_state_dict"])
    with torch.no_grad():
        reference = (fmunet_reference if config["net_type"] == "FMUNet" else pctnet_reference)(state, check_config(config), x)
    tolerance = 1e-4 * max(1.0, float(reference[0].abs().max()))
    assert out["logits"].shape == (1, 3, *size)
    assert torch.allclose(out["logits"], reference[0], atol=tolerance, rtol=0)
    if check_config(config)["multiscale_pred"]:
        assert len(out["outputs"]) == 4
        for got, want in zip(out["outputs"], reference):
            assert got.shape == want.shape and torch.allclose(got, want, atol=tolerance, rtol=0)
    else:
        assert "outputs" not in out
    unread = {n for n in state if n not in state.read}
    if config["net_type"] == "FMUNet":
        assert not unread
    else:  # what PCT-Net stores but this mode never runs: the other stems and heads, norm_layer, counters
        mode = config["resolution_mode"]
        for name in unread:
            assert (
                name.startswith(("embeddings.", "pred_heads."))
                and not name.startswith((f"embeddings.{mode}.", f"pred_heads.{mode}."))
                or ".norm_layer." in name
                or name.endswith("num_batches_tracked")
                or (not check_config(config)["multiscale_pred"] and ".out_conv" in name)
            ), name


def test_files_that_do_not_fit_are_refused_in_one_line(capsys, tmp_path):
    save_pymic(seeded_network(FMUNET), tmp_path / "fm.pt")
    torch.save({"x": torch.zeros(1, 1, 16, 48, 48)}, tmp_path / "in.pt")
    pct = write_json(tmp_path / "pct.json", PCTNET)
    four = write_json(tmp_path / "four.json", {**FMUNET, "class_num": 4})
    out = tmp_path / "out.pt"
    code, _, err = run(capsys, "models", "forward", tmp_path / "fm.pt", tmp_path / "in.pt", out, "--config", pct)
    assert code == 2 and err.count("\n") == 1 and "does not fit the configured PCT-Net" in err and "missing" in err
    code, _, err = run(capsys, "models", "forward", tmp_path / "fm.pt", tmp_path / "in.pt", out, "--config", four)
    assert code == 2 and err.count("\n") == 1 and "out_layers.0.2.weight: file 3x4x1x3x3, network 4x4x1x3x3" in err
    torch.save({"x": torch.zeros(1, 1, 16, 40, 40)}, tmp_path / "odd.pt")  # 40 is no multiple of 16
    fm = write_json(tmp_path / "fm.json", FMUNET)
    code, _, err = run(capsys, "models", "forward", tmp_path / "fm.pt", tmp_path / "odd.pt", out, "--config", fm)
    assert code == 2 and "patch 16x40x40 does not fit FMUNet" in err
    assert not out.exists()

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, ("true",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"model_state_dict": Evil()}))
    with pytest.raises(PastaError, match="refusing evil.pt|cannot read evil.pt"):
        read_pymic_file(tmp_path / "evil.pt")
    torch.save({"epoch": 3, "weights": [1, 2]}, tmp_path / "other.pt")
    with pytest.raises(PastaError, match="not a PyMIC checkpoint"):
        read_pymic_file(tmp_path / "other.pt")


def test_verify_reads_pymics_bookkeeping(tmp_path):
    from pastacore.families.pymic.family import verify

    save_pymic(seeded_network(PCTNET), tmp_path / "pct.pt", iteration=6000)
    summary = verify(tmp_path / "pct.pt", check_config(PCTNET))
    assert summary["iteration"] == 6000 and summary["valid_pred"] == pytest.approx(0.8125)
    assert summary["tensors"] == len(build_network(check_config(PCTNET)).state_dict())
    assert summary["layout"] == "PyMIC checkpoint" and summary["net_type"] == "PCTNet"


# --- starts ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [FMUNET, PCTNET])
def test_a_start_loads_by_pymics_name_and_shape_rule(config):
    """A 5-class VolF network into a 3-class one: all but the output convolutions are taken."""
    volf = seeded_network({**config, "class_num": 5})
    trained = check_config({**config, "class_num": 3})
    network = build_network(trained)
    loaded = load_start(network, volf.state_dict(), trained, "volf.pt")
    outputs = [n for n in network.state_dict() if class_dependent(trained, n)]
    assert sorted(loaded.fresh) == sorted(outputs) and sorted(loaded.skipped) == sorted(outputs)
    assert len(loaded.loaded) == len(network.state_dict()) - len(outputs)
    mine, theirs = network.state_dict(), volf.state_dict()
    assert all(torch.equal(mine[name], theirs[name]) for name in loaded.loaded)
    other = seeded_network(PCTNET if config is FMUNET else FMUNET)
    with pytest.raises(PastaError, match="besides the output convolutions would start from random weights"):
        load_start(build_network(trained), other.state_dict(), trained, "other.pt")


def test_weights_load_mode_encoder_takes_the_encoder_only():
    trained = check_config({**FMUNET, "weights_load_mode": "encoder"})
    source = seeded_network(FMUNET)
    loaded = load_start(build_network(trained), source.state_dict(), trained, "fm.pt")
    assert loaded.loaded and all(n.startswith(("project.", "encoder.")) for n in loaded.loaded)
    assert all(n.startswith(("decoder.", "out_layers.")) for n in loaded.fresh)


# --- a PCT-Net segments a real CT -----------------------------------------------------------------


def test_pctnet_segments_a_real_ct_with_its_input_size(capsys, tmp_path, lung1):
    from pastacore.fileio import read_volume, write_volume
    from pastacore.geometry.grid import Grid
    from pastacore.geometry.volume import Volume

    image, labels = lung1
    centre = (np.argwhere(labels.array > 0).min(0) + np.argwhere(labels.array > 0).max(0)) // 2
    box = (slice(int(centre[0]) - 6, int(centre[0]) + 6),) + tuple(slice(int(c) - 64, int(c) + 64) for c in centre[1:])
    origin = image.grid.index_to_lps(np.array([[box[2].start, box[1].start, box[0].start]], float))[0]
    crop = Volume(
        np.ascontiguousarray(image.array[box]),
        Grid(image.array[box].shape, image.grid.spacing, tuple(origin), image.grid.direction),
    )
    ct = tmp_path / "ct.nii.gz"
    write_volume(crop, ct)
    config = {**PCTNET, "input_size": [32, 64, 64], "resolution_mode": 0}
    save_pymic(seeded_network(config), tmp_path / "pct.pt")
    cfg = write_json(tmp_path / "pct.json", config)
    code, out, err = run(
        capsys, "segment", ct, "--model", tmp_path / "pct.pt", "--model-config", cfg, "--out", tmp_path / "seg.nii.gz"
    )
    assert code == 0, err
    seg = read_volume(tmp_path / "seg.nii.gz", is_label=True)
    assert seg.array.shape == crop.array.shape and seg.array.max() <= 2
    sidecar = json.loads((tmp_path / "seg.json").read_text())
    assert sidecar["model"]["family"] == "pymic" and "PCT-Net" in sidecar["model"]["architecture"]
