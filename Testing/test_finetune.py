"""Fine-tuning on a user's own labelled cases: every start format loads, a tiny run on a real CT
lowers its own training loss, a run resumes exactly where it stopped, the written folder
segments and imports, and validation scores mean what they say."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import pasta

from pastacore.cli.main import main
from pastacore.errors import CancelledError, PastaError
from pastacore.geometry.grid import Grid
from pastacore.geometry.volume import Volume
from pastacore.networks.unet import PastaUNet

pytest.importorskip("monai")

TINY = {"base_features": 4, "num_pool": 2}


def crop(volume: Volume, box) -> Volume:
    """``volume[box]`` (slices along k, j, i) with its grid."""
    array = volume.array[box]
    start = [s.start or 0 for s in box]
    origin = volume.grid.index_to_lps(np.array([start[::-1]], float))[0]
    grid = Grid(array.shape, volume.grid.spacing, tuple(origin), volume.grid.direction)
    return Volume(np.ascontiguousarray(array), grid, is_label=volume.is_label)


def tumour_box(labels: Volume, slices: int, pixels: int | None):
    """Slices around the tumour (k), and ``pixels`` around it in-plane (None: the whole plane)."""
    where = np.argwhere(labels.array > 0)
    centre = (where.min(0) + where.max(0)) // 2
    k = slice(max(int(centre[0]) - slices // 2, 0), int(centre[0]) + slices // 2)
    if pixels is None:
        return (k, slice(None), slice(None))
    return (k,) + tuple(slice(max(int(c) - pixels // 2, 0), int(c) + pixels // 2) for c in centre[1:])


@pytest.fixture(scope="module")
def small_case(lung1):
    """lung1 around its real tumour (12 slices, 128 x 128 pixels): a CT and its label map (1 = tumour)."""
    image, labels = lung1
    box = tumour_box(labels, 12, 128)
    return crop(image, box), crop(labels, box)


@pytest.fixture(scope="module")
def chest_slab(lung1):
    """12 slices of lung1 through its tumour, the whole plane (the lungs are found classically)."""
    image, labels = lung1
    box = tumour_box(labels, 12, None)
    return crop(image, box), crop(labels, box)


@pytest.fixture(scope="module")
def case_files(small_case, tmp_path_factory):
    from pastacore.fileio import write_volume

    folder = tmp_path_factory.mktemp("case")
    write_volume(small_case[0], folder / "ct.nii.gz")
    write_volume(small_case[1], folder / "tumour.nii.gz")
    return folder / "ct.nii.gz", folder / "tumour.nii.gz"


def model_folder(folder, labels, seed=0, patch=32):
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(PastaUNet(num_classes=3, **TINY).state_dict(), folder / "model.pth")
    (folder / "model.json").write_text(
        json.dumps(
            {
                "name": folder.name,
                "version": "test",
                "task": "segmentation",
                "patch_size": [patch] * 3,
                "architecture": {"type": "pasta_generic_unet", "input_channels": 1, **TINY},
                "labels": [{"value": v, "term": t} for v, t in labels],
                "weights": "model.pth",
            }
        )
    )
    return folder


@pytest.fixture(scope="module")
def generic_model(tmp_path_factory):
    """A tiny model of PASTA-Gen's bare convention (1 = organ, 2 = lesion: it searches the body)."""
    return model_folder(tmp_path_factory.mktemp("models") / "tiny-generic", [(1, "organ"), (2, "lesion")])


# --- start formats ------------------------------------------------------------------------------


def _nnunet_result(root, net, trainer="PASTATrainer_ft"):
    result = root / f"{trainer}__nnUNetPlans__3d_fullres"
    (result / "fold_0").mkdir(parents=True)
    (result / "plans.json").write_text(
        json.dumps(
            {
                "configurations": {"3d_fullres": {"patch_size": [32, 64, 64], "spacing": [1.0, 1.0, 1.0]}},
                "foreground_intensity_properties_per_channel": {
                    "0": {"mean": 40.0, "std": 120.0, "percentile_00_5": -900.0, "percentile_99_5": 600.0}
                },
            }
        )
    )
    (result / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "lung": 1, "lung tumor": 2}}))
    torch.save({"network_weights": net.state_dict(), "trainer_name": trainer}, result / "fold_0" / "checkpoint_final.pth")
    return result


def test_every_start_format_loads_with_its_labels_patch_and_normalisation(tmp_path, tiny_lung_model):
    from pastacore.modelstore.store import ModelStore
    from pastacore.training.start_model import load_start_model

    builtin = load_start_model(None)  # the built-in model
    assert builtin.head_loaded and builtin.labels == {1: "lung", 2: "tumor@lung"} and builtin.patch_size == (96, 96, 96)
    assert builtin.organ == "lung" and builtin.lesion_values == (2,) and builtin.normalization is None
    assert builtin.network.base_features == 8 and builtin.provenance["name"] == "pasta-lung-default"

    folder = load_start_model(tiny_lung_model)  # a model folder (what train-default and finetune write)
    saved = torch.load(f"{tiny_lung_model}/model.pth", weights_only=True)
    assert all(torch.equal(folder.network.state_dict()[k], v) for k, v in saved.items())
    assert folder.patch_size == (32, 32, 32) and folder.head_loaded

    store = ModelStore(tmp_path / "store")  # an installed model, by name
    store.import_file(f"{tiny_lung_model}/model.pth", name="mine")
    assert load_start_model("mine", store).network.num_pool == 2

    # a PASTA checkpoint: a flat state dict whose head and seg_outputs do not fit the labels
    pasta = PastaUNet(num_classes=5, num_head_outputs=14, **TINY)
    torch.save(pasta.state_dict(), tmp_path / "PASTA_final.pth")
    start = load_start_model(tmp_path / "PASTA_final.pth", organ="liver")
    assert start.labels == {1: "liver", 2: "tumor@liver"} and not start.head_loaded
    assert start.network.num_classes == 3 and start.network.head is None and start.patch_size == (128, 128, 128)
    assert any(n.startswith("head.") for n in start.skipped) and any(n.startswith("seg_outputs.") for n in start.skipped)
    assert torch.equal(start.network.state_dict()["tu.1.weight"], pasta.state_dict()["tu.1.weight"])
    assert load_start_model(tmp_path / "PASTA_final.pth").labels == {1: "organ", 2: "lesion"}

    net = PastaUNet(num_classes=3, **TINY)  # an nnU-Net v2 result folder of PASTA's trainer
    nnunet = load_start_model(_nnunet_result(tmp_path, net))
    assert nnunet.head_loaded and nnunet.patch_size == (32, 64, 64)
    assert nnunet.normalization["mean"] == 40.0 and nnunet.lesion_values == (2,) and nnunet.organ == "lung"
    assert torch.equal(nnunet.network.state_dict()["seg_outputs.1.weight"], net.state_dict()["seg_outputs.1.weight"])

    encoder_only = {k: v for k, v in net.state_dict().items() if k.startswith("conv_blocks_context.")}
    torch.save(encoder_only, tmp_path / "encoder.pth")
    with pytest.raises(PastaError, match="whole encoder and decoder"):
        load_start_model(tmp_path / "encoder.pth")
    from pastacore.training.finetune import FinetuneSettings

    assert FinetuneSettings(patch=(16, 32, 32)).train_settings(folder, "cpu").patch_size == (16, 32, 32)
    with pytest.raises(PastaError, match="multiple of 4"):
        FinetuneSettings(patch=(30, 32, 32)).train_settings(folder, "cpu")


# --- label maps and cases -------------------------------------------------------------------------


def test_label_values_are_read_as_pasta_report_reads_them(small_case):
    from pastacore.training.cases import split_label_values

    _, tumour = small_case  # lung1's label: 1 = the tumour
    with pytest.raises(PastaError, match="no lesion label 2 .*labels present: 1.*lesion.label"):
        split_label_values(tumour)
    assert split_label_values(tumour, lesion_labels=(1,)) == ((1,), ())
    both = tumour.with_array(np.where(tumour.array > 0, 2, 0).astype(np.uint8))
    both.array[0, :4, :4] = 1
    assert split_label_values(both) == ((2,), (1,))
    both.array[0, :2, :2] = 7
    with pytest.raises(PastaError, match="label\\(s\\) 7, which are neither"):
        split_label_values(both)
    named = tumour.with_array(tumour.array.copy())
    named.meta = {"segments": [{"name": "Lung tumor", "label": 1}]}
    assert split_label_values(named) == ((1,), ())


def test_cases_are_standardised_with_the_organ_from_the_models_classical_mask(chest_slab, tiny_lung_model):
    from pastacore.training.cases import load_case
    from pastacore.training.start_model import load_start_model

    start = load_start_model(tiny_lung_model)
    case = load_case(*chest_slab, start, name="lung1", lesion_labels=(1,))
    assert case.organ_source == "classical" and case.hu.shape == case.targets.shape
    assert np.allclose(case.grid.spacing, 1.0) and case.slice_mm == 5.0 and case.slice_positions is not None
    assert abs((case.targets == 2).sum() / 1000 - case.lesion_ml) < 0.3  # the tumour, as class 2 (mL at 1 mm)
    assert (case.targets == 1).sum() > 100 * (case.targets == 2).sum()  # the lungs around it
    assert case.hu[case.targets == 1].mean() < -600
    none = load_case(*chest_slab, start, name="lung1", lesion_labels=(1,), organ_source="none")
    assert set(np.unique(none.targets)) == {0, 2}


def test_synthetic_lesions_are_pasted_into_the_organ_away_from_the_real_tumour(chest_slab, tiny_lung_model):
    from pastacore.training.cases import lesion_type_for, load_case, mixed_sampler, synthetic_pool, synthetic_sampler
    from pastacore.training.start_model import load_start_model

    start = load_start_model(tiny_lung_model)
    case = load_case(*chest_slab, start, name="lung1", lesion_labels=(1,))
    assert lesion_type_for(start.organ) == "lung_tumor"
    with pytest.raises(PastaError, match="organ the synthesis engine knows"):
        lesion_type_for(None)
    pool = synthetic_pool([case], 3, seed=1, lesion_type="lung_tumor", lesion_value=2)
    assert pool
    real = np.argwhere(case.targets == 2)
    for item in pool:
        lesion = np.argwhere(item.lesion) + [s.start for s in item.box]
        gap = np.min(np.linalg.norm(lesion[:, None, :] - real[None, ::7, :], axis=2))
        assert gap > 9 and case.organ[item.box][item.lesion].mean() > 0.9
    make_patch = synthetic_sampler([case], pool, (32, 32, 32), 2)
    rng = np.random.default_rng(0)
    hu, targets = make_patch(rng)
    assert hu.shape == targets.shape == (32, 32, 32) and (targets == 2).any()
    plain = lambda rng: (np.full((32, 32, 32), -1000.0), np.zeros((32, 32, 32), np.uint8))  # noqa: E731
    mixed = mixed_sampler(plain, make_patch, 0.5)
    shares = [mixed(rng)[1].any() for _ in range(40)]
    assert 8 < sum(shares) < 32


# --- the recipe -----------------------------------------------------------------------------------


def test_monai_loss_is_the_former_cross_entropy_plus_batch_dice():
    """The project's loss moved to MONAI's DiceCELoss: on the same logits it gives the former
    formula's value (cross-entropy + mean over foreground classes of 1 - batch soft Dice)."""
    import torch.nn.functional as F

    from pastacore.training.recipe import deep_supervision_weights, make_loss

    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, 8)
    labels = torch.randint(0, 3, (2, 8, 8, 8))
    probabilities = logits.softmax(1)
    onehot = F.one_hot(labels, 3).permute(0, 4, 1, 2, 3).float()
    dims = (0, 2, 3, 4)
    dice = (2 * (probabilities * onehot).sum(dims) + 1) / (probabilities.sum(dims) + onehot.sum(dims) + 1)
    former = F.cross_entropy(logits, labels) + (1 - dice[1:]).mean()
    assert torch.allclose(make_loss(0, smooth=1.0)(logits, labels[:, None].float()), former, atol=1e-6)
    assert deep_supervision_weights(4) == pytest.approx([8 / 14, 4 / 14, 2 / 14, 0.0])
    outputs = [logits, torch.randn(2, 3, 4, 4, 4)]  # the coarsest level weighs 0, as in nnU-Net
    assert torch.allclose(make_loss(2, smooth=1.0)(outputs, labels[:, None].float()), former, atol=1e-6)


def test_frozen_encoder_keeps_its_weights_while_the_decoder_learns(small_case, generic_model):
    from pastacore.training.cases import load_case
    from pastacore.training.start_model import load_start_model
    from pastacore.training.trainer import TrainSettings, train

    start = load_start_model(generic_model)
    case = load_case(*small_case, start, lesion_labels=(1,), organ_source="none")
    before = {k: v.clone() for k, v in start.network.state_dict().items()}
    settings = TrainSettings(
        num_classes=3,
        patch_size=(32, 32, 32),
        steps=2,
        freeze_encoder_steps=2,
        **TINY,
        learning_rate=1e-2,
        class_ratios=(0.5, 0.0, 0.5),
        optimizer="sgd",
        schedule="poly",
    )
    network, _ = train([(case.hu, case.targets)], settings, network=start.network)
    after = network.state_dict()
    encoder = [k for k in before if k.startswith("conv_blocks_context.")]
    assert all(torch.equal(before[k], after[k]) for k in encoder)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("conv_blocks_localization."))
    assert all(p.requires_grad for p in network.parameters())  # unfrozen again afterwards


# --- runs -------------------------------------------------------------------------------------------


def _settings(**changes):
    from pastacore.training.finetune import FinetuneSettings

    values = dict(
        steps=4, batch_size=2, optimizer="adamw", learning_rate=3e-3, seed=3, device="cpu", checkpoint_every=2, threads=2
    )
    values.update(changes)
    return FinetuneSettings(**values)


def test_a_tiny_run_on_a_real_ct_lowers_its_own_training_loss(chest_slab, tiny_lung_model):
    """40 steps on lung1's real tumour (the lungs from the classical mask) lower the loss on fixed
    patches of that case (a third of the lesion-free batches would make the per-step loss noisy)."""
    from pastacore.training.cases import load_case
    from pastacore.training.finetune import finetune, mean_losses
    from pastacore.training.recipe import make_loss
    from pastacore.training.start_model import load_start_model
    from pastacore.training.trainer import CaseSampler, TrainSettings

    start = load_start_model(tiny_lung_model)
    case = load_case(*chest_slab, start, name="lung1", lesion_labels=(1,))
    sampler = CaseSampler(
        [(case.hu, case.targets)], TrainSettings(num_classes=3, patch_size=(32,) * 3, class_ratios=(0.0, 0.5, 0.5))
    )
    rng = np.random.default_rng(0)
    patches = [sampler(rng) for _ in range(4)]
    x = torch.from_numpy(np.stack([start.segmentation_model().normalize(hu) for hu, _ in patches])[:, None])
    y = torch.from_numpy(np.stack([targets for _, targets in patches])[:, None].astype(np.float32))
    assert (y == 2).any() and (y == 1).any()

    def loss_on_fixed_patches(network):
        with torch.no_grad():
            return float(make_loss(0, smooth=1e-5)(network(x), y))

    result = finetune([case], start, _settings(steps=40, checkpoint_every=0, optimizer="sgd", learning_rate=1e-2))
    assert len(result.log.losses) == 40 and result.step_seconds > 0
    assert loss_on_fixed_patches(result.network) < 0.8 * loss_on_fixed_patches(start.network)
    losses = mean_losses(result.log.losses, window=10)
    assert losses["last"] < losses["first"], losses


def test_a_run_resumes_exactly_where_it_stopped(small_case, generic_model, tmp_path):
    from pastacore.training.cases import load_case
    from pastacore.training.finetune import Checkpoints, finetune
    from pastacore.training.start_model import load_start_model

    start = load_start_model(generic_model)
    case = load_case(*small_case, start, name="lung1", lesion_labels=(1,), organ_source="none")
    straight = finetune([case], start, _settings())
    checkpoints = Checkpoints(tmp_path)
    steps = []

    def cancel_in_step_four():
        steps.append(1)
        return len(steps) > 3

    with pytest.raises(CancelledError):
        finetune([case], start, _settings(), checkpoints=checkpoints, is_cancelled=cancel_in_step_four)
    state = checkpoints.state("final")  # written at step 2, read with weights_only
    assert state["step"] == 2 and len(state["losses"]) == 2
    with pytest.raises(PastaError, match="other settings"):
        finetune([case], start, _settings(learning_rate=1e-3), checkpoints=checkpoints, resume=True)
    resumed = finetune([case], start, _settings(), checkpoints=checkpoints, resume=True)
    assert resumed.log.resumed_at == 2
    assert np.allclose(resumed.log.losses, straight.log.losses, rtol=1e-5)
    for name, tensor in straight.network.state_dict().items():
        assert torch.allclose(tensor, resumed.network.state_dict()[name], atol=1e-6), name


# --- the command ------------------------------------------------------------------------------------


def test_cli_writes_a_model_folder_that_segments_and_imports(case_files, generic_model, tmp_path, capsys):
    from pastacore.modelstore.store import ModelStore, sha256_of

    ct, tumour = case_files
    out = tmp_path / "mine"
    finetune = ["finetune", "--model", generic_model, "--images", ct, "--labels", tumour, "--lesion-label", "1", "--out", out]
    validate = ["--val-images", ct, "--val-labels", tumour]
    code = pasta(*finetune, "--organ-source", "none", "--steps", "3", "--checkpoint-every", "1", *validate, "--device", "cpu")
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "one training step takes about" in printed and "Dice" in printed and "wrote" in printed
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "model.json",
        "model.pth",
        "training.json",
        "validation.json",
    ]  # the checkpoint is gone
    description = json.loads((out / "model.json").read_text())
    assert description["files"][0]["sha256"] == sha256_of(out / "model.pth")
    assert description["patch_size"] == [32, 32, 32] and description["base_model"]["name"] == "tiny-generic"
    assert description["labels"] == [{"value": 1, "term": "organ"}, {"value": 2, "term": "lesion"}]
    validation = json.loads((out / "validation.json").read_text())
    (row,) = validation["cases"]
    assert row["before"]["lesions"] == row["after"]["lesions"] == 1 and "hd95_mm" in row["after"]
    card = (out / "README.md").read_text()
    assert "Research use only" in card and "ct.nii.gz" in card and "| ct.nii.gz |" in card and "→" in card
    assert len(json.loads((out / "training.json").read_text())["losses"]) == 3

    seg = tmp_path / "seg.nii.gz"
    assert pasta("segment", ct, "--out", seg, "--model", out) == 0
    assert json.loads(seg.with_suffix("").with_suffix(".json").read_text())["model"]["name"] == "mine"
    store = tmp_path / "store"
    assert pasta("models", "--store", store, "import", out) == 0
    assert ModelStore(store).verify("mine") == (True, [])
    capsys.readouterr()
    # the same folder again: refused without --overwrite, before any work
    assert pasta(*finetune) == 2
    assert "already holds outputs of an earlier run" in capsys.readouterr().err


def test_cli_refuses_bad_input_before_work(case_files, tmp_path, capsys):
    ct, tumour = case_files
    base = ["finetune", "--out", str(tmp_path / "m")]
    cases = [
        (["--images", str(ct), str(ct), "--labels", str(tumour)], "one label map per image"),
        (["--images", str(ct), "--labels", str(tumour), "--patch", "3,4"], "--patch takes N or N,N,N"),
        (["--images", str(ct), "--labels", str(tumour), "--folds", "2"], "--folds must be between 2"),
        (["--images", str(ct), "--labels", str(tmp_path / "missing.nii.gz")], "does not exist"),
        (["--images", str(ct), "--labels", str(tumour), "--synthetic-fraction", "1.5"], "--synthetic-fraction"),
        (["--images", str(ct), "--labels", str(tumour), "--resume"], "nothing to resume"),
        (["--images", str(ct), "--labels", str(tumour), "--lesion-label", "x"], "--lesion-label takes"),
    ]
    for extra, message in cases:
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error:") and message in err, err
    (tmp_path / "m" / "checkpoint").mkdir(parents=True)
    (tmp_path / "m" / "checkpoint" / "run.json").write_text("{}")
    assert main(base + ["--images", str(ct), "--labels", str(tumour)]) == 2
    assert "checkpoint of an unfinished run" in capsys.readouterr().err


def test_folds_hold_each_case_out_once_and_the_final_run_uses_all():
    from pastacore.training.finetune import fold_stages

    stages = fold_stages(list("abcde"), 2)
    assert [s.name for s in stages] == ["fold_0", "fold_1", "final"]
    assert [s.held_out for s in stages] == [["a", "c", "e"], ["b", "d"], []]
    assert all(not set(s.train) & set(s.held_out) for s in stages) and stages[-1].train == list("abcde")
    assert [s.name for s in fold_stages(list("ab"), 0)] == ["final"]
    with pytest.raises(PastaError, match="between 2 and the number of cases"):
        fold_stages(list("ab"), 3)


def test_cases_csv_pairs_images_with_labels_and_splits(case_files, tmp_path, capsys):
    from pastacore.fileio.cases import read_inputs

    ct, tumour = case_files
    table = tmp_path / "cases.csv"
    table.write_text(f"image,label,split\n{ct},{tumour},train\n{ct},{tumour},val\n")
    rows, _ = read_inputs(table, need_seg=True, unique_ids=False)
    pairs = [(Path(r.image), Path(r.seg), r.split) for r in rows]
    assert pairs == [(Path(ct), Path(tumour), "train"), (Path(ct), Path(tumour), "val")]
    table.write_text(f"image,label,split\n{ct},{tumour},test\n")
    assert pasta("finetune", "--cases", table, "--out", tmp_path / "m") == 2
    assert "split is train or val" in capsys.readouterr().err


# --- validation scores ------------------------------------------------------------------------------


def test_validation_scores_mean_what_they_say():
    from pastacore.training.validation import lesion_detection, summarise, voxel_metrics

    truth = np.zeros((40, 40, 40), bool)
    truth[10:20, 10:20, 10:20] = True  # a 1 mL lesion (1 mm voxels)
    truth[30:34, 30:34, 30:34] = True  # a small one, missed below
    predicted = np.zeros_like(truth)
    predicted[12:22, 10:20, 10:20] = True  # the first, shifted 2 mm
    predicted[2:5, 30:33, 2:5] = True  # a false positive of 27 voxels
    scores = voxel_metrics(predicted, truth, (1.0, 1.0, 1.0))
    overlap = 8 * 100
    assert scores["dice"] == pytest.approx(2 * overlap / (predicted.sum() + truth.sum()), abs=1e-3)
    assert scores["hd95_mm"] >= 2.0 and 0 < scores["surface_dice"] < 1
    detection = lesion_detection(predicted, truth, voxel_ml=0.001)
    assert detection == {
        "lesions": 2,
        "found": 1,
        "missed": 1,
        "false_positives": 1,
        "false_positive_ml": 0.03,
        "predicted_ml": 1.03,
        "lesion_ml": 1.06,
    }
    assert voxel_metrics(np.zeros_like(truth), truth, (1, 1, 1)) == {"dice": 0.0, "hd95_mm": None, "surface_dice": 0.0}
    shifted = np.zeros_like(truth)
    shifted[12:22, 10:20, 10:20] = True  # 2 slices along the first axis: 10 mm with 5 mm slices
    assert voxel_metrics(shifted, truth & (np.indices(truth.shape)[0] < 25), (5.0, 1.0, 1.0))["hd95_mm"] == 10.0
    assert voxel_metrics(predicted, np.zeros_like(truth), (1, 1, 1))["dice"] is None
    summary = summarise(
        [
            {**scores, **detection},
            {"dice": None, "hd95_mm": None, "surface_dice": None, **lesion_detection(predicted, np.zeros_like(truth), 0.001)},
        ]
    )
    assert summary["dice"] == scores["dice"] and summary["false_positives"] == 3 and summary["cases"] == 2
