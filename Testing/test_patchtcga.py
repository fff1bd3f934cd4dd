"""PatchTCGA's pathology encoders: the five released layouts, features against an independent
reference, refusals, and `pasta patches` (features, train-head, classify, heatmap) on real histology.

Checkpoints are built here, seeded and small (ResNet stages of 1 block, ViTs of 2 blocks), in each
method's own layout (key names of simclr-pytorch, MoCo, PatchTCGA's BYOL, DINO and MAE). The
reference features are computed by plain functional code over the state dict, written from the
public code's structure (torchvision's Bottleneck, timm's/DINO's ViT block), not by our modules.
"""

from __future__ import annotations

import argparse
import csv
import math
import pathlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pastacore.cli.main import main

IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
RESNET = {"layers": [1, 1, 1, 1], "channels": [8, 8, 16, 16]}
VIT = {"patch_size": 16, "img_size": 64, "embed_dim": 32, "depth": 2, "num_heads": 4, "mlp_ratio": 2.0}


# --- seeded weights under the public names ---------------------------------------------------


def _bn(sd, name, channels, g):
    sd[f"{name}.weight"] = 1 + 0.2 * torch.randn(channels, generator=g)
    sd[f"{name}.bias"] = 0.1 * torch.randn(channels, generator=g)
    sd[f"{name}.running_mean"] = 0.1 * torch.randn(channels, generator=g)
    sd[f"{name}.running_var"] = 0.5 + torch.rand(channels, generator=g)
    sd[f"{name}.num_batches_tracked"] = torch.tensor(7)


def resnet_state(seed, layers=RESNET["layers"], widths=RESNET["channels"], fc=0):
    """A torchvision-named ResNet (v1.5 bottlenecks) state dict; ``fc`` > 0 adds a classifier."""
    g = torch.Generator().manual_seed(seed)
    sd = {}

    def conv(name, cout, cin, k):
        sd[name] = torch.randn(cout, cin, k, k, generator=g) * math.sqrt(2.0 / (cin * k * k))

    conv("conv1.weight", widths[0], 3, 7)
    _bn(sd, "bn1", widths[0], g)
    inplanes = widths[0]
    for s, (blocks, width) in enumerate(zip(layers, widths)):
        for b in range(blocks):
            p = f"layer{s + 1}.{b}."
            conv(p + "conv1.weight", width, inplanes, 1)
            _bn(sd, p + "bn1", width, g)
            conv(p + "conv2.weight", width, width, 3)
            _bn(sd, p + "bn2", width, g)
            conv(p + "conv3.weight", 4 * width, width, 1)
            _bn(sd, p + "bn3", 4 * width, g)
            if b == 0 and (s > 0 or inplanes != 4 * width):
                conv(p + "downsample.0.weight", 4 * width, inplanes, 1)
                _bn(sd, p + "downsample.1", 4 * width, g)
            inplanes = 4 * width
    if fc:
        sd["fc.weight"] = torch.randn(fc, inplanes, generator=g)
        sd["fc.bias"] = torch.randn(fc, generator=g)
    return sd


def vit_state(seed, dim=VIT["embed_dim"], depth=VIT["depth"], patch=VIT["patch_size"], img=VIT["img_size"], ratio=2.0):
    """A timm/DINO-named ViT state dict (no classifier)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape, s=0.02: s * torch.randn(*shape, generator=g)
    hidden = int(dim * ratio)
    sd = {
        "cls_token": r(1, 1, dim, s=0.5),
        "pos_embed": r(1, 1 + (img // patch) ** 2, dim, s=0.5),
        "patch_embed.proj.weight": r(dim, 3, patch, patch, s=0.05),
        "patch_embed.proj.bias": r(dim),
        "norm.weight": 1 + r(dim, s=0.2),
        "norm.bias": r(dim, s=0.1),
    }
    for i in range(depth):
        p = f"blocks.{i}."
        sd.update(
            {
                p + "norm1.weight": 1 + r(dim, s=0.2),
                p + "norm1.bias": r(dim, s=0.1),
                p + "attn.qkv.weight": r(3 * dim, dim, s=dim**-0.5),
                p + "attn.qkv.bias": r(3 * dim, s=0.1),
                p + "attn.proj.weight": r(dim, dim, s=dim**-0.5),
                p + "attn.proj.bias": r(dim, s=0.1),
                p + "norm2.weight": 1 + r(dim, s=0.2),
                p + "norm2.bias": r(dim, s=0.1),
                p + "mlp.fc1.weight": r(hidden, dim, s=dim**-0.5),
                p + "mlp.fc1.bias": r(hidden, s=0.1),
                p + "mlp.fc2.weight": r(dim, hidden, s=hidden**-0.5),
                p + "mlp.fc2.bias": r(dim, s=0.1),
            }
        )
    return sd


def _prefixed(prefix, sd):
    return {prefix + k: v for k, v in sd.items()}


def checkpoint(method, seed=0):
    """``(file object, encoder state, the state of the network that must NOT be used or None)``."""
    g = torch.Generator().manual_seed(seed + 100)
    if method == "simclr":
        enc = resnet_state(seed, fc=10)
        state = _prefixed("convnet.", enc)
        state.update({"projection.fc1.weight": torch.randn(64, 64, generator=g), "projection.bn2.running_mean": torch.zeros(16)})
        hparams = argparse.Namespace(arch="ResNet50", data="ptcga", root=pathlib.PosixPath("/runs/000001"), dist="ddp")
        obj = {"state_dict": state, "hparams": hparams, "opt_state_dict": {"state": {}, "param_groups": []}, "iter": 500}
        return obj, {k: v for k, v in enc.items() if not k.startswith("fc.")}, None
    if method == "moco":
        enc, momentum = resnet_state(seed), resnet_state(seed + 1)
        state = _prefixed("module.encoder_q.", enc) | _prefixed("module.encoder_k.", momentum)
        for which in ("encoder_q", "encoder_k"):
            state[f"module.{which}.fc.0.weight"] = torch.randn(64, 64, generator=g)
            state[f"module.{which}.fc.2.weight"] = torch.randn(8, 64, generator=g)
        state["module.queue"] = torch.randn(8, 32, generator=g)
        state["module.queue_ptr"] = torch.zeros(1, dtype=torch.long)
        return {"epoch": 200, "arch": "resnet50", "state_dict": state, "optimizer": {}}, enc, momentum
    if method == "byol":
        enc, target = resnet_state(seed), resnet_state(seed + 1)
        state = _prefixed("net_online.net.", enc) | _prefixed("net_target.net.", target)
        state["projector_online.net.ln1.weight"] = torch.randn(16, 64, generator=g)
        state["predictor_online.net.ln2.weight"] = torch.randn(16, 16, generator=g)
        state["classifier_online.weight"] = torch.randn(20, 64, generator=g)
        state["projector_target.net.ln1.weight"] = torch.randn(16, 64, generator=g)
        return {"state_dict": state, "opt_state_dict": {}, "epoch": 3, "itr": 10, "num_updates": 5}, enc, target
    if method == "dino":
        enc, student = vit_state(seed), vit_state(seed + 1)
        head = {"head.mlp.0.weight": torch.randn(16, 32, generator=g), "head.last_layer.weight_g": torch.ones(8, 1)}
        obj = {
            "student": _prefixed("module.backbone.", student) | _prefixed("module.", head),
            "teacher": _prefixed("backbone.", enc) | head,
            "optimizer": {},
            "epoch": 100,
            "args": argparse.Namespace(arch="vit_small", patch_size=16, output_dir="/out"),
            "dino_loss": {"center": torch.zeros(1, 8)},
        }
        return obj, enc, student
    if method == "mae":
        enc = vit_state(seed)
        model = dict(enc)
        model["mask_token"] = torch.randn(1, 1, 16, generator=g)
        model["decoder_embed.weight"] = torch.randn(16, 32, generator=g)
        model["decoder_blocks.0.norm1.weight"] = torch.ones(16)
        model["decoder_pred.weight"] = torch.randn(768, 16, generator=g)
        args = argparse.Namespace(model="mae_vit_large_patch16", mask_ratio=0.75, norm_pix_loss=True)
        return {"model": model, "optimizer": {}, "epoch": 399, "scaler": {"scale": 65536.0}, "args": args}, enc, None
    raise AssertionError(method)


def config_of(method, **extra):
    sizes = RESNET if method in ("simclr", "moco", "byol") else VIT
    return {"family": "patchtcga", "method": method, **sizes, **extra}


# --- the independent reference ----------------------------------------------------------------


def _ref_bn(x, sd, p):
    return F.batch_norm(x, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"], sd[p + ".bias"], False, 0.0, 1e-5)


def ref_resnet(sd, x, layers=RESNET["layers"]):
    """torchvision's ResNet v1.5 forward up to the global average pool, over the raw state dict."""
    x = F.max_pool2d(F.relu(_ref_bn(F.conv2d(x, sd["conv1.weight"], stride=2, padding=3), sd, "bn1")), 3, 2, 1)
    for s, blocks in enumerate(layers):
        for b in range(blocks):
            p = f"layer{s + 1}.{b}."
            stride = 2 if s > 0 and b == 0 else 1
            out = F.relu(_ref_bn(F.conv2d(x, sd[p + "conv1.weight"]), sd, p + "bn1"))
            out = F.relu(_ref_bn(F.conv2d(out, sd[p + "conv2.weight"], stride=stride, padding=1), sd, p + "bn2"))
            out = _ref_bn(F.conv2d(out, sd[p + "conv3.weight"]), sd, p + "bn3")
            shortcut = x
            if p + "downsample.0.weight" in sd:
                shortcut = _ref_bn(F.conv2d(x, sd[p + "downsample.0.weight"], stride=stride), sd, p + "downsample.1")
            x = F.relu(out + shortcut)
    return x.mean(dim=(2, 3))


def _dino_pos(pos, h, w, patch):
    """DINO's interpolate_pos_encoding (bicubic, +0.1 on the target grid, scale factors)."""
    n = pos.shape[1] - 1
    if (h // patch) * (w // patch) == n and h == w:
        return pos
    side = math.sqrt(n)
    grid = pos[:, 1:].reshape(1, int(side), int(side), -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=((h // patch + 0.1) / side, (w // patch + 0.1) / side), mode="bicubic")
    return torch.cat((pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, -1, pos.shape[-1])), dim=1)


def ref_vit(sd, x, pool="cls", heads=VIT["num_heads"], patch=VIT["patch_size"]):
    """The ViT of DINO/MAE (pre-norm blocks, explicit softmax attention, erf GELU), over the raw state dict."""
    dim = sd["cls_token"].shape[-1]
    t = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=patch).flatten(2).transpose(1, 2)
    t = torch.cat((sd["cls_token"].expand(len(x), -1, -1), t), dim=1)
    t = t + _dino_pos(sd["pos_embed"], x.shape[2], x.shape[3], patch)
    ln = lambda v, p: F.layer_norm(v, (dim,), sd[p + ".weight"], sd[p + ".bias"], 1e-6)
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    for i in range(depth):
        p = f"blocks.{i}."
        y = ln(t, p + "norm1") @ sd[p + "attn.qkv.weight"].T + sd[p + "attn.qkv.bias"]
        q, k, v = y.reshape(len(x), -1, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * (dim // heads) ** -0.5).softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(len(x), -1, dim)
        t = t + out @ sd[p + "attn.proj.weight"].T + sd[p + "attn.proj.bias"]
        h = ln(t, p + "norm2") @ sd[p + "mlp.fc1.weight"].T + sd[p + "mlp.fc1.bias"]
        h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))
        t = t + h @ sd[p + "mlp.fc2.weight"].T + sd[p + "mlp.fc2.bias"]
    if pool == "cls":
        return ln(t, "norm")[:, 0]
    return F.layer_norm(t[:, 1:].mean(dim=1), (dim,), eps=1e-6)  # MAE's fresh fc_norm: weight 1, bias 0


def reference_features(method, state, images, pool=None):
    """Pixels as torchvision's ToTensor (+ Normalize except SimCLR), then the reference network."""
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    if method != "simclr":
        x = (x - torch.tensor(IMAGENET[0]).view(1, 3, 1, 1)) / torch.tensor(IMAGENET[1]).view(1, 3, 1, 1)
    with torch.no_grad():
        if method in ("simclr", "moco", "byol"):
            return ref_resnet(state, x).numpy()
        return ref_vit(state, x, pool or ("avg" if method == "mae" else "cls")).numpy()


# --- helpers -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ihc():
    from PIL import Image

    from pastacore.families.patchtcga.samples import histology_path

    return np.asarray(Image.open(histology_path("ihc.png")).convert("RGB"))


@pytest.fixture(scope="module")
def he_region():
    """A 448 x 768 region of the real H&E slide (tissue and glass), read as the commands read it."""
    from pastacore.families.patchtcga.images import read_rgb
    from pastacore.families.patchtcga.samples import histology_path

    slide = read_rgb(histology_path("cmu_small_region.svs"))
    assert slide.shape == (2967, 2220, 3)
    return slide


def write_pngs(folder, images, prefix="patch"):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, image in enumerate(images):
        path = folder / f"{prefix}_{n:02d}.png"
        Image.fromarray(image).save(path)
        paths.append(str(path))
    return paths


def write_case(tmp_path, method, obj=None, config=None, name=None):
    import json

    obj = obj if obj is not None else checkpoint(method)[0]
    ckpt = tmp_path / (name or f"{method}.pth")
    torch.save(obj, ckpt)
    cfg = tmp_path / f"{method}_cfg.json"
    cfg.write_text(json.dumps(config or config_of(method)))
    return str(ckpt), str(cfg)


def read_table(path):
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


def features_csv(path):
    header, rows = read_table(path)
    return [r[0] for r in rows], np.array([[float(v) for v in r[1:]] for r in rows])


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_close(ours, ref):
    scale = float(np.abs(ref).max())
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=2e-5 * scale)


def crops(image, size, count, step=96):
    return [
        np.ascontiguousarray(image[(n // 4) * step : (n // 4) * step + size[0], (n % 4) * step : (n % 4) * step + size[1]])
        for n in range(count)
    ]


# --- layouts and features ----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["simclr", "moco", "byol", "dino", "mae"])
def test_each_released_layout_gives_its_own_codes_features(method, tmp_path, capsys, ihc):
    obj, encoder_state, wrong_state = checkpoint(method)
    ckpt, cfg = write_case(tmp_path, method, obj)
    size = (64, 64) if method != "dino" else (80, 112)  # DINO interpolates its position embedding
    images = crops(ihc, size, 5)
    paths = write_pngs(tmp_path / "patches", images)

    code, out, err = run_cli(
        capsys, "patches", "features", *paths, "--encoder", ckpt, "--config", cfg, "--out", tmp_path / "f.csv"
    )

    assert code == 0, err
    ids, ours = features_csv(tmp_path / "f.csv")
    assert ids == [pathlib.Path(p).stem for p in paths]
    reference = reference_features(method, encoder_state, images)
    assert ours.shape == reference.shape == (5, 64 if method in ("simclr", "moco", "byol") else 32)
    assert_close(ours, reference)
    if wrong_state is not None:  # the momentum copy / target network / student would give other features
        assert np.abs(reference_features(method, wrong_state, images) - ours).max() > 0.05 * np.abs(reference).max()
    if method == "simclr":  # no mean/std: ImageNet normalisation would change the features
        normalised = ref_resnet(
            encoder_state, (torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255 - 0.45) / 0.226
        )
        assert np.abs(normalised.numpy() - ours).max() > 0.05 * np.abs(reference).max()


def test_features_are_written_at_full_precision(tmp_path, capsys, ihc):
    ckpt, cfg = write_case(tmp_path, "moco")
    paths = write_pngs(tmp_path / "p", crops(ihc, (64, 64), 2))
    run_cli(capsys, "patches", "features", *paths, "--encoder", ckpt, "--config", cfg, "--out", tmp_path / "f.csv")
    from pastacore.families.patchtcga.patches import image_features, open_encoder, read_config

    _ids, direct = image_features(paths, open_encoder(ckpt, read_config(cfg)))
    _ids, written = features_csv(tmp_path / "f.csv")
    assert np.array_equal(written.astype(np.float32), direct)  # every float32 reads back bit for bit


@pytest.mark.parametrize("pool", ["cls", "avg"])
def test_mae_pools_and_a_file_bringing_its_own_fc_norm(pool, tmp_path, ihc):
    from pastacore.families.patchtcga.patches import open_encoder

    obj, state, _ = checkpoint("mae")
    images = crops(ihc, (64, 64), 3)
    ckpt, _cfg = write_case(tmp_path, "mae", obj)
    ours = open_encoder(ckpt, config_of("mae", pool=pool)).features(np.stack(images))
    assert_close(ours, reference_features("mae", state, images, pool))
    if pool == "avg":  # a fine-tuned file's own fc_norm is used, as MAE's loader would load it
        obj["model"]["fc_norm.weight"] = torch.full((32,), 2.0)
        obj["model"]["fc_norm.bias"] = torch.full((32,), 0.5)
        torch.save(obj, ckpt)
        scaled = open_encoder(ckpt, config_of("mae", pool=pool)).features(np.stack(images))
        assert_close(scaled, 2.0 * reference_features("mae", state, images, pool) + 0.5)


def test_bare_state_dicts_and_teacher_only_files_load(tmp_path, ihc):
    from pastacore.families.patchtcga.patches import open_encoder

    images = np.stack(crops(ihc, (64, 64), 3))
    bare_resnet = resnet_state(3, fc=5)  # a torchvision-style file with its classifier
    torch.save(_prefixed("module.", bare_resnet), tmp_path / "bare_r.pth")
    got = open_encoder(tmp_path / "bare_r.pth", config_of("byol")).features(images)
    assert_close(got, reference_features("byol", bare_resnet, list(images)))

    obj, state, _ = checkpoint("dino")
    torch.save({"teacher": obj["teacher"]}, tmp_path / "teacher.pth")
    torch.save(state, tmp_path / "backbone.pth")  # DINO's released backbone-only weights
    want = reference_features("dino", state, list(images))
    for name in ("teacher.pth", "backbone.pth"):
        loaded = open_encoder(tmp_path / name, config_of("dino"))
        assert_close(loaded.features(images), want)
    assert open_encoder(tmp_path / "backbone.pth", config_of("mae", pool="cls")).loaded.found.layout == "bare-vit"


REFUSALS = [
    ("moco", "simclr", "is a MoCo v2 checkpoint"),
    ("simclr", "byol", "is a SimCLR v1.5 checkpoint"),
    ("byol", "moco", "is a BYOL checkpoint"),
    ("dino", "mae", "is a DINO v1 checkpoint"),
    ("mae", "dino", "is a MAE checkpoint"),
    ("moco", "dino", "is a MoCo v2 checkpoint"),
]


@pytest.mark.parametrize("layout,method,message", REFUSALS)
def test_a_file_of_another_methods_layout_is_refused_in_one_line(layout, method, message, tmp_path, capsys, ihc):
    ckpt, _ = write_case(tmp_path, layout)
    _, cfg = write_case(tmp_path, method)
    paths = write_pngs(tmp_path / "p", crops(ihc, (64, 64), 1))
    code, out, err = run_cli(
        capsys, "patches", "features", *paths, "--encoder", ckpt, "--config", cfg, "--out", tmp_path / "f.csv"
    )
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert f'"method": "{layout}"' in err
    assert not (tmp_path / "f.csv").exists()


class Payload:  # anything beyond tensors, containers, numpy scalars, Namespace and paths
    pass


def test_student_only_wrong_sizes_and_foreign_objects_are_refused(tmp_path):
    from pastacore.errors import PastaError
    from pastacore.families.patchtcga.config import check_config
    from pastacore.families.patchtcga.weights import load_encoder

    obj, _, _ = checkpoint("dino")
    torch.save({"student": obj["student"], "args": obj["args"]}, tmp_path / "student.pth")
    with pytest.raises(PastaError, match="only a DINO student"):
        load_encoder(tmp_path / "student.pth", check_config(config_of("dino")))

    ckpt, _ = write_case(tmp_path, "moco")
    with pytest.raises(
        PastaError, match=r"does not fit the configured resnet50 .*layer2.0.conv1.weight is 8x32x1x1 in the file, 16x32x1x1"
    ):
        load_encoder(ckpt, check_config(config_of("moco", channels=[8, 16, 16, 16])))
    with pytest.raises(PastaError, match="pos_embed is 1x17x32 in the file, 1x50x32 in the network"):
        load_encoder(write_case(tmp_path, "dino")[0], check_config(config_of("dino", img_size=112)))

    obj, _, _ = checkpoint("mae")
    obj["args"] = Payload()
    torch.save(obj, tmp_path / "payload.pth")
    with pytest.raises(PastaError, match="refusing payload.pth: it contains code or objects beyond tensors"):
        load_encoder(tmp_path / "payload.pth", check_config(config_of("mae")))


def test_the_configs_sizes_win_over_the_stored_args(tmp_path):
    from pastacore.families.patchtcga.family import verify

    obj, _, _ = checkpoint("mae")  # args say mae_vit_large_patch16; the config says a small ViT
    ckpt, _ = write_case(tmp_path, "mae", obj)
    summary = verify(pathlib.Path(ckpt), config_of("mae"))
    assert summary["layout"] == "mae" and summary["arch"] == "vit_large_patch16_224" and summary["feature_dim"] == 32
    assert summary["parameters"] == sum(v.numel() for k, v in checkpoint("mae")[1].items()) + 2 * 32  # + fresh fc_norm
    assert "the MAE decoder" in summary["ignored"]


def test_mae_refuses_patches_of_another_size_in_one_line(tmp_path, capsys, ihc):
    ckpt, cfg = write_case(tmp_path, "mae")
    paths = write_pngs(tmp_path / "p", crops(ihc, (80, 64), 1))
    code, _out, err = run_cli(
        capsys, "patches", "features", *paths, "--encoder", ckpt, "--config", cfg, "--out", tmp_path / "f.csv"
    )
    assert code == 2 and "takes 64x64-pixel patches" in err and err.count("\n") == 1


def test_forward_gives_the_features_of_the_commands(tmp_path, ihc):
    from pastacore.families.patchtcga.family import forward

    obj, state, _ = checkpoint("byol")
    ckpt, _ = write_case(tmp_path, "byol", obj)
    images = np.stack(crops(ihc, (64, 64), 2))
    out = forward(pathlib.Path(ckpt), config_of("byol"), {"images": torch.from_numpy(images)}, "cpu")
    assert_close(out["features"].numpy(), reference_features("byol", state, list(images)))


@pytest.mark.parametrize(
    "config,message",
    [
        ({"method": "sim"}, "'method' must be one of"),
        ({"method": "dino", "arch": "resnet50"}, "does not fit it"),
        ({"method": "moco", "depth": 2}, "'depth' is a ViT size field"),
        ({"method": "mae", "embed_dim": 30, "num_heads": 4}, "multiple of 'num_heads'"),
        ({"method": "byol", "std": [0.2, 0, 0.2]}, "'std' must be 3 positive numbers"),
        ({"method": "dino", "pool": "avg"}, "'pool' must be cls for method 'dino'"),
        ({"method": "moco", "chanels": [1, 2, 3, 4]}, "unknown field 'chanels'"),
    ],
)
def test_bad_configs_are_refused_naming_the_field(config, message):
    from pastacore.errors import PastaError
    from pastacore.families.patchtcga.config import check_config

    with pytest.raises(PastaError, match=message):
        check_config({"family": "patchtcga", **config})


def test_config_defaults_are_the_named_models():
    from pastacore.families.patchtcga.config import check_config, feature_dim

    simclr = check_config({"family": "patchtcga", "method": "simclr"})
    assert simclr["mean"] == [0.0, 0.0, 0.0] and simclr["std"] == [1.0, 1.0, 1.0] and feature_dim(simclr) == 2048
    dino = check_config({"family": "patchtcga", "method": "dino"})
    assert (dino["arch"], dino["embed_dim"], dino["depth"], dino["num_heads"], dino["pool"]) == (
        "vit_small_patch16_224",
        384,
        12,
        6,
        "cls",
    )
    mae = check_config({"family": "patchtcga", "method": "mae"})
    assert (mae["embed_dim"], mae["depth"], mae["pool"], mae["mean"]) == (1024, 24, "avg", IMAGENET[0])


# --- few-shot heads, classify and the heat map on a real H&E slide ----------------------------


def _tiles(region, tile):
    return [
        (x, y, region[y : y + tile, x : x + tile])
        for y in range(0, region.shape[0] - tile + 1, tile)
        for x in range(0, region.shape[1] - tile + 1, tile)
    ]


def test_heads_classify_and_the_heat_map_on_real_histology(tmp_path, capsys, he_region):
    import SimpleITK as sitk
    from PIL import Image

    tile = 64
    ckpt, cfg = write_case(tmp_path, "moco")
    # training patches from the upper slide: tissue (H&E stained) vs glass, by how bright they are
    train = [p for _x, _y, p in _tiles(he_region[:896, :2176], tile)][::7]
    grey = np.array([p.mean() for p in train])
    keep = (grey < 215) | (grey > 238)
    train = [p for p, k in zip(train, keep) if k]
    labels = ["tissue" if g < 215 else "glass" for g, k in zip(grey, keep) if k]
    paths = write_pngs(tmp_path / "train", train, "t")
    (tmp_path / "labels.csv").write_text(
        "id,label\n" + "".join(f"{pathlib.Path(p).stem},{lab}\n" for p, lab in zip(paths, labels))
    )
    assert 8 <= labels.count("tissue") and 8 <= labels.count("glass")

    assert run_cli(capsys, "patches", "features", *paths, "--encoder", ckpt, "--config", cfg, "--out", tmp_path / "f.csv")[0] == 0
    code, out, err = run_cli(
        capsys, "patches", "train-head", tmp_path / "f.csv", tmp_path / "labels.csv", "--out", tmp_path / "head.pt", "--folds", 3
    )
    assert code == 0, err
    import json

    metrics = json.loads((tmp_path / "head.json").read_text())
    assert metrics["classes"] == ["glass", "tissue"] and metrics["accuracy"]["mean"] > 0.9

    # a region of the lower slide (not trained on), with a pixel size SimpleITK reads from the file
    region = np.ascontiguousarray(he_region[1280 : 1280 + 5 * tile + 20, 512 : 512 + 9 * tile + 10])
    region_png = tmp_path / "region.tif"
    Image.fromarray(region).save(region_png, dpi=(254 * 2, 254 * 2))  # 0.05 mm pixels: SimpleITK reads them from a TIFF
    code, out, err = run_cli(
        capsys, "patches", "heatmap", region_png, "--encoder", ckpt, "--config", cfg, "--head", tmp_path / "head.pt",
        "--tile", tile, "--class", "tissue", "--out", tmp_path / "heat.nii.gz", "--batch-size", 7,
    )  # fmt: skip
    assert code == 0, err
    assert "the right 10 px and bottom 20 px are not covered" in out
    heat, source = sitk.ReadImage(str(tmp_path / "heat.nii.gz")), sitk.ReadImage(str(region_png))
    assert heat.GetSize() == source.GetSize() == (region.shape[1], region.shape[0])
    assert np.allclose(heat.GetSpacing(), source.GetSpacing()) and np.allclose(heat.GetOrigin(), source.GetOrigin())
    assert np.allclose(source.GetSpacing(), 0.05, atol=1e-3)
    values = sitk.GetArrayFromImage(heat)

    # each tile equals what `classify` gives for the same crop
    cut = _tiles(region, tile)
    crop_paths = write_pngs(tmp_path / "crops", [c for _x, _y, c in cut], "c")
    code, out, err = run_cli(
        capsys, "patches", "classify", *crop_paths, "--encoder", ckpt, "--config", cfg, "--head", tmp_path / "head.pt", "--out", tmp_path / "pred.csv"
    )  # fmt: skip
    assert code == 0, err
    header, rows = read_table(tmp_path / "pred.csv")
    assert header == ["id", "label", "p_glass", "p_tissue"]
    for (x, y, _crop), row in zip(cut, rows):
        p_tissue = float(row[3])
        assert np.allclose(values[y : y + tile, x : x + tile], p_tissue, atol=1e-6)
        assert row[1] == ("tissue" if p_tissue > 0.5 else "glass")
        assert abs(float(row[2]) + p_tissue - 1) < 1e-12
    assert np.all(values[:, 9 * tile :] == 0) and np.all(values[5 * tile :, :] == 0)
    truth = np.array([c.mean() < 215 for _x, _y, c in cut])
    clear = np.array([c.mean() < 200 or c.mean() > 238 for _x, _y, c in cut])
    predicted = np.array([r[1] == "tissue" for r in rows])
    assert truth[clear].any() and (~truth[clear]).any()
    assert (predicted[clear] == truth[clear]).mean() > 0.9


def test_heatmap_and_classify_refuse_bad_input_before_work(tmp_path, capsys, ihc):
    ckpt, cfg = write_case(tmp_path, "moco")
    png = write_pngs(tmp_path, [ihc[:100, :100]])[0]
    from pastacore.classify.fewshot import fit_head
    from pastacore.classify.heads import save_head

    rng = np.random.default_rng(0)
    save_head(fit_head(rng.normal(size=(6, 64)), np.array([0, 1, 2, 0, 1, 2]), ["a", "b", "c"]), tmp_path / "head3.pt")
    save_head(fit_head(rng.normal(size=(6, 32)), np.array([0, 1, 0, 1, 0, 1]), ["a", "b"]), tmp_path / "head32.pt")
    base = ["patches", "heatmap", png, "--encoder", ckpt, "--config", cfg, "--out", tmp_path / "h.nii.gz"]
    cases = [
        (base + ["--head", tmp_path / "head3.pt", "--tile", 50], "choose the class to map"),
        (base + ["--head", tmp_path / "head3.pt", "--class", "d", "--tile", 50], "no class 'd'"),
        (base + ["--head", tmp_path / "head32.pt", "--tile", 50], "expects 32 features, the encoder gives 64"),
        (base + ["--head", tmp_path / "head3.pt", "--class", "a", "--tile", 128], "does not fit the 100x100 image"),
    ]
    for argv, message in cases:
        code, _out, err = run_cli(capsys, *argv)
        assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "h.nii.gz").exists()
    sixteen = tmp_path / "deep.png"
    from PIL import Image

    Image.new("I;16", (64, 64), 4000).save(sixteen)
    code, _out, err = run_cli(
        capsys, "patches", "features", sixteen, "--encoder", ckpt, "--config", cfg, "--out", tmp_path / "f.csv"
    )
    assert code == 2 and "patches must be 8-bit RGB" in err


# --- the model store -----------------------------------------------------------------------------


def test_models_import_lists_the_family_and_patches_use_the_installed_encoder(tmp_path, capsys, monkeypatch, ihc):
    monkeypatch.setenv("PASTA_HOME", str(tmp_path / "home"))
    ckpt, cfg = write_case(tmp_path, "dino")
    _, wrong = write_case(tmp_path, "mae")
    code, _out, err = run_cli(capsys, "models", "import", ckpt, "--config", wrong, "--name", "bad")
    assert code == 2 and "is a DINO v1 checkpoint" in err and not (tmp_path / "home" / "models" / "bad").exists()
    assert run_cli(capsys, "models", "import", ckpt, "--config", cfg, "--name", "ptcga-dino")[0] == 0
    code, out, _err = run_cli(capsys, "models", "list")
    line = next(row for row in out.splitlines() if row.startswith("ptcga-dino"))
    assert line.split()[2:4] == ["encoder", "patchtcga"]
    import json

    stored = json.loads((tmp_path / "home" / "models" / "ptcga-dino" / "model.json").read_text())
    assert stored["family_summary"]["layout"] == "dino" and "the DINO student" in stored["family_summary"]["ignored"]

    paths = write_pngs(tmp_path / "p", crops(ihc, (64, 64), 2))
    assert run_cli(capsys, "patches", "features", *paths, "--encoder", "ptcga-dino", "--out", tmp_path / "a.csv")[0] == 0
    assert run_cli(capsys, "patches", "features", *paths, "--encoder", ckpt, "--config", cfg, "--out", tmp_path / "b.csv")[0] == 0
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
    code, _out, err = run_cli(capsys, "patches", "features", *paths, "--encoder", ckpt, "--out", tmp_path / "c.csv")
    assert code == 2 and "needs its model config" in err


# --- the Slicer controller (slicer-core MRML) ------------------------------------------------------


def _loaded_as_slicer_does(scene, path):
    """A 2-D image as Slicer loads it: a one-slice vector volume with ITK's pixel order and grid."""
    import SimpleITK as sitk
    import slicer.util

    from pastacore.geometry import Grid

    image = sitk.ReadImage(str(path))
    node = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", pathlib.Path(path).stem)
    slicer.util.updateVolumeFromArray(node, sitk.GetArrayFromImage(image)[None])
    direction = np.eye(3)
    direction[:2, :2] = np.reshape(image.GetDirection(), (2, 2))
    grid = Grid((1, *image.GetSize()[::-1]), (*image.GetSpacing(), 1.0), (*image.GetOrigin(), 0.0), direction)
    from pastacore.mrml.volumes import _vtk_matrix

    node.SetIJKToRASMatrix(_vtk_matrix(grid.ijk_to_ras()))
    return node


def test_controller_trains_a_head_and_overlays_the_heat_map_the_command_writes(tmp_path, capsys, ihc):
    pytest.importorskip("slicer")
    import SimpleITK as sitk
    import slicer.util
    from PIL import Image

    from pastacore.errors import PastaError
    from pastacore.modelstore.store import ModelStore
    from pastacore.mrml.scene import new_scene, node_ids
    from pastacore.tasks import InlineRunner
    from PastaSlicerLib.controllers import PatchController

    store = ModelStore(tmp_path / "store")
    scene = new_scene().scene
    controller = PatchController(scene, InlineRunner(), store)
    ckpt, cfg = write_case(tmp_path, "moco")
    assert controller.encoders() == []
    assert controller.import_encoder(ckpt, cfg, "ptcga-moco") == "ptcga-moco" and controller.encoders() == ["ptcga-moco"]

    # labelled patches in one sub-folder per class: the dark (stained) and light corners of the IHC image
    grey = {(y, x): ihc[y : y + 64, x : x + 64].mean() for y in range(0, 448, 64) for x in range(0, 448, 64)}
    ranked = sorted(grey, key=grey.get)
    for label, picks in (("stained", ranked[:8]), ("pale", ranked[-8:])):
        write_pngs(tmp_path / "patches" / label, [ihc[y : y + 64, x : x + 64] for y, x in picks], label)
    outcomes = []
    controller.train_head(tmp_path / "patches", "ptcga-moco", tmp_path / "head.pt", folds=4, on_finished=outcomes.append)
    assert outcomes[-1].ok, outcomes[-1].error
    assert outcomes[-1].value["classes"] == ["pale", "stained"] and outcomes[-1].value["n_cases"] == 16
    assert controller.head_classes(tmp_path / "head.pt") == ["pale", "stained"]

    region = tmp_path / "ihc_region.png"
    Image.fromarray(ihc[:200, :256]).save(region)
    image = _loaded_as_slicer_does(scene, region)
    before = set(node_ids(scene))
    controller.classify(image, "ptcga-moco", tmp_path / "head.pt", tile=64, class_name="stained", on_finished=outcomes.append)
    assert outcomes[-1].ok, outcomes[-1].error
    prediction = outcomes[-1].value
    added = [scene.GetNodeByID(i) for i in node_ids(scene) if i not in before]
    assert sorted(n.GetClassName() for n in added) == ["vtkMRMLScalarVolumeDisplayNode", "vtkMRMLScalarVolumeNode"]
    heat = prediction.heatmap
    assert heat.GetAttribute("PASTA.HeatMapOf") == image.GetID() and prediction.summary["tiles"] == 12
    assert prediction.summary["label"] in ("pale", "stained") and "over 12 tiles" in outcomes[-1].message

    # the same numbers, on the same grid, as `pasta patches heatmap` writes for the PNG file
    code, _out, err = run_cli(
        capsys, "patches", "heatmap", region, "--encoder", ckpt, "--config", cfg, "--head", tmp_path / "head.pt",
        "--tile", 64, "--class", "stained", "--out", tmp_path / "heat.nii.gz",
    )  # fmt: skip
    assert code == 0, err
    written = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "heat.nii.gz")))
    np.testing.assert_allclose(slicer.util.arrayFromVolume(heat)[0], written, atol=1e-6)
    import vtk

    a, b = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
    image.GetIJKToRASMatrix(a)
    heat.GetIJKToRASMatrix(b)
    assert all(a.GetElement(r, c) == b.GetElement(r, c) for r in range(4) for c in range(4))
    display = heat.GetDisplayNode()
    assert (display.GetWindow(), display.GetLevel()) == (1.0, 0.5)

    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "ct")
    slicer.util.updateVolumeFromArray(volume, np.zeros((3, 8, 8), np.int16))
    with pytest.raises(PastaError, match="is a 3-D volume \\(3 slices\\)"):
        controller.classify(volume, "ptcga-moco", tmp_path / "head.pt", tile=4)


@pytest.mark.parametrize("method", ["byol", "dino"])
def test_bf16_features_stay_close_to_full_precision(method, tmp_path, ihc):
    from pastacore.families.patchtcga.patches import open_encoder

    ckpt, _ = write_case(tmp_path, method)
    images = np.stack(crops(ihc, (64, 64), 3))
    full = open_encoder(ckpt, config_of(method)).features(images)
    half = open_encoder(ckpt, config_of(method), precision="bf16")
    assert half.precision == "bf16" and next(half.network.parameters()).dtype == torch.bfloat16
    assert np.abs(half.features(images) - full).max() < 0.03 * np.abs(full).max()


# --- the browser app (its logic, on a real trame-slicer scene, jobs inline) ----------------------


def test_web_app_loads_a_pathology_image_and_overlays_the_heat_map(tmp_path, ihc):
    pytest.importorskip("trame_slicer")
    import os

    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    import slicer.util
    from PIL import Image
    from trame.app import get_server

    from pastacore.classify.fewshot import fit_head
    from pastacore.classify.headfile import TrainedHead, write_head
    from pastacore.modelstore.store import ModelStore
    from pastacore.tasks import InlineRunner
    from pastaweb.app import PastaWebApp
    from pastaweb.files import DataFolder

    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(ihc[:128, :192]).save(data / "ihc.png")
    ckpt, cfg = write_case(tmp_path, "simclr")
    store = ModelStore(tmp_path / "store")
    from pastacore.families import read_model_config

    store.import_family_model(ckpt, read_model_config(cfg), name="ptcga-simclr")
    rng = np.random.default_rng(1)
    head = fit_head(rng.normal(size=(8, 64)), np.array([0, 1] * 4), ["normal", "tumour"])
    write_head(TrainedHead(head, {"classes": ["normal", "tumour"]}, {}, []), data / "head.pt")

    server = get_server("pasta-patchtcga-web-test", client_type="vue3")
    logic = PastaWebApp(server, DataFolder(data), tmp_path / "out", max_upload_mb=1, runner=InlineRunner()).logic
    pathology, session = logic.pathology, logic.session
    pathology.patches.store = store
    logic.load.load_file("ihc.png")
    assert session.data.status == "Loaded ihc.png." and session.volume.IsA("vtkMRMLVectorVolumeNode")
    assert pathology.data.encoders == ["ptcga-simclr"] and pathology.data.heads == ["head.pt"]
    pathology.data.head = "head.pt"
    pathology.on_head("head.pt")
    assert pathology.data.class_name == "tumour"
    pathology.data.tile = 64
    pathology.classify()
    assert "over 6 tiles" in pathology.data.result, session.data.status
    views = session.app.view_manager.get_slice_views()
    assert views and all(v.get_foreground_opacity() == 0.5 for v in views)
    composite = views[0]._logic.GetSliceCompositeNode()
    assert (
        composite.GetForegroundVolumeID() == pathology.heatmap.GetID()
        and composite.GetBackgroundVolumeID() == session.volume.GetID()
    )
    values = slicer.util.arrayFromVolume(logic.heatmap)[0]
    assert values.shape == (128, 192) and np.all((values > 0) & (values < 1))
