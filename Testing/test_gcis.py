"""The gCIS model family: small seeded networks in both released layouts, compared with an
independent reference written here as the public code composes MONAI's blocks (every sub-path
run and masked, the MONAI <= 1.4 patch-merging order); test.py's pipeline on a real CT against
MONAI's own transforms; prompts from a model's table and from CLIP's text tower."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("monai")
pytest.importorskip("einops")

from monai.networks.blocks.dynunet_block import UnetOutBlock, UnetResBlock, get_conv_layer  # noqa: E402
from monai.networks.layers.utils import get_act_layer, get_norm_layer  # noqa: E402
from monai.networks.nets.swin_unetr import PatchMerging, PatchMergingV2, SwinTransformer  # noqa: E402
from torch import nn  # noqa: E402

from pastacore.cli.main import main  # noqa: E402
from pastacore.errors import PastaError  # noqa: E402
from pastacore.families import family_named  # noqa: E402
from pastacore.families.gcis.config import check_config  # noqa: E402
from pastacore.families.gcis.network import build_network  # noqa: E402

# feature_size 12 and one attention head per stage keep the windows cheap; 64 voxels a side is the
# smallest window (the deepest level needs two voxels)
TINY = {
    "feature_size": 12,
    "num_heads": [1, 1, 1, 1],
    "roi_x": 64,
    "roi_y": 64,
    "roi_z": 64,
    "space_x": 3.0,
    "space_y": 3.0,
    "space_z": 3.0,
}
AP_NUM = 2  # two sub-paths per position keep the reference (which runs every one) cheap


# -- the reference: the public SwinSingle / SwinAP composed plainly ------------------------------------


class RefMerging(PatchMergingV2):
    """MONAI 0.9-1.4 ``PatchMerging`` for 5-D input, written out slice by slice."""

    def forward(self, x):
        x0 = x[:, 0::2, 0::2, 0::2, :]
        x1 = x[:, 1::2, 0::2, 0::2, :]
        x2 = x[:, 0::2, 1::2, 0::2, :]
        x3 = x[:, 0::2, 0::2, 1::2, :]
        x4 = x[:, 1::2, 0::2, 1::2, :]
        x5 = x[:, 0::2, 1::2, 0::2, :]
        x6 = x[:, 0::2, 0::2, 1::2, :]
        x7 = x[:, 1::2, 1::2, 1::2, :]
        return self.reduction(self.norm(torch.cat([x0, x1, x2, x3, x4, x5, x6, x7], -1)))


def conv(cin, cout, k):
    return get_conv_layer(3, cin, cout, kernel_size=k, stride=1, dropout=None, act=None, norm=None, conv_only=False)


class RefBottleneck(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.lrelu = get_act_layer(name=("leakyrelu", {"inplace": True, "negative_slope": 0.01}))
        self.conv1, self.norm1 = conv(cin, cout // 2, 1), get_norm_layer(name="instance", spatial_dims=3, channels=cout // 2)
        self.conv2, self.norm2 = (
            conv(cout // 2, cout // 2, 3),
            get_norm_layer(name="instance", spatial_dims=3, channels=cout // 2),
        )
        self.conv2_2, self.norm2_2 = conv(cout // 2, cout, 1), get_norm_layer(name="instance", spatial_dims=3, channels=cout)
        if cin != cout:
            self.conv3, self.norm3 = conv(cin, cout, 1), get_norm_layer(name="instance", spatial_dims=3, channels=cout)

    def forward(self, x):
        out = self.lrelu(self.norm1(self.conv1(x)))
        out = self.lrelu(self.norm2(self.conv2(out)))
        out = self.norm2_2(self.conv2_2(out))
        residual = self.norm3(self.conv3(x)) if hasattr(self, "conv3") else x
        out += residual
        return self.lrelu(out)


def res(cin, cout, bottleneck):
    return RefBottleneck(cin, cout) if bottleneck else UnetResBlock(3, cin, cout, kernel_size=3, stride=1, norm_name="instance")


def one_hot_route(router, prompt):
    """Evaluation routing as the public code does it: softmax, argmax, a one-hot mask."""
    weights = torch.softmax(router(prompt), dim=1)
    index = weights.max(1, keepdim=True)[1]
    return torch.zeros_like(weights).scatter_(1, index, 1.0), index[:, 0] + 1


def reference_pathways(reference, prompt):
    """(B, 7) one-based: each position's router (decoder10, decoder5 ... decoder1, the head) on the prompt."""
    owners = [reference.decoder10] + [getattr(reference, n) for n in ("decoder5", "decoder4", "decoder3", "decoder2", "decoder1")]
    with torch.no_grad():
        return torch.stack([one_hot_route(o.prompt_router, prompt)[1] for o in owners + [reference]], 1)


class RefGcis(nn.Module):
    """SwinSingle (ap_num None) or SwinAP as the public code builds and runs them."""

    UPS = (
        ("decoder5", 16, 8, True),
        ("decoder4", 8, 4, True),
        ("decoder3", 4, 2, False),
        ("decoder2", 2, 1, False),
        ("decoder1", 1, 1, False),
    )

    def __init__(self, f, out_channels=2, ap_num=None):
        super().__init__()
        self.ap_num = ap_num
        self.swinViT = SwinTransformer(
            in_chans=1, embed_dim=f, window_size=(7, 7, 7), patch_size=(2, 2, 2), depths=(2, 2, 2, 2),
            num_heads=(1, 1, 1, 1), mlp_ratio=4.0, qkv_bias=True, norm_layer=nn.LayerNorm, spatial_dims=3, downsample=RefMerging,
        )  # fmt: skip
        for name, cin, cout, bottleneck in (("encoder1", 1, f, False), ("encoder2", f, f, False), ("encoder3", 2 * f, 2 * f, False),
                                            ("encoder4", 4 * f, 4 * f, False), ("encoder5", 8 * f, 8 * f, True), ("encoder10", 16 * f, 16 * f, True)):  # fmt: skip
            block = nn.Module()
            block.layer = res(cin, cout, bottleneck)
            setattr(self, name, block)
        self.decoder10 = nn.Module()
        self._paths(self.decoder10, "layer", lambda: res(16 * f, 16 * f, True))
        for name, cin, cout, bottleneck in self.UPS:
            up = nn.Module()
            up.transp_conv = get_conv_layer(3, cin * f, cout * f, kernel_size=2, stride=2, conv_only=True, is_transposed=True)
            up.concat_conv = conv(2 * cout * f, cout * f, 1)
            up.norm1 = get_norm_layer(name="instance", spatial_dims=3, channels=cout * f)
            up.lrelu = get_act_layer(name=("leakyrelu", {"inplace": True, "negative_slope": 0.01}))
            self._paths(up, "conv_block", lambda c=cout * f, b=bottleneck: res(c, c, b))
            setattr(self, name, up)
        self._paths(self, "out", lambda: UnetOutBlock(spatial_dims=3, in_channels=f, out_channels=out_channels))

    def _paths(self, owner, name, make):
        if self.ap_num is None:
            setattr(owner, name, make())
            return
        owner.prompt_router = nn.Linear(512, self.ap_num)
        for i in range(self.ap_num):
            setattr(owner, f"{name}_p{i}", make())

    def _run(self, owner, name, x, prompt, chosen):
        if self.ap_num is None:
            return getattr(owner, name)(x)
        mask, index = one_hot_route(owner.prompt_router, prompt)
        chosen.append(index)
        outs = []
        for i in range(x.shape[0]):  # one sample at a time, every sub-path run and masked
            sample = x[i : i + 1]
            outs.append(sum(getattr(owner, f"{name}_p{p}")(sample) * mask[i, p] for p in range(self.ap_num)))
        return torch.cat(outs, 0)

    def forward(self, x, prompt=None):
        """(logits, pathways (B, 7) one-based or None)."""
        if prompt is not None and prompt.shape[0] != x.shape[0]:
            prompt = prompt.repeat(x.shape[0], 1)
        chosen = []
        hidden = self.swinViT(x, True)
        enc = [self.encoder1.layer(x)] + [getattr(self, f"encoder{i}").layer(hidden[i - 2]) for i in (2, 3, 4, 5)]
        out = self._run(self.decoder10, "layer", self.encoder10.layer(hidden[4]), prompt, chosen)
        for (name, *_), skip in zip(self.UPS, reversed(enc)):
            up = getattr(self, name)
            out = up.lrelu(up.norm1(up.concat_conv(torch.cat((up.transp_conv(out), skip), dim=1))))
            out = self._run(up, "conv_block", out, prompt, chosen)
        logits = self._run(self, "out", out, prompt, chosen)
        return logits, (torch.stack(chosen, 1) if chosen else None)


# -- checkpoints in the released layouts ------------------------------------------------------------------


def _checkpoint(network, path, prefix=""):
    state = {prefix + k: v.clone() for k, v in network.state_dict().items()}
    torch.save({"epoch": 7, "best_acc": np.float64(0.81), "state_dict": state}, path)  # as the public trainer saves
    return path


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """A multi-path checkpoint (DistributedDataParallel's module. prefix) and a single-path task file."""
    folder = tmp_path_factory.mktemp("gcis")
    torch.manual_seed(0)
    ap = RefGcis(12, ap_num=AP_NUM).eval()
    torch.manual_seed(1)
    single = RefGcis(12).eval()
    with torch.no_grad():  # a visible structure: an output bias that makes both classes occur on CT
        single.out.conv.conv.bias.copy_(torch.tensor([0.0, 0.05]))
    return {
        "ap": ap,
        "single": single,
        "ap_file": _checkpoint(ap, folder / "model_ap.pt", prefix="module."),
        "single_file": _checkpoint(single, folder / "params.pth"),
        "folder": folder,
    }


def write_config(path, **values):
    path.write_text(json.dumps({"family": "gcis", **TINY, **values}))
    return path


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# -- the network ---------------------------------------------------------------------------------------------


def test_the_network_has_the_public_names_shapes_and_sizes(monkeypatch):
    for variant, reference in (("single", RefGcis(12)), ("ap", RefGcis(12, ap_num=AP_NUM))):
        ours = build_network(check_config({"variant": variant, "ap_num": AP_NUM, **TINY})).state_dict()
        assert len(ours) == len(reference.state_dict())
        theirs = reference.state_dict()
        assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}
    # the sizes the public code gives at feature_size 48 with 6 sub-paths (random initialisation skipped)
    for name in ("kaiming_uniform_", "uniform_"):
        monkeypatch.setattr(torch.nn.init, name, lambda tensor, *args, **kwargs: tensor)
    single = build_network(check_config({"variant": "single"}))
    ap = build_network(check_config({"variant": "ap"}))
    assert round(sum(p.numel() for p in single.parameters()) / 1e6, 2) == 26.75
    assert round(sum(p.numel() for p in ap.parameters()) / 1e6, 2) == 60.50
    assert round(sum(p.numel() for p in ap.swinViT.parameters()) / 1e6, 2) == 8.06


def test_patch_merging_keeps_the_order_the_weights_were_trained_with():
    from pastacore.families.gcis.blocks import LegacyPatchMerging

    torch.manual_seed(0)
    ours, reference, current = LegacyPatchMerging(6), RefMerging(6), PatchMerging(6)
    reference.load_state_dict(ours.state_dict())
    current.load_state_dict(ours.state_dict())
    x = torch.randn(2, 4, 6, 8, 6)
    assert torch.equal(ours(x), reference(x))
    # the installed MONAI (>= 1.5) concatenates in another order: without our class the numbers change
    assert not torch.allclose(current(x), reference(x), atol=1e-3)


# -- forward: the held-out interface -------------------------------------------------------------------------


def test_models_forward_of_a_multi_path_checkpoint_matches_the_reference(capsys, tmp_path, released):
    torch.manual_seed(5)
    x = torch.randn(2, 1, 64, 64, 64)
    prompt = torch.randn(2, 512) * 3
    with torch.no_grad():
        want, want_paths = released["ap"](x, prompt)
    assert not torch.equal(want_paths[0], want_paths[1]), "the two prompts should take different pathways"
    torch.save({"x": x, "prompt": prompt}, tmp_path / "in.pt")
    config = write_config(tmp_path / "ap.json", variant="ap", ap_num=AP_NUM)
    code, out, err = run_cli(
        capsys, "models", "forward", released["ap_file"], tmp_path / "in.pt", tmp_path / "out.pt", "--config", config
    )
    assert code == 0, err
    got = torch.load(tmp_path / "out.pt", weights_only=True)
    assert float((got["logits"] - want).abs().max()) <= 1e-4
    assert got["pathways"] == want_paths[0].tolist()
    assert got["pathways_per_sample"] == want_paths.tolist()
    torch.save({"x": x[:, :, :60], "prompt": prompt}, tmp_path / "bad.pt")
    code, _, err = run_cli(
        capsys, "models", "forward", released["ap_file"], tmp_path / "bad.pt", tmp_path / "bad_out.pt", "--config", config
    )
    assert code == 2 and "multiple of 32" in err and not (tmp_path / "bad_out.pt").exists()


def test_only_the_chosen_sub_path_runs(released):
    """Each AP position runs the sub-path its router picks for each sample, and no other (the
    public code runs them all and masks); checked on the loaded network's own modules."""
    from pastacore.families.gcis.weights import load_network

    network, _ = load_network(released["ap_file"], check_config({"variant": "ap", "ap_num": AP_NUM, **TINY}))
    ran = []
    for name, module in network.named_modules():
        if name.rsplit(".", 1)[-1][:-1] in ("layer_p", "conv_block_p", "out_p"):
            module.register_forward_hook(lambda m, i, o, name=name: ran.append((name, i[0].shape[0])))
    torch.manual_seed(4)
    prompts = torch.randn(3, 512) * 3
    paths = reference_pathways(released["ap"], prompts)
    f = 12
    with torch.inference_mode():  # small feature maps: routing does not depend on their size
        network.decoder10(torch.randn(3, 16 * f, 2, 2, 2), prompts)
        network.decoder1(torch.randn(3, f, 4, 4, 4), torch.randn(3, f, 8, 8, 8), prompts)
        network.route(torch.randn(3, f, 8, 8, 8), prompts)
    want = {}
    for stem, column in (("decoder10.layer_p", 0), ("decoder1.conv_block_p", 5), ("out_p", 6)):
        for sample in range(3):
            key = f"{stem}{int(paths[sample, column]) - 1}"
            want[key] = want.get(key, 0) + 1
    assert len(ran) == len(want) and dict(ran) == want  # each chosen sub-path ran once, on the samples that chose it


def test_a_multi_path_file_trimmed_by_path_selection_is_that_path(capsys, tmp_path, released):
    """--ap_model/--path_selection: the single-path model cut from the multi-path one gives what the
    multi-path model gives for a prompt that takes those pathways (the released task files were made so)."""
    torch.manual_seed(6)
    x = torch.randn(1, 1, 64, 64, 64)
    torch.save({"x": x}, tmp_path / "in.pt")
    prompt = torch.randn(1, 512) * 3
    with torch.no_grad():
        want, paths = released["ap"](x, prompt)
    trimmed = write_config(tmp_path / "trimmed.json", variant="single", ap_num=AP_NUM, path_selection=paths[0].tolist())
    code, _, err = run_cli(
        capsys, "models", "forward", released["ap_file"], tmp_path / "in.pt", tmp_path / "t.pt", "--config", trimmed
    )
    assert code == 0, err
    got = torch.load(tmp_path / "t.pt", weights_only=True)
    assert float((got["logits"] - want).abs().max()) <= 1e-4 and "pathways" not in got


def test_files_that_do_not_fit_are_refused_in_one_line(tmp_path, released):
    gcis = family_named("gcis").implementation()
    single = check_config({"variant": "single", **TINY})
    ap = check_config({"variant": "ap", "ap_num": AP_NUM, **TINY})

    def refused(path, config, words):
        with pytest.raises(PastaError, match=words) as caught:
            gcis.verify(path, config)
        assert "\n" not in str(caught.value)

    refused(released["ap_file"], single, "multi-path gCIS checkpoint .2 paths per position.; declare variant ap")
    refused(released["single_file"], ap, "single-path gCIS checkpoint")
    refused(
        released["ap_file"],
        check_config({"variant": "ap", "ap_num": 3, **TINY}),
        "has 2 paths per position, the config declares ap_num 3",
    )
    refused(
        released["single_file"], check_config({"variant": "single", **TINY, "feature_size": 24}), "looks like feature_size 12"
    )
    refused(released["single_file"], check_config({"variant": "single", **TINY, "out_channels": 3}), "out_channels 2")
    refused(
        released["ap_file"],
        check_config({"variant": "single", "ap_num": 3, "path_selection": [3, 1, 1, 1, 1, 1, 1], **TINY}),
        "asks for path 3, but model_ap.pt has 2",
    )
    no_encoder = tmp_path / "no_encoder.pth"  # as public issue 2 reports of a released task file
    state = {k: v for k, v in released["single"].state_dict().items() if not k.startswith("swinViT.")}
    torch.save({"state_dict": state}, no_encoder)
    refused(no_encoder, single, "lacks the Swin encoder weights")
    with pytest.raises(PastaError, match="did you mean 'feature_size'"):
        check_config({"variant": "single", "feature_szie": 12})
    with pytest.raises(PastaError, match="multiples of 32"):
        check_config({"variant": "single", "roi_x": 100})
    assert gcis.verify(released["single_file"], single)["layout"].startswith("gCIS single-path, feature_size 12")


# -- test.py's pipeline on a real CT ---------------------------------------------------------------------------


def reference_test_py(image_path, network, config, prompt=None):
    """The public test.py's steps with MONAI's dict transforms (EnsureChannelFirstd replacing the
    removed AddChanneld) and scipy's zoom back; the label array in the file's voxel order."""
    import nibabel
    from monai import transforms
    from monai.inferers import sliding_window_inference
    from scipy import ndimage

    pixdim = (config["space_x"], config["space_y"], config["space_z"])
    load = transforms.Compose([
        transforms.LoadImaged(keys=["image"]),
        transforms.EnsureChannelFirstd(keys=["image"]),
        transforms.Spacingd(keys="image", pixdim=pixdim, mode="bilinear"),
        transforms.ScaleIntensityRanged(keys=["image"], a_min=-175.0, a_max=250.0, b_min=0.0, b_max=1.0, clip=True),
    ])  # fmt: skip
    image = load({"image": str(image_path)})["image"][None]
    predictor = (lambda w: network(w)[0]) if prompt is None else (lambda w: network(w, prompt)[0])
    with torch.no_grad():
        out = sliding_window_inference(image, (64, 64, 64), 4, predictor, overlap=0.5, mode="gaussian")
    labels = np.argmax(torch.softmax(out, 1).cpu().numpy(), axis=1).astype(np.uint8)[0]
    target = nibabel.load(str(image_path)).shape
    return ndimage.zoom(labels, [t / s for t, s in zip(target, labels.shape)], order=0, prefilter=False)


@pytest.fixture(scope="module")
def chest_ct(lung1, tmp_path_factory):
    """A crop of the real lung1 CT (0.57 x 0.57 x 5 mm; 24 slices of 280 x 210 voxels), written as
    NIfTI as test.py reads it."""
    from pastacore.fileio import write_volume
    from pastacore.geometry.grid import Grid
    from pastacore.geometry.volume import Volume

    start = np.array([14, 150, 110])  # k, j, i
    ct = lung1[0]
    array = ct.array[14:38, 150:430, 110:320]
    g = ct.grid
    origin = np.array(g.origin) + g.direction @ (np.array(g.spacing) * start[::-1])
    return write_volume(
        Volume(array, Grid(array.shape, g.spacing, origin, g.direction)), tmp_path_factory.mktemp("ct") / "chest.nii.gz"
    )


def test_segment_runs_test_py_on_the_input_grid(capsys, tmp_path, released, chest_ct):
    """The released single-path layout through ``pasta segment``: anisotropic spacing (3, 2, 3 mm:
    40 x 80 x 40 voxels, two windows) shows the axes stay in the file's order."""
    from pastacore.fileio import read_volume

    spacing = {"space_x": 3.0, "space_y": 2.0, "space_z": 3.0}
    config = write_config(tmp_path / "single.json", variant="single", **spacing)
    out = tmp_path / "seg.nii.gz"
    code, stdout, err = run_cli(
        capsys, "segment", chest_ct, "--model", released["single_file"], "--model-config", config, "--out", out
    )
    assert code == 0, err
    ours = read_volume(out, is_label=True)
    ct = read_volume(chest_ct)
    assert ours.grid.same_as(ct.grid) and ours.array.shape == ct.array.shape
    want = reference_test_py(chest_ct, released["single"], check_config({"variant": "single", **TINY, **spacing})).transpose(
        2, 1, 0
    )
    assert 0.05 < float((want == 1).mean()) < 0.95, "the reference should hold both labels"
    assert float((ours.array == want).mean()) >= 0.999
    sidecar = json.loads((tmp_path / "seg.json").read_text())
    assert sidecar["model"]["family"] == "gcis" and sidecar["patches_run"] == 2


def test_an_imported_multi_path_model_segments_what_the_prompt_names(capsys, tmp_path, released, chest_ct):
    torch.manual_seed(8)
    tumor, kidney = (torch.randn(512) * 3).tolist(), (torch.randn(512) * 3).tolist()
    prompts = [{"text": "liver tumor", "embedding": tumor}, {"text": "left kidney", "embedding": kidney}]
    config = write_config(
        tmp_path / "ap.json", variant="ap", ap_num=AP_NUM, prompts=prompts, space_x=5.0, space_y=5.0, space_z=5.0
    )
    store = tmp_path / "store"
    code, _, err = run_cli(
        capsys, "models", "--store", store, "import", released["ap_file"], "--config", config, "--name", "gcis-ap"
    )
    assert code == 0, err
    summary = json.loads((store / "gcis-ap" / "model.json").read_text())["family_summary"]
    want_paths = reference_pathways(released["ap"], torch.tensor([tumor]))
    assert summary["prompts"]["liver tumor"] == want_paths[0].tolist()

    from pastacore.actions.segment import SegmentInputs, SegmentOptions
    from pastacore.actions.segment import run as segment
    from pastacore.fileio import read_volume
    from pastacore.inference.segmentation_model import resolve_segmentation_model
    from pastacore.modelstore.store import ModelStore

    options = SegmentOptions(model="gcis-ap", prompt="Liver  Tumor", device="cpu")
    model = resolve_segmentation_model("gcis-ap", ModelStore(store))
    case = segment(options, SegmentInputs(chest_ct), model=model)
    assert case.result.segments[1].term == "tumor@liver" and case.result.model["pathways"] == want_paths[0].tolist()
    want = reference_test_py(chest_ct, released["ap"], check_config({"variant": "ap", **TINY, "space_x": 5.0, "space_y": 5.0, "space_z": 5.0}),
                             torch.tensor([tumor])).transpose(2, 1, 0)  # fmt: skip
    assert float((case.result.labels.array == want).mean()) >= 0.999
    assert read_volume(chest_ct).grid.same_as(case.result.labels.grid)

    code, listed, _ = run_cli(capsys, "models", "--store", store, "list")
    assert code == 0 and any(line.startswith("gcis-ap") and " gcis " in line for line in listed.splitlines())
    # a prompt it does not know, with no CLIP weights imported: one line naming the known prompts
    with pytest.raises(
        PastaError, match="does not know the prompt 'spleen' .known prompts: liver tumor, left kidney.; for free text, import"
    ):
        segment(SegmentOptions(model="gcis-ap", prompt="spleen"), SegmentInputs(chest_ct), model=model)


# -- prompts through CLIP's text tower -------------------------------------------------------------------------


def _open_clip_tokenizer_module():
    """open_clip's tokenizer.py loaded by its path (open_clip's package import needs torchvision)."""
    from importlib import metadata

    try:
        files = metadata.files("open_clip_torch") or []
    except metadata.PackageNotFoundError:
        pytest.skip("open_clip_torch is not installed (Utilities/bootstrap.sh installs it without dependencies)")
    path = next(Path(str(f.locate())) for f in files if str(f).replace("\\", "/").endswith("open_clip/tokenizer.py"))
    spec = importlib.util.spec_from_file_location("open_clip_tokenizer_for_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_tokenizer_gives_open_clips_tokens():
    from pastacore.families.gcis.tokenizer import BpeTokenizer, vocabulary_file

    theirs = _open_clip_tokenizer_module().SimpleTokenizer()
    ours = BpeTokenizer(vocabulary_file())
    texts = ["liver tumor", "Left  KIDNEY", "pancreatic ductal adenocarcinoma (PDAC), 3.5cm!", "naïve café — ‘quotes’ &amp; 12345",
             "the lesion's margin isn't clear", " ".join(["hepatocellular carcinoma"] * 40)]  # fmt: skip
    assert torch.equal(ours.tokenize(texts), theirs(texts))


class RefTextTower(nn.Module):
    """open_clip's encode_text written plainly: explicit attention with a causal mask."""

    def __init__(self, state, heads):
        super().__init__()
        self.s, self.heads = state, heads

    def forward(self, tokens):
        s = self.s
        x = s["token_embedding.weight"][tokens] + s["positional_embedding"]
        n, width = x.shape[1], x.shape[2]
        mask = torch.triu(torch.full((n, n), float("-inf")), 1)
        layers = len({k.split(".")[2] for k in s if k.startswith("transformer.resblocks.")})
        for i in range(layers):
            p = f"transformer.resblocks.{i}."
            y = nn.functional.layer_norm(x, (width,), s[p + "ln_1.weight"], s[p + "ln_1.bias"])
            q, k, v = (y @ s[p + "attn.in_proj_weight"].T + s[p + "attn.in_proj_bias"]).chunk(3, -1)
            split = lambda t: t.view(t.shape[0], n, self.heads, -1).transpose(1, 2)  # noqa: E731
            q, k, v = split(q), split(k), split(v)
            a = torch.softmax(q @ k.transpose(-1, -2) / (q.shape[-1] ** 0.5) + mask, -1) @ v
            a = a.transpose(1, 2).reshape(x.shape) @ s[p + "attn.out_proj.weight"].T + s[p + "attn.out_proj.bias"]
            x = x + a
            y = nn.functional.layer_norm(x, (width,), s[p + "ln_2.weight"], s[p + "ln_2.bias"])
            h = y @ s[p + "mlp.c_fc.weight"].T + s[p + "mlp.c_fc.bias"]
            x = x + (h * torch.sigmoid(1.702 * h)) @ s[p + "mlp.c_proj.weight"].T + s[p + "mlp.c_proj.bias"]
        x = nn.functional.layer_norm(x, (width,), s["ln_final.weight"], s["ln_final.bias"])
        return x[torch.arange(x.shape[0]), tokens.argmax(-1)] @ s["text_projection"]


def test_import_clip_then_a_free_text_prompt_is_embedded_by_the_text_tower(capsys, tmp_path):
    from pastacore.families.gcis.clip_text import ClipTextTower
    from pastacore.families.gcis.prompts import resolve_prompt
    from pastacore.modelstore.store import ModelStore

    torch.manual_seed(3)
    tower = ClipTextTower(width=64, heads=1, layers=2)  # ViT-B-32's vocabulary, context and output; a narrow body
    for p in tower.parameters():
        nn.init.normal_(p, std=0.05)
    state = {f"module.{k}": v for k, v in tower.state_dict().items()}
    state["module.visual.proj"] = torch.randn(768, 512)  # the image tower is left out
    state["module.logit_scale"] = torch.tensor(4.6)
    torch.save({"epoch": 32, "state_dict": state}, tmp_path / "epoch_32.pt")  # as open_clip's training saves
    store = tmp_path / "store"
    wide = {k: v for k, v in state.items() if "text_projection" not in k} | {"module.text_projection": torch.zeros(64, 768)}
    torch.save(wide, tmp_path / "vit_l.pt")  # another CLIP's text tower: 768-d embeddings fit no gCIS router
    code, _, err = run_cli(capsys, "models", "--store", store, "import-clip", tmp_path / "vit_l.pt")
    assert code == 2 and "not a CLIP text tower gCIS can use" in err and "output 768 (needs 512)" in err
    code, out, err = run_cli(capsys, "models", "--store", store, "import-clip", tmp_path / "epoch_32.pt")
    assert code == 0, err
    code, out, _ = run_cli(capsys, "models", "--store", store, "verify")
    assert code == 0 and "clip-vit-b-32-quickgelu: ok" in out

    config = check_config({"variant": "ap", **TINY, "prompts": [{"text": "liver tumor", "embedding": [0.0] * 512}]})
    chosen = resolve_prompt("right kidney cyst", config, store=ModelStore(store))
    tokens = _open_clip_tokenizer_module().SimpleTokenizer()(["right kidney cyst"])
    with torch.no_grad():
        want = RefTextTower({k: v for k, v in tower.state_dict().items()}, heads=1)(tokens)[0]
    assert chosen.source == "clip" and chosen.term == "cyst@right kidney"
    assert float((torch.tensor(chosen.embedding) - want).abs().max()) <= 1e-4
    assert resolve_prompt("LIVER tumor", config, store=ModelStore(store)).source == "known"


def test_the_segment_controller_offers_a_models_known_prompts(capsys, tmp_path, released):
    pytest.importorskip("slicer")
    from conftest import phantom_ct

    from pastacore.actions.segment import SegmentOptions
    from pastacore.modelstore.store import ModelStore
    from pastacore.mrml import volumes
    from pastacore.mrml.scene import new_scene
    from pastacore.tasks import InlineRunner
    from PastaSlicerLib.controllers import SegmentController, SegmentRequest

    prompts = [{"text": "liver tumor", "embedding": [0.5] * 512}, {"text": "left kidney", "embedding": [-0.5] * 512}]
    store = tmp_path / "store"
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"1": "tumor@liver"}))
    for name, file, config, *more in (
        ("gcis-ap", released["ap_file"], write_config(tmp_path / "ap.json", variant="ap", ap_num=AP_NUM, prompts=prompts)),
        ("gcis-task", released["single_file"], write_config(tmp_path / "single.json", variant="single"), "--labels", labels),
    ):
        code, _, err = run_cli(capsys, "models", "--store", store, "import", file, "--config", config, "--name", name, *more)
        assert code == 0, err
    scene = new_scene().scene
    ct = volumes.node_from_volume(scene, phantom_ct(), "phantom CT")
    controller = SegmentController(scene, InlineRunner(), ModelStore(store))
    assert controller.prompts("gcis-ap") == ["liver tumor", "left kidney"]
    assert controller.prompts("gcis-task") is None
    assert "Type what to segment" in controller.problem(SegmentRequest(ct, SegmentOptions(model="gcis-ap")))
    assert controller.problem(SegmentRequest(ct, SegmentOptions(model="gcis-ap", prompt="liver tumor"))) is None
    assert controller.problem(SegmentRequest(ct, SegmentOptions(model="gcis-task"))) is None
    # the task model's label is a liver tumour (organ/lesion terminology): its organ is the liver
    from pastacore.inference.segmentation_model import declared_organ

    assert json.loads((store / "gcis-task" / "model.json").read_text())["labels"] == [{"value": 1, "term": "tumor@liver"}]
    assert declared_organ("gcis-task", ModelStore(store)) == "liver"
