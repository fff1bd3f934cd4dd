"""PASTA classification: features on PASTA's crops, heads, few-shot training, and their command lines."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pastacore.classify import csvio, fewshot  # noqa: E402
from pastacore.classify.features import CropShape, compute_features, extract_features, prepare_crops  # noqa: E402
from pastacore.classify.groups import presence_groups, report_groups, split_softmax  # noqa: E402
from pastacore.classify.heads import load_head, save_head  # noqa: E402
from pastacore.errors import PastaError  # noqa: E402
from pastacore.geometry.standardize import standardize  # noqa: E402
from pastacore.networks.unet import PastaUNet  # noqa: E402
from pastacore.preprocessing.crops import lesion_crop, organ_crop  # noqa: E402
from pastacore.preprocessing.normalize import pasta_slf  # noqa: E402

TINY = dict(base_features=4, num_pool=3)  # C = 4 * 2**2 = 16 features


def tiny_network(head_outputs=14, seed=0):
    torch.manual_seed(seed)
    net = PastaUNet(2, num_head_outputs=head_outputs, **TINY)
    for p in net.parameters():  # non-trivial biases and affine norms too
        p.data.add_(0.05 * torch.randn_like(p))
    return net.eval()


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "tiny_pasta.pth"
    net = tiny_network()
    torch.save(net.state_dict(), path)
    return path, net


# --- features -------------------------------------------------------------------------------


def test_features_equal_a_direct_encoder_forward(lung1):
    image, label = lung1
    net = tiny_network()
    table = compute_features(image, label, net, "lesion", case="lung1")
    assert table.ids == ["lung1:lesion1"] and table.features.shape == (1, 16)
    # the same crop built by hand: 1 mm grid, SLF, 96^3 around the lesion padded with 0, [S,A,L] order
    hu = standardize(image, is_label=False).volume.array
    mask = standardize(label, is_label=True).volume.array > 0
    crop = lesion_crop(pasta_slf(hu), mask, pad_value=0.0).array[:, ::-1, :].copy()
    assert crop.shape == (96, 96, 96) and np.allclose(table.items[0].input, crop)
    with torch.no_grad():
        direct = net.encode_features(torch.from_numpy(crop)[None, None]).numpy()
    np.testing.assert_allclose(table.features, direct, rtol=1e-5, atol=1e-6)
    # the organ path: box +- 32, padded to >= 128^3, resized to 128^3
    organ = compute_features(image, label, net, "organ", case="lung1")
    crop = organ_crop(pasta_slf(hu), mask, pad_value=0.0).array[:, ::-1, :].copy()
    with torch.no_grad():
        direct = net.encode_features(torch.from_numpy(crop)[None, None]).numpy()
    assert organ.ids == ["lung1"] and organ.items[0].input.shape == (128, 128, 128)
    np.testing.assert_allclose(organ.features, direct, rtol=1e-5, atol=1e-6)


def test_batches_give_the_same_features_as_single_crops():
    from pastacore.geometry import Grid, Volume

    rng = np.random.default_rng(1)
    array = rng.normal(0, 200, (40, 50, 60)).astype(np.float32)
    labels = np.zeros(array.shape, np.uint8)
    labels[5:10, 5:12, 5:15] = 1
    labels[25:35, 30:40, 40:55] = 1  # a second, larger component of label 1
    labels[20:24, 10:14, 30:34] = 2
    grid = Grid(array.shape, (1.5, 1.2, 2.0), (0.0, 0.0, 0.0), np.eye(3))
    image, mask = Volume(array, grid), Volume(labels, grid, is_label=True)
    net = tiny_network()
    calls = []
    items = prepare_crops(image, mask, "lesion", case="c", shape=CropShape(lesion_size=(32, 32, 32)))
    assert [i.id for i in items] == ["c:lesion1", "c:lesion2", "c:lesion3"]
    assert [(i.label, i.component) for i in items] == [(1, 1), (1, 2), (2, 1)]
    batched = extract_features(net, items, batch_size=3, progress=lambda f, m="": calls.append(f))
    single = np.concatenate([extract_features(net, [i], batch_size=1) for i in items])
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-5)
    assert calls[-1] == 1.0


def test_crops_map_back_to_the_lesion(lung1):
    image, label = lung1
    truth = np.argwhere(label.array > 0).mean(axis=0)[::-1]  # (i, j, k) centroid on the original grid
    mask = standardize(label, is_label=True).volume.array > 0
    for kind, cut in (
        ("lesion", lambda m: lesion_crop(m.astype(np.float32), m)),
        ("organ", lambda m: organ_crop(m.astype(np.float32), m)),
    ):
        item = prepare_crops(image, label, kind)[0]
        cropped = cut(mask).array
        assert cropped.shape == item.crop.array.shape
        centre = (np.indices(cropped.shape).reshape(3, -1) * (cropped / cropped.sum()).reshape(-1)).sum(axis=1)
        back = item.crop_to_source_index(centre)
        assert np.all(np.abs(back - truth) < 1.0), (kind, back, truth)
        # the lesion is where the crop says it is in world coordinates, too (within 1 mm)
        world = image.grid.index_to_lps(truth)
        assert np.linalg.norm(item.crop_to_lps(centre) - world) < 1.0
    # the lesion crop is centred on the lesion's box; the flip of the network input is undone
    item = prepare_crops(image, label, "lesion")[0]
    box = [
        (int(np.flatnonzero(np.any(mask, axis=tuple(a for a in range(3) if a != axis)))[[0, -1]].sum() + 1) // 2)
        for axis in range(3)
    ]
    np.testing.assert_allclose(item.crop_to_standard_index([48, 48, 48]), box)
    assert item.input_to_crop_index([0, 0, 0])[1] == 95
    assert item.input[10, 20, 30] == item.crop.array[10, 95 - 20, 30]


# --- heads ------------------------------------------------------------------------------------


def test_pasta_head_gives_five_attribute_groups(tiny_weights):
    path, net = tiny_weights
    head = load_head(path)  # a PASTA-format checkpoint: head.0/2/4 among the encoder weights
    assert head.kind == "mlp" and head.feature_dim == 16 and head.num_outputs == 14
    assert [g.size for g in head.groups] == [5, 3, 2, 2, 2]
    assert [g.name for g in head.groups] == ["shape", "density", "heterogeneity", "surface", "invasion"]
    features = np.random.default_rng(0).normal(size=(3, 16)).astype(np.float32)
    with torch.no_grad():
        expected = net.head(torch.from_numpy(features)).numpy()
    np.testing.assert_allclose(head.logits(features), expected, rtol=1e-5, atol=1e-6)
    for _group, p in head.probabilities(features):
        np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)
    rows = head.predict(features)
    assert len(rows) == 3
    for row in rows:
        assert list(row) == ["shape", "density", "heterogeneity", "surface", "invasion"]
        for value in row.values():
            assert abs(sum(value.probabilities.values()) - 1) < 1e-9
            assert value.value == max(value.probabilities, key=value.probabilities.get)
            assert value.source == path.name
    # also from the 'network_weights' container, and through the encoder's own classify()
    from pastacore.networks.loading import load_encoder

    load_head({"network_weights": {f"module.{k}": v for k, v in net.state_dict().items()}})
    loaded = load_encoder(path, with_head=True).network
    x = torch.rand(1, 1, 24, 24, 24)
    with torch.no_grad():
        np.testing.assert_allclose(
            head.logits(loaded.encode_features(x).numpy()), loaded.classify(x).numpy(), rtol=1e-5, atol=1e-6
        )


def test_presence_head_and_head_errors(tmp_path):
    net = tiny_network(head_outputs=2)
    head = load_head(net.state_dict())
    assert head.groups == presence_groups() and head.groups[0].options == ("absent", "present")
    assert set(head.predict(np.zeros(16))[0]) == {"tumor"}
    with pytest.raises(PastaError, match="no classification head"):
        load_head({k: v for k, v in net.state_dict().items() if not k.startswith("head.")})
    with pytest.raises(PastaError, match="expects 16 features"):
        head.logits(np.zeros((1, 1024)))
    with pytest.raises(PastaError, match="groups"):
        load_head(net.state_dict(), groups=report_groups())
    logits = np.arange(14.0)
    assert [len(p[0]) for _g, p in split_softmax(logits, report_groups())] == [5, 3, 2, 2, 2]


def test_saved_head_round_trip_is_weights_only(tmp_path):
    x = np.random.default_rng(0).normal(size=(12, 16)).astype(np.float32)
    y = np.array([0, 1, 2] * 4)
    head = fewshot.fit_head(x, y, ["a", "b", "c"], group_name="grade")
    path = tmp_path / "head.pt"
    save_head(head, path, {"task": "grade"})
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"state_dict", "pasta_head"}
    assert raw["pasta_head"]["groups"] == [{"name": "grade", "options": ["a", "b", "c"]}]
    assert raw["state_dict"]["feature_mean"].shape == (16,)
    back = load_head(path)
    np.testing.assert_allclose(back.logits(x), head.logits(x), rtol=1e-6)
    assert back.kind == "linear" and back.groups == head.groups


# --- few-shot training -------------------------------------------------------------------------


def test_auc_matches_pair_counting():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 30)
    s = np.round(rng.normal(size=30), 1)  # with ties
    pairs = [(1.0 if a > b else 0.5 if a == b else 0.0) for a in s[y == 1] for b in s[y == 0]]
    assert fewshot.roc_auc(y == 1, s) == pytest.approx(np.mean(pairs))
    folds = fewshot.stratified_folds(np.array([0] * 7 + [1] * 13), 5, seed=0)
    assert sorted(np.concatenate(folds).tolist()) == list(range(20))
    for test in folds:
        assert 1 <= int((np.array([0] * 7 + [1] * 13)[test] == 0).sum()) <= 2


def _synthetic(n=40, d=64, separable=True, seed=0):
    rng = np.random.default_rng(seed)
    y = np.array([0, 1] * (n // 2))
    x = rng.normal(size=(n, d)).astype(np.float32)
    if separable:
        x[:, :4] += 3.0 * y[:, None]
    else:
        y = rng.permutation(y)
    return x, y


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_cross_validation_is_honest(kind):
    x, y = _synthetic()
    good = fewshot.cross_validate(x, y, ["neg", "pos"], folds=5, seed=0, kind=kind)
    assert good["accuracy"]["mean"] > 0.9 and good["auc"]["mean"] > 0.95 and good["folds"] == 5
    x, y = _synthetic(n=60, separable=False, seed=1)
    noise = fewshot.cross_validate(x, y, ["neg", "pos"], folds=5, seed=0, kind=kind)
    assert abs(noise["auc"]["mean"] - 0.5) < 0.2 and abs(noise["accuracy"]["mean"] - 0.5) < 0.2
    assert noise["pooled"]["auc"] < 0.75


def test_few_cases_reduce_the_folds_and_one_class_is_refused():
    x, y = _synthetic(n=12)
    y = np.array([1] * 9 + [0] * 3)
    assert fewshot.cross_validate(x, y, ["a", "b"], folds=5)["folds"] == 3
    with pytest.raises(PastaError, match="single class"):
        fewshot.cross_validate(x, np.zeros(12, int), ["a"], folds=5)


# --- command line -------------------------------------------------------------------------------


def _run(argv, capsys):
    from pastacore.cli.main import main

    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_train_head_command(tmp_path, capsys):
    x, y = _synthetic(n=30, d=16)
    ids = [f"case{n}" for n in range(30)]
    csvio.write_features_csv(tmp_path / "a.csv", ids[:20], x[:20])
    csvio.write_features_csv(tmp_path / "b.csv", ids[20:], x[20:])
    with open(tmp_path / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "stage"])
        writer.writerows([(i, ["early", "late"][v]) for i, v in zip(ids, y)])
    out = tmp_path / "head.pt"
    argv = [
        "train-head",
        str(tmp_path / "a.csv"),
        str(tmp_path / "b.csv"),
        str(tmp_path / "labels.csv"),
        "--out",
        str(out),
        "--folds",
        "5",
        "--seed",
        "0",
    ]
    code, stdout, err = _run(argv, capsys)
    assert code == 0, err
    assert "accuracy" in stdout and "AUC" in stdout and "±" in stdout
    metrics = json.loads((tmp_path / "head.json").read_text())
    assert metrics["classes"] == ["early", "late"] and metrics["n_cases"] == 30
    assert metrics["auc"]["mean"] > 0.95 and len(metrics["per_fold"]) == 5
    head = load_head(out)
    assert head.groups[0].name == "stage" and head.feature_dim == 16
    assert torch.load(out, weights_only=True)["pasta_head"]["cv_auc"]["mean"] == metrics["auc"]["mean"]
    code, _, err = _run(argv, capsys)  # outputs exist
    assert code == 2 and err.startswith("error:") and "--overwrite" in err and err.count("\n") == 1
    (tmp_path / "bad.csv").write_text("id,label\ncase0,a\nnobody,b\n")
    code, _, err = _run(
        ["train-head", str(tmp_path / "a.csv"), str(tmp_path / "bad.csv"), "--out", str(tmp_path / "h2.pt")], capsys
    )
    assert code == 2 and "no features: nobody" in err and err.count("\n") == 1


def test_features_command_and_its_errors(tmp_path, capsys, sample_dir, tiny_weights, lung1):
    weights, net = tiny_weights
    image_path, mask_path = sample_dir / "lung1_image.nrrd", sample_dir / "lung1_label.nrrd"
    out = tmp_path / "features.csv"
    base = ["features", str(image_path), "--mask", str(mask_path), "--model", str(weights), "--device", "cpu"]
    code, stdout, err = _run(base + ["--crop", "lesion", "--out", str(out)], capsys)
    assert code == 0, err
    ids, features = csvio.read_features_csv(out)
    assert ids == ["lung1_image:lesion1"] and features.shape == (1, 16)
    with open(out) as handle:
        assert next(csv.reader(handle)) == ["id"] + [f"f{n}" for n in range(16)]
    expected = compute_features(*lung1, net, "lesion").features
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-5)

    def fails(extra, pattern):
        code, _, err = _run(extra, capsys)
        assert code == 2 and err.startswith("error:") and err.count("\n") == 1, err
        assert pattern in err, err

    fails(base + ["--crop", "lesion", "--out", str(out)], "already exists")
    fails(base + ["--crop", "organ", "--label", "3", "--out", str(tmp_path / "x.csv")], "label 3 is not present")
    from pastacore.fileio import write_volume

    image, label = lung1
    from pastacore.geometry import Grid

    small = label.array[:, :, :-4].copy()
    other = type(label)(small, Grid(small.shape, label.grid.spacing, label.grid.origin, label.grid.direction), True)
    write_volume(other, tmp_path / "small.nrrd")
    fails(
        [
            "features",
            str(image_path),
            "--mask",
            str(tmp_path / "small.nrrd"),
            "--crop",
            "lesion",
            "--model",
            str(weights),
            "--out",
            str(tmp_path / "y.csv"),
        ],
        "does not match the image grid",
    )
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    fails(base[:4] + ["--model", str(tmp_path / "junk.pth"), "--crop", "lesion", "--out", str(tmp_path / "z.csv")], "junk.pth")
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pth")
    fails(
        base[:4] + ["--model", str(tmp_path / "other.pth"), "--crop", "lesion", "--out", str(tmp_path / "z.csv")], "not a PASTA"
    )
    assert not (tmp_path / "z.csv").exists() and not (tmp_path / "y.csv").exists()


def test_attributes_for_measured_lesions_go_into_the_report(lung1, tiny_weights):
    from pastacore.classify.predict import load_attribute_model, predict_lesion_attributes
    from pastacore.report.export import make_report
    from pastacore.report.measure import measure_lesions
    from pastacore.report.model import CaseInfo

    image, label = lung1
    path, _net = tiny_weights
    model = load_attribute_model(path)
    assert [m.role for m in model.models] == ["attributes"] and len(model.models[0].sha256) == 64
    measurements = measure_lesions(image, label)
    attributes = predict_lesion_attributes(image, label, measurements, model)
    assert list(attributes) == [1]
    features = compute_features(image, label, model.network, "lesion").features
    expected = model.head.predict(features)[0]
    assert {k: v.value for k, v in attributes[1].items()} == {k: v.value for k, v in expected.items()}
    report = make_report(image, label, case=CaseInfo("lung1"), attributes=attributes, models=model.models, lesion_labels=[1])
    shape = report.lesions[0].attributes["shape"]
    assert shape.value in report_groups()[0].options and abs(sum(shape.probabilities.values()) - 1) < 1e-9
    with pytest.raises(PastaError, match="head"):
        load_attribute_model({k: v for k, v in _net.state_dict().items() if not k.startswith("head.")})
