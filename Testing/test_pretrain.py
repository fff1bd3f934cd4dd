"""VolF pretraining (``pasta pretrain --method volf``) on cropped real CTs: the fusion rules,
a PyMIC checkpoint PyMIC's loader takes, an exact resume, and fine-tuning from the result to a
model ``pasta segment`` runs."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from conftest import run_cli

from pastacore.cli.main import main
from pastacore.errors import CancelledError, PastaError
from pastacore.families.pymic.volf import VolfSettings, adaptive_contrast, fusion_labels, volf_sample

pytest.importorskip("monai")

TINY = {"family": "pymic", "net_type": "FMUNet", "class_num": 5, "feature_chns": [4, 8, 8, 16, 16]}
PATCH = (16, 32, 32)


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    pass


run = run_cli


def crop_around_tumour(image, labels, slices=12, pixels=96):
    from pastacore.geometry.grid import Grid
    from pastacore.geometry.volume import Volume

    where = np.argwhere(labels.array > 0)
    centre = (where.min(0) + where.max(0)) // 2
    box = (slice(int(centre[0]) - slices // 2, int(centre[0]) + slices // 2),) + tuple(
        slice(int(c) - pixels // 2, int(c) + pixels // 2) for c in centre[1:]
    )
    origin = image.grid.index_to_lps(np.array([[box[2].start, box[1].start, box[0].start]], float))[0]

    def cut(volume):
        array = np.ascontiguousarray(volume.array[box])
        grid = Grid(array.shape, volume.grid.spacing, tuple(origin), volume.grid.direction)
        return Volume(array, grid, is_label=volume.is_label)

    return cut(image), cut(labels)


@pytest.fixture(scope="module")
def cts(lung1, lung2, tmp_path_factory):
    """lung1 and lung2 around their tumours, as files: {name: (ct, tumour mask)}."""
    from pastacore.fileio import write_volume

    folder = tmp_path_factory.mktemp("cts")
    files = {}
    for name, (image, labels) in {"lung1": lung1, "lung2": lung2}.items():
        ct, tumour = crop_around_tumour(image, labels)
        files[name] = (write_volume(ct, folder / f"{name}.nii.gz"), write_volume(tumour, folder / f"{name}_tumour.nii.gz"))
    return files


@pytest.fixture(scope="module")
def volume(cts):
    """lung1's crop as pretraining sees it: 1 mm grid, clipped, in [-1, 1]."""
    from pastacore.families.pymic.prepare import prepared_hu

    return prepared_hu(cts["lung1"][0], (-1000, 1000)).astype(np.float32) / 1000.0


# --- the fusion rules ------------------------------------------------------------------------------


def test_a_volf_sample_fuses_two_views_by_its_label_map(volume):
    sample = volf_sample(volume, (20, 32, 32), 5, VolfSettings(), random.Random(3))
    k = 4
    for view in (sample.a, sample.b):
        assert view.shape == (20, 32, 32) and view.min() >= 0.0 and view.max() <= 1.0
    assert sample.labels.dtype == np.uint8 and set(np.unique(sample.labels)) <= set(range(k + 1))
    alpha = sample.labels / k
    assert np.allclose(sample.fused, alpha * sample.a + (1 - alpha) * sample.b, atol=1e-6)
    again = volf_sample(volume, (20, 32, 32), 5, VolfSettings(), random.Random(3))
    assert np.array_equal(again.fused, sample.fused) and np.array_equal(again.labels, sample.labels)
    other = volf_sample(volume, (20, 32, 32), 5, VolfSettings(), random.Random(4))
    assert not np.array_equal(other.labels, sample.labels)


def test_seventy_percent_of_the_grid_cells_get_a_label():
    """Blocks of a fixed 4x8x8 on a 20x32x32 patch: 5x4x4 = 80 cells, int(0.7 x 80) = 56 labelled."""
    settings = VolfSettings(block_min=(4, 8, 8), block_max=(4, 8, 8))
    labels = fusion_labels((20, 32, 32), 5, settings, random.Random(0))
    cells = labels.reshape(5, 4, 4, 8, 4, 8).transpose(0, 2, 4, 1, 3, 5).reshape(80, -1)
    assert all(len(np.unique(cell)) == 1 for cell in cells)  # each cell one label
    assert int((cells[:, 0] > 0).sum()) == 56
    assert set(np.unique(cells[:, 0])) <= {0, 1, 2, 3, 4}


def test_adaptive_contrast_maps_the_percentiles_to_a_tenth_and_nine_tenths():
    x = np.random.default_rng(0).normal(size=(8, 16, 16)).astype(np.float32)
    out = adaptive_contrast(x.copy(), 1.0, 99.0)
    v0, v1 = np.percentile(x, [1.0, 99.0])
    assert out.min() == pytest.approx(0.0) and out.max() == pytest.approx(1.0)
    inside = (x >= v0) & (x <= v1)
    assert np.allclose(out[inside], (x[inside] - v0) / (v1 - v0) * 0.8 + 0.1, atol=1e-6)
    assert np.all(out[x < v0] < 0.1) and np.all(out[x > v1] > 0.9)


# --- pasta pretrain, resume, and fine-tuning from it -------------------------------------------------


@pytest.fixture(scope="module")
def pretrained(cts, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pretrain")
    config = folder / "tiny.json"
    config.write_text(json.dumps(TINY))
    out = folder / "volf"
    code = main(
        [
            "pretrain",
            "--method",
            "volf",
            "--images",
            str(cts["lung1"][0]),
            str(cts["lung2"][0]),
            "--out",
            str(out),
            "--steps",
            "3",
            "--patch",
            ",".join(map(str, PATCH)),
            "--save-examples",
            "2",
            "--config",
            str(config),
            "--seed",
            "1",
        ]
    )
    assert code == 0
    return out


def test_pretrain_writes_a_pymic_checkpoint(capsys, pretrained):
    from pastacore.families import read_model_config
    from pastacore.families.pymic.checkpoint import build_network

    checkpoint = torch.load(pretrained / "model.pt", weights_only=True)  # no allow-list needed
    assert set(checkpoint) == {"iteration", "valid_pred", "model_state_dict", "optimizer_state_dict"}
    assert checkpoint["iteration"] == 3 and isinstance(checkpoint["valid_pred"], float)
    config = read_model_config(pretrained / "config.json")
    assert config["class_num"] == 5 and config["feature_chns"] == TINY["feature_chns"]
    expected = build_network(config).state_dict()
    assert list(checkpoint["model_state_dict"]) == list(expected)
    assert all(checkpoint["model_state_dict"][n].shape == t.shape for n, t in expected.items())
    assert checkpoint["optimizer_state_dict"]["param_groups"][0]["lr"] == pytest.approx(1e-3)
    log = json.loads((pretrained / "log.json").read_text())
    assert len(log["loss"]) == 3 and all(np.isfinite(log["loss"])) and log["images"] == ["lung1", "lung2"]
    examples = sorted((pretrained / "examples").glob("*.npz"))
    assert len(examples) == 2
    with np.load(examples[0]) as example:
        alpha = example["label"] / 4.0
        assert np.allclose(example["fused"], alpha * example["A"] + (1 - alpha) * example["B"], atol=1e-6)
    assert {p.name for p in (pretrained / "prepared").iterdir()} >= {"lung1", "lung2", "manifest.sqlite"}
    code, _, err = run(capsys, "pretrain", "--method", "volf", "--images", "x.nii.gz", "--out", pretrained, "--steps", "1")
    assert code == 2 and "already holds outputs of an earlier run" in err


def test_a_cancelled_pretraining_resumes_exactly(tmp_path, pretrained):
    from pastacore.families.pymic.config import check_config
    from pastacore.families.pymic.pretrain import PretrainSettings, pretrain
    from pastacore.training.finetune import Checkpoints

    volumes = sorted((pretrained / "prepared").glob("*/volume.npy"))
    config = check_config(TINY)
    settings = PretrainSettings(steps=3, patch=PATCH, checkpoint_every=1, seed=2)
    whole = pretrain(volumes, config, settings)
    checkpoints = Checkpoints(tmp_path)
    checkpoints.start({"run": 1}, resume=False)
    calls = iter(range(100))
    with pytest.raises(CancelledError):
        pretrain(volumes, config, settings, checkpoints=checkpoints, is_cancelled=lambda: next(calls) >= 1)
    resumed = pretrain(volumes, config, settings, checkpoints=checkpoints, resume=True)
    assert resumed.resumed_at == 1
    assert resumed.losses == whole.losses
    for name, tensor in whole.network.state_dict().items():
        assert torch.equal(tensor, resumed.network.state_dict()[name]), name


def test_finetuning_from_the_pretrained_folder_makes_a_model_segment_runs(capsys, tmp_path, cts, pretrained):
    from pastacore.fileio import read_volume
    from pastacore.modelstore.store import sha256_of

    image, tumour = cts["lung1"]
    out = tmp_path / "model"
    common = ["--images", image, "--labels", tumour, "--lesion-label", "1", "--organ-source", "none", "--steps", "2"]
    code, _, err = run(capsys, "finetune", "--start", pretrained / "model.pt", "--out", out, *common, "--start-config", image)
    assert code == 2 and "the model config lung1.nii.gz is not UTF-8 text" in err
    code, _, err = run(capsys, "finetune", "--start", pretrained, "--out", out, *common, "--patch", "16,32,32")
    assert code == 0, err
    description = json.loads((out / "model.json").read_text())
    assert description["family"] == "pymic" and description["config"]["class_num"] == 3
    start = description["start"]
    assert start["sha256"] == sha256_of(pretrained / "model.pt")
    outputs = sorted(f"out_layers.{i}.2.{p}" for i in range(4) for p in ("weight", "bias"))
    assert sorted(start["skipped"]) == outputs and sorted(start["fresh"]) == outputs and len(start["loaded"]) == 138
    checkpoint = torch.load(out / "model.pth", weights_only=True)
    assert set(checkpoint) == {"iteration", "valid_pred", "model_state_dict", "optimizer_state_dict"}
    code, _, err = run(capsys, "segment", cts["lung2"][0], "--model", out, "--out", tmp_path / "seg.nii.gz")
    assert code == 0, err
    labels = read_volume(tmp_path / "seg.nii.gz", is_label=True)
    assert labels.array.shape == read_volume(cts["lung2"][0]).array.shape and labels.array.max() <= 2


def test_a_start_without_its_config_is_refused(tmp_path, pretrained):
    import shutil

    from pastacore.training.start_model import start_from

    alone = tmp_path / "volf.pt"
    shutil.copy(pretrained / "model.pt", alone)
    with pytest.raises(PastaError, match="needs its network config"):
        start_from(alone)
    pct = tmp_path / "pct.json"
    pct.write_text(json.dumps({"family": "pymic", "net_type": "PCTNet", "class_num": 5, "input_size": [16, 32, 32]}))
    with pytest.raises(PastaError, match="does not fit the configured PCTNet"):
        start_from(alone, pct)


@pytest.mark.parametrize("folder_was_there", [False, True])
def test_a_pretraining_with_no_readable_ct_leaves_nothing_behind(capsys, tmp_path, folder_was_there):
    """Every CT unreadable: exit 2 with one error line, each CT's reason said, and no prepared
    cohort or checkpoint left in --out; a folder of the user's keeps what it held."""
    damaged = tmp_path / "damaged.nii.gz"
    damaged.write_bytes(b"not an image")
    out = tmp_path / "out"
    if folder_was_there:
        out.mkdir()
        (out / "notes.txt").write_text("the user's")
    code, said, err = run(capsys, "pretrain", "--method", "volf", "--images", damaged, "--out", out, "--steps", "1")
    assert code == 2
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        "error: no CT could be prepared for pretraining; see the failures above"
    ]
    assert "damaged: left out (cannot read" in said
    if folder_was_there:
        assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
        assert (out / "notes.txt").read_text() == "the user's"
    else:
        assert not out.exists()


# --- the Slicer controllers (slicer-core MRML) ---------------------------------------------------


def test_pretrain_action_adds_a_start_that_fine_tuning_uses(tmp_path, cts, pretrained):
    """Pretrain on a folder of CTs in the task job -> a start in the list; fine-tuning from it (and
    from a MIS-FM file with its config) puts a model in the store; the scene is left alone."""
    pytest.importorskip("slicer")
    import shutil

    from pastacore.actions.finetune import FinetuneOptions
    from pastacore.fileio import read_volume
    from pastacore.modelstore.store import ModelStore, sha256_of
    from pastacore.mrml import segmentations, volumes
    from pastacore.mrml.scene import new_scene, node_ids
    from pastacore.tasks import InlineRunner
    from pastacore.terminology import segment_info
    from PastaSlicerLib.controllers import FinetuneCase, FinetuneController, FinetuneRequest, PretrainController, PretrainRequest

    folder = tmp_path / "cts"
    folder.mkdir()
    shutil.copy(cts["lung2"][0], folder / "lung2.nii.gz")
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY))
    store = ModelStore(tmp_path / "store")
    controller = PretrainController(InlineRunner(), store)
    request = PretrainRequest(str(folder), str(tmp_path / "volf"), steps=1, config=str(config), patch=PATCH, device="cpu")
    assert (
        controller.problem(PretrainRequest(str(tmp_path / "none"), str(tmp_path / "x")))
        == "Choose the folder of CTs to pretrain on"
    )
    assert "letters, digits" in controller.problem(PretrainRequest(str(folder), str(tmp_path / "x"), name="a b"))
    from pastacore.training.finetune import Checkpoints

    Checkpoints(tmp_path / "half").start({"an": "unfinished run"}, resume=False)
    assert "unfinished run" in controller.problem(PretrainRequest(str(folder), str(tmp_path / "half"), resume=False))
    assert controller.problem(PretrainRequest(str(folder), str(tmp_path / "half"))) is None  # goes on with it
    outcomes, progress = [], []
    controller.start(request, on_progress=lambda f, m: progress.append(f), on_finished=outcomes.append)
    (outcome,) = outcomes
    assert outcome.ok, outcome.error
    assert outcome.value.name == "volf" and outcome.value.kind == "pasta pretrain folder"
    assert [s.name for s in controller.starts.list()] == ["volf"] and progress[-1] == 1.0
    assert (tmp_path / "volf" / "model.pt").is_file()
    assert "does not exist" in controller.starts.problem(str(tmp_path / "nothing.pt"))
    shutil.copy(pretrained / "model.pt", tmp_path / "misfm.pt")
    assert "needs its network config" in controller.starts.problem(str(tmp_path / "misfm.pt"))
    added = controller.starts.add(str(tmp_path / "misfm.pt"), str(config))
    assert added.kind == "PyMIC checkpoint" and len(controller.starts.list()) == 2

    scene = new_scene().scene
    image, tumour = read_volume(cts["lung1"][0]), read_volume(cts["lung1"][1], is_label=True)
    ct = volumes.node_from_volume(scene, image, "lung1")
    edited, _ = segmentations.add_labels_to_segmentation(scene, tumour, {1: segment_info("tumor@lung")}, ct)
    before = set(node_ids(scene))
    finetune = FinetuneController(scene, InlineRunner(), store)
    for name, start, start_config in (("from-volf", tmp_path / "volf", ""), ("from-misfm", tmp_path / "misfm.pt", config)):
        options = FinetuneOptions(name=name, start=str(start), start_config=str(start_config), steps=1, device="cpu", patch=PATCH)
        request = FinetuneRequest([FinetuneCase(ct, edited)], options)
        assert finetune.problem(request) is None
        done = []
        finetune.start(request, on_finished=done.append)
        assert done[0].ok, done[0].error
        description = json.loads((store.get(name).path / "model.json").read_text())
        weights = start / "model.pt" if start.is_dir() else start
        assert description["family"] == "pymic" and description["start"]["sha256"] == sha256_of(weights)
    assert set(node_ids(scene)) == before
    assert "needs its network config" in finetune.problem(
        FinetuneRequest([FinetuneCase(ct, edited)], FinetuneOptions(name="x", start=str(tmp_path / "misfm.pt")))
    )


def test_the_volf_loss_is_pymics_dice_plus_cross_entropy():
    """0.5 (1 - mean Dice over all classes, pooled over the batch, smoothing 1e-5) + 0.5 CE."""
    from pastacore.families.pymic.pretrain import volf_loss

    torch.manual_seed(0)
    logits, labels = torch.randn(2, 5, 4, 8, 8), torch.randint(0, 5, (2, 1, 4, 8, 8)).float()
    p = logits.softmax(1).permute(0, 2, 3, 4, 1).reshape(-1, 5)
    y = torch.nn.functional.one_hot(labels[:, 0].long(), 5).reshape(-1, 5).float()
    dice = (2 * (p * y).sum(0) + 1e-5) / (p.sum(0) + y.sum(0) + 1e-5)
    expected = 0.5 * (1 - dice).mean() + 0.5 * (-(y * p.log()).sum(1).mean())
    assert float(volf_loss()(logits, labels)) == pytest.approx(float(expected), rel=1e-5)
