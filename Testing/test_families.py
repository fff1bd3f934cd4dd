"""The model-family registry and its generic wiring: ``models forward --config CFG.json``,
``models import --config``, ``pasta segment --model NAME`` and ``--model-config``, on a toy family
defined here (the real families have their own tests)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from conftest import make_volume, run_cli

from pastacore import families
from pastacore.errors import PastaError
from pastacore.fileio import read_volume, write_volume

THIS = sys.modules[__name__]


# -- the toy family: a 1x1x1 convolution with 3 output classes -------------------------------------


def check_config(config: dict) -> dict:
    out = {"channels": 3, **config}
    if not isinstance(out["channels"], int) or out["channels"] < 2:
        raise PastaError(f"channels must be a whole number >= 2, got {out['channels']!r}")
    return out


def _network(checkpoint, config):
    net = torch.nn.Conv3d(1, config["channels"], 1)
    state = torch.load(str(checkpoint), weights_only=True)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError:
        raise PastaError(f"{checkpoint.name} does not fit a toy network of {config['channels']} channels") from None
    return net.eval()


def forward(checkpoint, config, inputs, device):
    with torch.inference_mode():
        return {"logits": _network(checkpoint, config)(inputs["x"].float())}


def verify(checkpoint, config):
    net = _network(checkpoint, config)
    return {"parameters": sum(p.numel() for p in net.parameters())}


def segmentation_model(checkpoint, config, description):
    from pastacore.inference.segmentation_model import SegmentationModel, label_meaning

    labels = {int(i["value"]): i["term"] for i in description.get("labels") or []} or {1: "organ", 2: "lesion"}
    segments, organs, lesions = label_meaning(labels)
    net = _network(checkpoint, config)
    net.divisor = 1
    model = SegmentationModel(net, (16, 16, 16), segments, organs, lesions, provenance={"name": description["name"]})
    if config.get("own_pipeline"):
        model.pipeline = _own_pipeline
    return model


def _own_pipeline(volume, options, progress, is_cancelled):
    from pastacore.inference.segment import SegmentationResult

    labels = volume.with_array(np.full(volume.array.shape, 1, np.uint8), is_label=True)
    return SegmentationResult(labels, {}, {"name": "own", "prompt": options.prompt})


@pytest.fixture()
def toy_family():
    family = families.register(families.ModelFamily("toy", "a test family", THIS.__name__, task="segmentation"))
    yield family
    families._FAMILIES.pop("toy", None)


@pytest.fixture()
def toy_files(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Conv3d(1, 3, 1)
    with torch.no_grad():  # organ where the (normalised) CT is bright, lesion nowhere
        net.weight.copy_(torch.tensor([[[[[0.0]]]], [[[[5.0]]]], [[[[-5.0]]]]]))
        net.bias.copy_(torch.tensor([0.0, -1.0, -50.0]))
    weights = tmp_path / "toy.pt"
    torch.save(net.state_dict(), weights)
    config = tmp_path / "toy.json"
    config.write_text(json.dumps({"family": "toy", "channels": 3}))
    return weights, config, net


run = run_cli


def test_built_in_family_packages_are_found_without_a_list():
    names = [f.name for f in families.families()]
    assert names == sorted(names)
    for name in names:
        assert families.family_named(name).task in families.TASKS


def test_a_config_names_a_known_family(tmp_path, toy_family):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"channels": 3}))
    with pytest.raises(PastaError, match="names no model family"):
        families.read_model_config(bad)
    bad.write_text(json.dumps({"family": "nosuch"}))
    with pytest.raises(PastaError, match="unknown model family 'nosuch'"):
        families.read_model_config(bad)
    bad.write_text("{not json")
    with pytest.raises(PastaError, match="not valid JSON"):
        families.read_model_config(bad)
    bad.write_text(json.dumps({"family": "toy", "channels": 1}))
    with pytest.raises(PastaError, match="channels must be"):
        families.read_model_config(bad)
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"family": "toy"}))
    assert families.read_model_config(good) == {"family": "toy", "channels": 3}


def test_a_missing_package_names_the_extra(toy_family):
    family = families.ModelFamily("ghost", "needs a package", "pastacore_no_such_module.family", "gcis")
    with pytest.raises(PastaError, match=r"pasta-slicer\[gcis\]"):
        family.implementation()


def test_models_forward_runs_the_family_network(capsys, tmp_path, toy_family, toy_files):
    weights, config, net = toy_files
    x = torch.randn(1, 1, 4, 5, 6)
    torch.save({"x": x}, tmp_path / "in.pt")
    code, out, err = run(capsys, "models", "forward", weights, tmp_path / "in.pt", tmp_path / "out.pt", "--config", config)
    assert code == 0, err
    got = torch.load(tmp_path / "out.pt", weights_only=True)["logits"]
    with torch.no_grad():
        assert torch.allclose(got, net(x), atol=1e-6)
    code, _, err = run(capsys, "models", "forward", weights, tmp_path / "in.pt", tmp_path / "out.pt", "--config", config)
    assert code == 2 and "already exists" in err


def test_import_stores_the_family_and_segment_uses_it(capsys, tmp_path, toy_family, toy_files):
    weights, config, _ = toy_files
    store = tmp_path / "store"
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"1": "liver", "2": "tumor@liver"}))
    code, out, err = run(
        capsys, "models", "--store", store, "import", weights, "--config", config, "--labels", labels, "--name", "toy-liver"
    )
    assert code == 0, err
    description = json.loads((store / "toy-liver" / "model.json").read_text())
    assert description["family"] == "toy" and description["config"] == {"family": "toy", "channels": 3}
    assert description["family_summary"] == {"parameters": 6} and description["weights"] == "toy.pt"
    assert [i["term"] for i in description["labels"]] == ["liver", "tumor@liver"]
    code, out, _ = run(capsys, "models", "--store", store, "list")
    assert "toy-liver" in out and " toy " in out

    from pastacore.actions.segment import SegmentInputs, SegmentOptions
    from pastacore.actions.segment import run as segment
    from pastacore.inference.segmentation_model import resolve_segmentation_model
    from pastacore.modelstore.store import ModelStore

    model = resolve_segmentation_model("toy-liver", ModelStore(store))
    assert model.provenance["name"] == "toy-liver" and model.organ == "liver"
    ct = make_volume((20, 20, 20), seed=1)
    ct.array[:] = -1000
    ct.array[5:15, 5:15, 5:15] = 200
    case = segment(SegmentOptions(organ="body"), SegmentInputs(ct), model=model)
    assert case.result.labels.array[10, 10, 10] == 1 and case.result.labels.array[1, 1, 1] == 0


def test_a_wrong_file_is_refused_at_import(capsys, tmp_path, toy_family, toy_files):
    _, config, _ = toy_files
    wrong = tmp_path / "wrong.pt"
    torch.save(torch.nn.Conv3d(1, 4, 1).state_dict(), wrong)
    code, _, err = run(capsys, "models", "--store", tmp_path / "store", "import", wrong, "--config", config)
    assert code == 2 and "does not fit a toy network" in err
    assert not (tmp_path / "store" / "wrong").exists()
    code, _, err = run(capsys, "models", "--store", tmp_path / "store", "import", wrong, "--labels", config)
    assert code == 2 and "give its --config too" in err


def test_segment_with_model_config_and_its_own_pipeline(capsys, tmp_path, toy_family, toy_files):
    weights, config, _ = toy_files
    own = tmp_path / "own.json"
    own.write_text(json.dumps({"family": "toy", "own_pipeline": True}))
    ct = write_volume(make_volume((8, 9, 10)), tmp_path / "ct.nii.gz")
    out = tmp_path / "seg.nii.gz"
    code, _, err = run(capsys, "segment", ct, "--model", weights, "--model-config", own, "--prompt", "liver", "--out", out)
    assert code == 0, err
    assert np.all(read_volume(out, is_label=True).array == 1)
    assert json.loads((tmp_path / "seg.json").read_text())["model"]["prompt"] == "liver"
    code, _, err = run(capsys, "segment", ct, "--model-config", own, "--out", tmp_path / "seg2.nii.gz")
    assert code == 2 and "--model-config describes the weight file" in err
