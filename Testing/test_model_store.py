"""Installed models: import (offline, from a file the user downloaded), list, verify, remove;
unsafe or damaged files are refused."""

import json
import pickle

import pytest
import torch

from pastacore.cli.main import main
from pastacore.errors import PastaError
from pastacore.modelstore.manifest import known_models
from pastacore.modelstore.store import ModelStore
from pastacore.networks.checkpoints import load_checkpoint


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def tiny_state_dict():
    """A real (tiny) PASTA-topology network: what `pasta models inspect` accepts."""
    from pastacore.networks.unet import PastaUNet

    torch.manual_seed(0)
    return PastaUNet(num_classes=3, base_features=2, num_pool=2).state_dict()


@pytest.fixture()
def weights(tmp_path):
    path = tmp_path / "my_model.pth"
    torch.save(tiny_state_dict(), path)
    return path


def test_manifest_entries_are_complete():
    models = known_models()
    assert "pasta-foundation" in models
    for spec in models.values():
        assert spec.version and spec.task and spec.license and spec.files
        assert len(spec.input_spacing_mm) == 3
        for label in spec.labels:
            from pastacore.terminology import segment_info

            segment_info(label["term"])  # every label has terminology codes


def test_import_list_verify_remove(tmp_path, weights):
    store = ModelStore(tmp_path / "store")
    model = store.import_file(weights)
    assert model.name == "my_model" and (model.path / "my_model.pth").is_file()
    assert [m.name for m in store.list() if not m.builtin] == ["my_model"]
    assert store.verify("my_model") == (True, [])
    (model.path / "my_model.pth").write_bytes(b"tampered")
    ok, problems = store.verify("my_model")
    assert not ok and "checksum" in problems[0]
    store.remove("my_model")
    assert not model.path.exists()
    with pytest.raises(PastaError, match="no installed model"):
        store.remove("my_model")


def test_import_refuses_duplicates_without_overwrite(tmp_path, weights):
    store = ModelStore(tmp_path / "store")
    store.import_file(weights)
    with pytest.raises(PastaError, match="already holds files"):
        store.import_file(weights)
    store.import_file(weights, overwrite=True)


def test_known_file_gets_its_manifest_description(tmp_path):
    path = tmp_path / "PASTA_final.pth"
    torch.save(tiny_state_dict(), path)
    model = ModelStore(tmp_path / "store").import_file(path)
    assert model.name == "pasta-foundation" and model.task == "features"
    description = json.loads((model.path / "model.json").read_text())
    assert description["license"] and description["files"][0]["sha256"]


def test_malicious_pickle_is_refused_and_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.pth"
    torch.save({"weights": _Exploit(marker)}, bad)
    with pytest.raises(PastaError, match="refusing evil.pth"):
        load_checkpoint(bad)
    raw = tmp_path / "evil_raw.pt"
    raw.write_bytes(pickle.dumps(_Exploit(marker)))
    with pytest.raises(PastaError, match="refusing|corrupt"):
        load_checkpoint(raw)
    store = ModelStore(tmp_path / "store")
    with pytest.raises(PastaError):
        store.import_file(bad)
    assert not marker.exists()
    assert not (tmp_path / "store" / "evil").exists()


def test_corrupt_and_wrong_files(tmp_path, weights):
    truncated = tmp_path / "cut.pth"
    truncated.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(PastaError, match="corrupt|truncated"):
        load_checkpoint(truncated)
    text = tmp_path / "notes.txt"
    text.write_text("hi")
    with pytest.raises(PastaError, match="not a weight file"):
        ModelStore(tmp_path / "store").import_file(text)
    with pytest.raises(PastaError, match="not an nnU-Net result folder"):
        ModelStore(tmp_path / "store").import_file(tmp_path)


def test_cli_models(tmp_path, weights, capsys):
    store = str(tmp_path / "store")
    assert main(["models", "--store", store, "import", str(weights), "--name", "mine"]) == 0
    assert main(["models", "--store", store, "list"]) == 0
    assert "mine" in capsys.readouterr().out
    assert main(["models", "--store", store, "verify", "mine"]) == 0
    (tmp_path / "store" / "mine" / "my_model.pth").unlink()
    assert main(["models", "--store", store, "verify", "mine"]) == 2
    assert "is missing" in capsys.readouterr().out
    assert main(["models", "--store", store, "remove", "mine"]) == 0


def test_builtin_default_model_is_intact_and_loads():
    """The model shipped in Resources/ matches its recorded checksum and the manifest, and loads strictly."""
    from pastacore.inference.segmentation_model import resolve_segmentation_model
    from pastacore.modelstore.store import sha256_of

    store = ModelStore()
    builtin = [m for m in store.list() if m.builtin]
    assert [m.name for m in builtin] == ["pasta-lung-default"]
    model = builtin[0]
    assert store.verify(model.name) == (True, [])
    description = json.loads((model.path / "model.json").read_text())
    manifest = known_models()[model.name]
    assert manifest.expected_sha256("model.pth") == description["files"][0]["sha256"] == sha256_of(model.path / "model.pth")
    assert (model.path / "model.pth").stat().st_size < 20_000_000
    assert "Research use only" in (model.path / "README.md").read_text()
    seg = resolve_segmentation_model(None, store)  # the default
    assert seg.patch_size == (96, 96, 96) and seg.lesion_values == (2,) and seg.organ_values == (1,)
    assert seg.segments[2].name == "Lung tumor"


def test_model_folder_with_extra_weight_files_uses_the_named_weights(tmp_path):
    """A model folder may carry more than the segmentation weights (e.g. attribute heads):
    model.json's 'weights' says which file segments; without it the folder is ambiguous."""
    import shutil

    from pastacore.inference.segmentation_model import model_weights

    source = [m for m in ModelStore().list() if m.builtin][0].path
    folder = tmp_path / "store" / "lungs-with-heads"
    shutil.copytree(source, folder)
    description = json.loads((folder / "model.json").read_text())
    description["name"] = "lungs-with-heads"
    torch.save({"head.weight": torch.zeros(3, 4)}, folder / "attribute_heads.pt")
    (folder / "model.json").write_text(json.dumps(description))
    store = ModelStore(tmp_path / "store")
    weights, described = model_weights("lungs-with-heads", store)
    assert weights == folder / "model.pth" and described["weights"] == "model.pth"
    del description["weights"]
    (folder / "model.json").write_text(json.dumps(description))
    with pytest.raises(PastaError, match="one weight file"):
        model_weights("lungs-with-heads", store)
    description["weights"] = "../elsewhere.pth"
    (folder / "model.json").write_text(json.dumps(description))
    with pytest.raises(PastaError, match="no weight file"):
        model_weights("lungs-with-heads", store)


def test_every_importable_weight_file_resolves_by_name(tmp_path, weights):
    """What the store accepts on import (e.g. a Lightning-style .ckpt) is found again by name."""
    from pastacore.inference.segmentation_model import model_weights

    ckpt = tmp_path / "Lesions.CKPT"
    ckpt.write_bytes(weights.read_bytes())
    store = ModelStore(tmp_path / "store")
    store.import_file(ckpt, name="lesions")
    path, description = model_weights("lesions", store)
    assert path.name == "Lesions.CKPT" and description["name"] == "lesions"


def test_a_trained_model_folder_given_by_path_uses_its_description(tmp_path):
    """`pasta train-default --out DIR` writes model.json beside the weights; `--model DIR` then
    segments with its patch size and lung labels, not the defaults for a bare weight file."""
    import shutil

    from pastacore.inference.segmentation_model import resolve_segmentation_model

    source = [m for m in ModelStore().list() if m.builtin][0].path
    folder = tmp_path / "my-run"
    shutil.copytree(source, folder)
    seg = resolve_segmentation_model(str(folder))
    assert seg.patch_size == (96, 96, 96) and seg.segments[2].name == "Lung tumor"
    assert seg.provenance["file"] == "model.pth"
    assert seg.provenance["assumed"] == []
    # the weight file itself, beside the model.json that names it, is used with that description
    named = resolve_segmentation_model(str(folder / "model.pth"))
    assert named.patch_size == (96, 96, 96) and named.segments[2].name == "Lung tumor"
    # copied on its own, nothing describes it: PASTA's defaults, and provenance says they were assumed
    alone = tmp_path / "copied" / "model.pth"
    alone.parent.mkdir()
    shutil.copy(folder / "model.pth", alone)
    bare = resolve_segmentation_model(str(alone))
    assert bare.segments[2].name != "Lung tumor" and bare.patch_size == (128, 128, 128)
    assert bare.provenance["assumed"] == ["patch size", "labels"]
    # a model.json that names other weights does not describe this file
    shutil.copy(folder / "model.pth", folder / "other.pth")
    assert resolve_segmentation_model(str(folder / "other.pth")).provenance["assumed"] == ["patch size", "labels"]
    (folder / "model.json").write_text("{not json")
    with pytest.raises(PastaError, match="not valid JSON"):
        resolve_segmentation_model(str(folder))


def test_a_new_weight_format_is_one_registration(tmp_path, capsys, monkeypatch):
    """A weight format is a reader plus one registration line: the CLI lists it and the whole
    product (inspect, segment, the store) reads it. Here, a toy NumPy .npz format."""
    import numpy as np
    import torch

    import pastacore.networks.checkpoints as checkpoints
    from pastacore.cli.main import main
    from pastacore.networks.unet import PastaUNet

    def read_npz(path, map_location, metadata_globals):
        with np.load(path, allow_pickle=False) as data:
            return {name: torch.from_numpy(data[name]) for name in data.files}

    monkeypatch.setattr(checkpoints, "FORMATS", dict(checkpoints.FORMATS))
    checkpoints.register(checkpoints.WeightFormat("NumPy", (".npz",), read_npz, "toy: arrays in an .npz"))
    assert main(["models", "formats"]) == 0
    assert "NumPy" in capsys.readouterr().out
    network = PastaUNet(num_classes=3, base_features=4, num_pool=2)
    np.savez(tmp_path / "tiny.npz", **{k: v.numpy() for k, v in network.state_dict().items()})
    assert main(["models", "inspect", str(tmp_path / "tiny.npz")]) == 0
    assert "base_features:" in capsys.readouterr().out
    assert main(["models", "--store", str(tmp_path / "store"), "import", str(tmp_path / "tiny.npz")]) == 0
