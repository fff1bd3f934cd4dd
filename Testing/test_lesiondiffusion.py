"""The LesionDiffusion backend (pastacore.diffusion), tested with seeded tiny networks on the CPU.

The released checkpoints are not available here: every test builds narrowed networks from
configs in the repository's YAML layout, writes them in the released checkpoint layout
(Lightning ``state_dict`` with ``model.*``, dot-free ``model_ema.*``, schedule buffers,
``first_stage_model.*``), and runs the real loading, sampling and synthesis code on them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import types
import zlib

import numpy as np
import pytest
import torch
from conftest import pasta, sphere_organ_ct

from pastacore.errors import PastaError
from pastacore.fileio import read_volume, write_volume
from pastacore.geometry.boxes import VoxelBox

CONTEXT = 32
UNET = "ldm.modules.diffusionmodules.openaimodel.UNetModel"


# -- tiny networks in the released layout --------------------------------------------------------


def vq_params(ch=16, n_embed=64):
    return {
        "embed_dim": 4,
        "n_embed": n_embed,
        "dims": 3,
        "is_conditional": False,
        "ddconfig": {
            "double_z": False,
            "z_channels": 4,
            "resolution": [24, 24, 24],
            "in_channels": 1,
            "out_ch": 1,
            "ch": ch,
            "ch_mult": [1, 1, 1],
            "sample_depth": [0],
            "num_res_blocks": 1,
            "attn_resolutions": [],
            "dropout": 0.0,
            "dims": 3,
            "attn_type": "none",
        },
    }


def lmnet_section(model_channels=8, image_size=(24, 24, 24)):
    return {
        "target": "inference.models.InferMaskDiffusion",
        "params": {
            "linear_start": 0.0015,
            "linear_end": 0.0195,
            "timesteps": 1000,
            "channels": 1,
            "image_size": list(image_size),
            "conditioning_key": "crossattn",
            "unet_config": {
                "target": UNET,
                "params": {
                    "image_size": 64,
                    "in_channels": 4,
                    "out_channels": 1,
                    "model_channels": model_channels,
                    "attention_resolutions": [4],
                    "num_res_blocks": 1,
                    "channel_mult": [1, 2, 4],
                    "num_head_channels": 32,
                    "use_checkpoint": True,
                    "use_fp16": False,
                    "use_spatial_transformer": True,
                    "context_dim": CONTEXT,
                },
            },
        },
    }


def linet_section(image_size=(12, 12, 12)):
    return {
        "target": "inference.models.InferInpaintingDiffusion_v2",
        "params": {
            "linear_start": 0.0015,
            "linear_end": 0.0195,
            "timesteps": 1000,
            "channels": 4,
            "image_size": list(image_size),
            "conditioning_key": "crossattn",
            "unet_config": {
                "target": UNET,
                "params": {
                    "image_size": 64,
                    "in_channels": 5,
                    "out_channels": 5,
                    "model_channels": 8,
                    "attention_resolutions": [4, 8],
                    "num_res_blocks": 1,
                    "channel_mult": [1, 2, 4],
                    "num_head_channels": 32,
                    "use_fp16": True,
                    "use_spatial_transformer": True,
                    "skip_context": True,
                    "context_dim": CONTEXT,
                },
            },
            "first_stage_config": {"target": "ldm.models.autoencoder.VQModelInterface", "params": vq_params()},
        },
    }


def vq_section():
    return {"target": "ldm.models.autoencoder.VQModel", "params": vq_params()}


def write_yaml(path, section):
    import yaml

    path.write_text(yaml.safe_dump({"model": section}), encoding="utf-8")
    return path


def schedule_buffers(timesteps=1000):
    betas = np.linspace(0.0015**0.5, 0.0195**0.5, timesteps, dtype=np.float64) ** 2
    abar = np.cumprod(1 - betas)
    return {
        "betas": torch.tensor(betas, dtype=torch.float32),
        "alphas_cumprod": torch.tensor(abar, dtype=torch.float32),
        "alphas_cumprod_prev": torch.tensor(np.append(1.0, abar[:-1]), dtype=torch.float32),
    }


def seeded(module, seed):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.05)
    return module


def released_layout(unet, ema_shift=0.01, vq=None):
    """A Lightning state dict as the released LMNet/LINet files hold it."""
    state = {f"model.{k}": v.clone() for k, v in unet.state_dict().items()}
    state.update({f"model_ema.{k.replace('.', '')}": v.clone() + ema_shift for k, v in unet.state_dict().items()})
    state.update(
        {"model_ema.decay": torch.tensor(0.9999), "model_ema.num_updates": torch.tensor(1234, dtype=torch.int)},
        **schedule_buffers(),
    )
    if vq is not None:
        state.update({f"first_stage_model.{k}": v.clone() for k, v in vq.state_dict().items()})
    return state


def save_lightning(path, state):
    torch.save({"state_dict": state, "epoch": 3, "global_step": 1000, "pytorch-lightning_version": "1.7.7"}, path)
    return path


def make_models(folder, seed=0, with_yaml=True):
    """LMNet.ckpt, LINet.ckpt (with its VQ), VQ.ckpt and their configs; returns the networks (EMA weights)."""
    from pastacore.diffusion.config import load_config
    from pastacore.diffusion.unet import DiffusionUNet
    from pastacore.diffusion.vq import VQModel

    folder.mkdir(parents=True, exist_ok=True)
    lm_spec, li_spec = load_config(lmnet_section()), load_config(linet_section())
    lmnet = seeded(DiffusionUNet(lm_spec.unet), seed)
    linet = seeded(DiffusionUNet(li_spec.unet), seed + 1)
    vq = seeded(VQModel(li_spec.first_stage), seed + 2)
    save_lightning(folder / "LMNet.ckpt", released_layout(lmnet))
    save_lightning(folder / "LINet.ckpt", released_layout(linet, vq=vq))
    vq_state = {k: v.clone() for k, v in vq.state_dict().items()}
    vq_state["loss.discriminator.main.0.weight"] = torch.zeros(2, 1, 4, 4, 4)  # the training loss, not used
    save_lightning(folder / "VQ.ckpt", vq_state)
    if with_yaml:
        write_yaml(folder / "LMNet.yaml", lmnet_section())
        write_yaml(folder / "LINet.yaml", linet_section())
        write_yaml(folder / "VQ.yaml", vq_section())
    return lmnet, linet, vq


def fake_text(texts):
    """A deterministic stand-in for BiomedCLIP: one CONTEXT-d row per text."""
    rows = [torch.randn(CONTEXT, generator=torch.Generator().manual_seed(zlib.crc32(t.encode()))) for t in texts]
    return torch.stack(rows)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ld-models")
    make_models(folder)
    return folder


# -- configs and networks -------------------------------------------------------------------------


def test_released_configs_build_the_published_networks():
    """The manifest's record of the repository's YAML builds LMNet 2.53 M, LINet 187.5 M and VQ 7.0 M parameters."""
    from pastacore.diffusion.config import attention_widths, load_config
    from pastacore.diffusion.sources import released_config
    from pastacore.diffusion.unet import DiffusionUNet
    from pastacore.diffusion.vq import VQModel

    def count(module):
        return sum(p.numel() for p in module.parameters())

    lm, li, vq = (load_config(released_config(r)) for r in ("lmnet", "linet", "vq"))
    with torch.device("meta"):
        assert round(count(DiffusionUNet(lm.unet)) / 1e6, 2) == 2.53
        assert round(count(DiffusionUNet(li.unet)) / 1e6, 1) == 187.5
        assert round(count(VQModel(vq)) / 1e6, 1) == 7.0
    assert lm.kind == "mask" and lm.image_size == (64, 152, 152) and lm.cond_channels == 3 and not lm.fp16_schedule
    assert li.kind == "inpaint" and li.unet.skip_context and li.fp16_schedule and li.first_stage == vq
    assert attention_widths(lm.unet) == [64, 64] and lm.unet.heads(64) == (2, 32)
    assert vq.factor == 2 and li.cond_channels == 1


def test_config_is_followed_and_unsupported_options_named(tmp_path):
    from pastacore.diffusion.config import load_config
    from pastacore.diffusion.unet import DiffusionUNet

    narrow = load_config(write_yaml(tmp_path / "m.yaml", lmnet_section(model_channels=8)))
    wide = load_config(lmnet_section(model_channels=16))
    assert DiffusionUNet(narrow.unet).out[2].in_channels == 8 and DiffusionUNet(wide.unet).out[2].in_channels == 16
    bad = lmnet_section()
    bad["params"]["unet_config"]["params"]["use_scale_shift_norm"] = True
    with pytest.raises(PastaError, match="use_scale_shift_norm"):
        load_config(bad)
    skip = linet_section()
    skip["params"]["unet_config"]["params"]["context_dim"] = 64
    with pytest.raises(PastaError, match="skip_context .* context_dim"):
        load_config(skip)
    with pytest.raises(PastaError, match="no 'model"):
        load_config({"something": 1})
    (tmp_path / "broken.yaml").write_text("model: [unclosed")
    with pytest.raises(PastaError, match="not valid YAML"):
        load_config(tmp_path / "broken.yaml")


def test_strict_loading_of_the_released_layout_with_ema_mangling(tmp_path):
    from pastacore.diffusion.networks import load_network
    from pastacore.diffusion.weights import read_state

    lmnet, linet, vq = make_models(tmp_path)
    state = read_state(tmp_path / "LMNet.ckpt")
    assert "model_ema.input_blocks00weight" in state and "model.input_blocks.0.0.weight" in state
    ema = load_network(tmp_path / "LMNet.ckpt", tmp_path / "LMNet.yaml")
    raw = load_network(tmp_path / "LMNet.ckpt", tmp_path / "LMNet.yaml", weights="model")
    for name, value in lmnet.state_dict().items():
        assert torch.equal(raw.unet.state_dict()[name], value)
        assert torch.allclose(ema.unet.state_dict()[name], value + 0.01)
    assert ema.reports[0].weights == "ema" and ema.reports[0].tensors == len(lmnet.state_dict())
    assert np.array_equal(ema.alphas_cumprod, schedule_buffers()["alphas_cumprod"].numpy())
    li = load_network(tmp_path / "LINet.ckpt", tmp_path / "LINet.yaml")
    assert [r.prefix for r in li.reports] == ["model_ema.", "first_stage_model."]
    assert all(torch.equal(li.vq.state_dict()[k], v) for k, v in vq.state_dict().items())
    alone = load_network(tmp_path / "VQ.ckpt", tmp_path / "VQ.yaml")
    assert alone.reports[0].ignored == {"loss": 1}

    def altered(change, name):
        state = read_state(tmp_path / "LMNet.ckpt")
        change(state)
        save_lightning(tmp_path / name, state)
        return tmp_path / name

    missing = altered(lambda s: s.pop("model_ema.output_blocks00in_layers2weight"), "missing.ckpt")
    with pytest.raises(PastaError, match="lacks 1 tensor"):
        load_network(missing, tmp_path / "LMNet.yaml")
    extra = altered(lambda s: s.update({"model_ema.input_blocks99weight": torch.zeros(1)}), "extra.ckpt")
    with pytest.raises(PastaError, match="no place in the network"):
        load_network(extra, tmp_path / "LMNet.yaml")
    with pytest.raises(PastaError, match="other shapes"):
        load_network(tmp_path / "LMNet.ckpt", lmnet_section(model_channels=16))
    no_ema = altered(lambda s: [s.pop(k) for k in list(s) if k.startswith("model_ema.")], "no_ema.ckpt")
    assert load_network(no_ema, tmp_path / "LMNet.yaml").reports[0].weights == "model"
    with pytest.raises(PastaError, match="no EMA weights"):
        load_network(no_ema, tmp_path / "LMNet.yaml", weights="ema")
    without_vq = altered(lambda s: None, "no_vq.ckpt")  # an LMNet file read with the LINet config
    with pytest.raises(PastaError, match="lacks|other shapes"):
        load_network(without_vq, tmp_path / "LINet.yaml")


class _AttributeDict(dict):
    pass


class _DictConfig:
    def __init__(self, content):
        self._content = content


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def _save_as_metadata(path, payload, classes):
    """torch.save ``payload`` with test classes posing as Lightning / OmegaConf classes."""
    added, saved = [], {}
    try:
        for cls, full_name in classes:
            module, name = full_name.rsplit(".", 1)
            parts = module.split(".")
            for i in range(1, len(parts) + 1):
                package = ".".join(parts[:i])
                if package not in sys.modules:
                    sys.modules[package] = types.ModuleType(package)
                    added.append(package)
            setattr(sys.modules[module], name, cls)
            saved[cls] = (cls.__module__, cls.__qualname__)
            cls.__module__, cls.__qualname__ = module, name
        torch.save(payload, path)
    finally:
        for cls, (module, name) in saved.items():
            cls.__module__, cls.__qualname__ = module, name
        for package in added:
            sys.modules.pop(package, None)


def test_lightning_metadata_is_inert_and_code_still_refused(tmp_path):
    from pastacore.networks.checkpoints import load_checkpoint

    classes = [
        (_AttributeDict, "pytorch_lightning.utilities.parsing.AttributeDict"),
        (_DictConfig, "omegaconf.dictconfig.DictConfig"),
    ]
    payload = {"state_dict": {"w": torch.ones(2)}, "hyper_parameters": _AttributeDict(lr=1e-4), "cfg": _DictConfig({"a": [1, 2]})}
    _save_as_metadata(tmp_path / "a.ckpt", payload, classes)
    marker = tmp_path / "pwned"
    _save_as_metadata(tmp_path / "evil.ckpt", dict(payload, evil=_Exploit(marker)), classes)
    with pytest.raises(PastaError, match="refusing"):
        load_checkpoint(tmp_path / "a.ckpt")
    loaded = load_checkpoint(tmp_path / "a.ckpt", metadata_globals=True)
    assert torch.equal(loaded["state_dict"]["w"], torch.ones(2)) and loaded["hyper_parameters"] == {"lr": 1e-4}
    assert not hasattr(loaded["cfg"], "_content")  # the placeholder keeps nothing
    with pytest.raises(PastaError, match="refusing"):
        load_checkpoint(tmp_path / "evil.ckpt", metadata_globals=True)
    assert not marker.exists()


def test_forward_shapes_determinism_and_linet_text_skip(tiny):
    from pastacore.diffusion.networks import load_network

    lm = load_network(tiny / "LMNet.ckpt", tiny / "LMNet.yaml")
    li = load_network(tiny / "LINet.ckpt", tiny / "LINet.yaml")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 8, 12, 16, generator=g)
    t = torch.tensor([10, 500])
    c1, c2 = torch.randn(2, 5, CONTEXT, generator=g), torch.randn(2, 5, CONTEXT, generator=g)
    with torch.inference_mode():
        a, b, other = lm.unet(x, t, c1), lm.unet(x, t, c1), lm.unet(x, t, c2)
        z = torch.randn(1, 5, 8, 8, 8, generator=g)
        l1, l2 = li.unet(z, t[:1], c1[:1]), li.unet(z, t[:1], c2[:1, :3])
        l0 = li.unet(z, t[:1], None)
        quant, indices, decoded = li.vq(torch.rand(1, 1, 16, 16, 16, generator=g))
    assert a.shape == (2, 1, 8, 12, 16) and torch.equal(a, b)
    assert not torch.allclose(a, other)  # LMNet listens to the text
    assert l1.shape == (1, 5, 8, 8, 8) and torch.equal(l1, l2) and torch.equal(l1, l0)  # LINet's skip_context
    assert quant.shape == (1, 4, 8, 8, 8) and indices.shape == (1, 8, 8, 8) and decoded.shape == (1, 1, 16, 16, 16)
    assert torch.equal(quant, li.vq.quantize.embedding.weight.detach()[indices].movedim(-1, 1))


# -- schedule and samplers ------------------------------------------------------------------------


def test_ddim_schedule_follows_the_public_numerics():
    from pastacore.diffusion.schedule import ddim_schedule, linear_alphas_cumprod

    abar = linear_alphas_cumprod(1000, 0.0015, 0.0195)
    betas = np.linspace(0.0015**0.5, 0.0195**0.5, 1000) ** 2
    assert abar.dtype == np.float32 and np.allclose(abar, np.cumprod(1 - betas), rtol=1e-6)
    s = ddim_schedule(abar, 200, 1.0)
    assert len(s) == 200 and s.timesteps[0] == 996 and s.timesteps[-1] == 1 and np.all(np.diff(s.timesteps) == -5)
    a, prev = abar[s.timesteps].astype(np.float64), np.append(abar[s.timesteps[1:]], abar[0])
    assert np.allclose(s.alphas, a) and np.allclose(s.alphas_prev, prev)
    assert np.allclose(s.sigmas, np.sqrt((1 - prev) / (1 - a) * (1 - a / prev)))
    assert np.allclose(ddim_schedule(abar, 50, 0.0).sigmas, 0) and len(ddim_schedule(abar, 400, 1.0)) == 500
    with pytest.raises(PastaError, match="300 DDIM steps do not fit"):
        ddim_schedule(abar, 300, 1.0)
    half = ddim_schedule(abar, 200, 1.0, fp16=True)
    assert np.array_equal(half.alphas, abar.astype(np.float16).astype(np.float64)[s.timesteps])
    with pytest.raises(PastaError, match="between 1 and 500"):
        ddim_schedule(abar, 1000, 1.0)


class _RecordingUNet(torch.nn.Module):
    """eps = 0.1 * x_t (first channels) + 0.01 * t, recording every input."""

    def __init__(self, out_channels):
        super().__init__()
        self.out_channels, self.inputs = out_channels, []

    def forward(self, x, t, context=None):
        self.inputs.append(x.clone())
        eps = 0.1 * x[:, :1].repeat(1, self.out_channels, 1, 1, 1) + 0.01 * t.float()[:, None, None, None, None]
        return eps


def test_ddim_steps_match_the_published_update_formula():
    from pastacore.diffusion.sampler import NoiseSource, ddim_step, sample
    from pastacore.diffusion.schedule import ddim_schedule, linear_alphas_cumprod

    g = torch.Generator().manual_seed(1)
    x, eps, noise = (torch.randn(1, 1, 4, 4, 4, generator=g) for _ in range(3))
    a_t, a_prev, sigma = 0.5, 0.7, 0.2
    step, pred = ddim_step(x, eps, a_t, a_prev, sigma, np.sqrt(1 - a_t), noise)
    x64, e64, n64 = x.double(), eps.double(), noise.double()
    pred64 = (x64 - np.sqrt(1 - a_t) * e64) / np.sqrt(a_t)
    assert torch.allclose(pred.double(), pred64, atol=1e-6)
    assert torch.allclose(step.double(), np.sqrt(a_prev) * pred64 + np.sqrt(1 - a_prev - sigma**2) * e64 + sigma * n64, atol=1e-6)

    schedule = ddim_schedule(linear_alphas_cumprod(1000, 0.0015, 0.0195), 10, 1.0)
    noises = torch.randn(len(schedule), 1, 1, 4, 4, 4, generator=g)
    x_T, cond = torch.randn(1, 1, 4, 4, 4, generator=g), torch.randn(1, 3, 4, 4, 4, generator=g)
    net = _RecordingUNet(1)
    result = sample(net, "mask", schedule, x_T, None, cond=cond, noise=NoiseSource(x_T.shape, noise=noises), log_every=4)
    manual = x_T.double()
    for i in range(len(schedule)):
        assert torch.equal(net.inputs[i][:, 1:], cond)  # LMNet sees cat(x_t, seg, target, box)
        e = 0.1 * manual + 0.01 * float(schedule.timesteps[i])
        a, p, s = schedule.alphas[i], schedule.alphas_prev[i], schedule.sigmas[i]
        manual = np.sqrt(p) * (manual - np.sqrt(1 - a) * e) / np.sqrt(a) + np.sqrt(1 - p - s**2) * e + s * noises[i]
    assert torch.allclose(result.samples.double(), manual, atol=1e-5)
    assert len(result.x_inter) == 1 + 4 and torch.equal(result.x_inter[0], x_T)  # x_T, then indices 9 (first), 8, 4, 0


def test_inpainting_reimposes_the_known_latent_outside_the_mask():
    from pastacore.diffusion.sampler import NoiseSource, sample
    from pastacore.diffusion.schedule import ddim_schedule, linear_alphas_cumprod

    g = torch.Generator().manual_seed(2)
    x0, x_T = torch.randn(1, 4, 4, 4, 4, generator=g), torch.randn(1, 4, 4, 4, 4, generator=g)
    mask = torch.zeros(1, 1, 4, 4, 4)
    mask[..., 1:3, 1:3, 1:3] = 1
    net = _RecordingUNet(5)
    schedule = ddim_schedule(linear_alphas_cumprod(1000, 0.0015, 0.0195), 8, 1.0)
    result = sample(net, "inpaint", schedule, x_T, None, x0=x0, mask=mask, channels=4, noise=NoiseSource(x_T.shape, 5))
    outside = (mask == 0).expand_as(x0)
    for seen in net.inputs:
        assert torch.equal(seen[:, :4][outside], x0[outside]) and torch.equal(seen[:, 4:], mask)
    assert result.samples.shape == (1, 5, 4, 4, 4) and torch.equal(result.samples[:, 4:], mask)
    assert torch.equal(result.samples[:, :4][outside], x0[outside])
    assert not torch.allclose(result.samples[:, :4][~outside], x0[~outside])


def test_precision_follows_the_config_on_cuda_and_is_fp32_on_the_cpu():
    from pastacore.diffusion.precision import autocast, resolve_precision

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_precision("auto", cpu, True) == "fp32"
    with pytest.raises(PastaError, match="fp16 needs a CUDA GPU"):
        resolve_precision("fp16", cpu, False)
    assert resolve_precision("auto", cuda, True) == "fp16" and resolve_precision("auto", cuda, False) == "fp32"
    assert resolve_precision("fp32", cuda, True) == "fp32"
    with pytest.raises(PastaError, match="unknown precision"):
        resolve_precision("int8", cuda, True)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a CPU-only torch warns that CUDA autocast would be disabled
        assert isinstance(autocast(cuda, "fp16"), torch.autocast)
    assert not isinstance(autocast(cpu, "fp16"), torch.autocast)


# -- pieces of the pipeline -----------------------------------------------------------------------


def test_hu_mapping_is_piecewise_linear_and_clipped():
    from pastacore.diffusion.intensity import hu_to_unit, unit_to_hu

    hu = np.array([-2000, -1000, -600, -200, 0, 200, 600, 1000, 3000], float)
    assert np.allclose(hu_to_unit(hu), [0, 0, 0.1, 0.2, 0.5, 0.8, 0.9, 1, 1])
    assert np.allclose(unit_to_hu([-0.5, 0, 0.1, 0.5, 0.9, 1, 2]), [-1000, -1000, -600, 0, 600, 1000, 1000])
    inside = np.linspace(-1000, 1000, 101)
    assert np.allclose(unit_to_hu(hu_to_unit(inside)), inside, atol=1e-3)


def test_mask_threshold_search_and_crop_orientation():
    from pastacore.diffusion import crops
    from pastacore.diffusion.masks import THRESHOLDS, select_mask

    assert np.allclose(THRESHOLDS, [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
    soft = np.zeros((10, 10, 10), np.float32)
    soft[2:4, 2:4, 2:4] = 0.95  # 8 voxels above every threshold
    soft[2:6, 2:6, 2:6][soft[2:6, 2:6, 2:6] == 0] = 0.55  # 64 voxels above 0.5
    soft[8, 8, 8] = 0.99  # a separate speck
    mask, threshold = select_mask(soft, 60)
    assert threshold == 0.5 and mask.sum() == 64 and not mask[8, 8, 8]
    assert select_mask(soft, 8)[1] == 0.9
    grid = crops.working_grid((10.0, -4.0, 2.0), (4, 6, 8))
    assert np.allclose(grid.index_to_lps(np.array([3.5, 2.5, 1.5])), (10.0, -4.0, 2.0))
    array = np.arange(4 * 6 * 8).reshape(4, 6, 8)
    assert np.array_equal(crops.to_model(array)[:, 0], array[:, -1])  # posterior first -> anterior first
    assert np.array_equal(crops.from_model(crops.to_model(array)), array)


def test_text_values_per_network_and_the_embedding_cache(tmp_path):
    from pastacore.diffusion.text import EmbeddingCache, TextConditioner, linet_attributes, lmnet_attributes

    attrs = {
        "enhancement status": "enhanced CT,",
        "lesion location": "5",
        "shape": "irregular,",
        "size": "[[28 29 26]] pixel,",
        "density": "low density lesion,",
        "density variations": "heterogeneous,",
        "CT value": "Mean density of the lesion region is approximately 57 HU,",
        "surface characteristics": "ill-defined margin,",
        "specific features": "",
    }
    lm = lmnet_attributes(attrs, "liver", "within the parenchymal organ,")
    assert list(lm) == ["enhancement status", "lesion location", "shape", "surface characteristics", "cavity"]
    assert lm["lesion location"] == "liver"
    li = linet_attributes(attrs, "liver")
    assert "size" not in li and li["CT value"].endswith("57 HU,") and li["lesion location"] == "liver"
    calls = []

    def encoder(texts):
        calls.append(list(texts))
        return fake_text(texts)

    cache = tmp_path / "emb.pt"
    text = TextConditioner(lambda: encoder, EmbeddingCache(cache))
    context = text.context(lm)
    assert context.shape == (1, 5, CONTEXT) and torch.equal(context[0], fake_text(list(lm.values())))
    text.context(li)
    assert calls == [list(lm.values()), [v for v in li.values() if v not in lm.values()]]
    again = TextConditioner(None, EmbeddingCache(cache), "no encoder")
    assert torch.equal(again.context(lm), context)  # from the file, without any encoder
    with pytest.raises(PastaError, match="no encoder"):
        again.context({"x": "never seen"})


def _tiny_biomedclip(folder):
    """An open_clip-format folder with a 2-layer BERT (random weights) and a word-piece vocabulary."""
    transformers = pytest.importorskip("transformers")
    folder.mkdir()
    words = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        ",",
        "low",
        "density",
        "lesion",
        "liver",
        "ct",
        "enhanced",
        "irregular",
        "##s",
        "hu",
        "57",
    ]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "tokenizer_class": "BertTokenizer"}))
    bert = transformers.BertConfig(
        vocab_size=len(words),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    model = transformers.BertModel(bert, add_pooling_layer=False)
    state = {f"text.transformer.{k}": v for k, v in model.state_dict().items()}
    state["text.proj.0.weight"], state["text.proj.2.weight"] = torch.randn(32, 32), torch.randn(CONTEXT, 32)
    state["visual.trunk.patch_embed.proj.weight"] = torch.zeros(1)  # the image tower, not used
    torch.save(state, folder / "open_clip_pytorch_model.bin")
    (folder / "open_clip_config.json").write_text(
        json.dumps(
            {
                "model_cfg": {
                    "embed_dim": CONTEXT,
                    "text_cfg": {
                        "hf_model_name": "config.json",
                        "hf_proj_type": "mlp",
                        "hf_pooler_type": "cls_last_hidden_state_pooler",
                        "context_length": 16,
                    },
                }
            }
        )
    )
    return folder


def test_biomedclip_text_tower_from_an_open_clip_folder(tmp_path):
    from pastacore.diffusion.biomedclip import BiomedCLIPText
    from pastacore.modelstore.store import ModelStore

    folder = _tiny_biomedclip(tmp_path / "BiomedCLIP")
    encoder = BiomedCLIPText(folder)
    texts = ["low density lesion,", "enhanced CT,", "low density lesion,"]
    out = encoder(texts)
    assert out.shape == (3, CONTEXT) and out.dtype == torch.float32
    assert torch.equal(out[0], out[2]) and not torch.allclose(out[0], out[1])
    assert torch.allclose(encoder(["low   density lesion,"])[0], out[0])  # whitespace is cleaned
    model = ModelStore(tmp_path / "store").import_file(folder)
    assert model.name == "biomedclip" and "open_clip_pytorch_model.bin" in model.files
    (folder / "open_clip_pytorch_model.bin").unlink()
    with pytest.raises(PastaError, match="lacks open_clip_pytorch_model.bin"):
        BiomedCLIPText(folder)


# -- the backend ----------------------------------------------------------------------------------


def small_ct(n=40, spacing=(1.0, 1.0, 1.0)):
    """A body with a spherical 'liver' (label 1) and mild noise; CT-like int16."""
    return sphere_organ_ct(n, spacing, organ_radius=0.38, seed=3)


def synth_diffusion(tiny, backend="lesiondiffusion", seed=4, volume=None, organ=None, box=None, **options):
    from pastacore.synthesis import synthesize_lesion

    if volume is None:
        volume, organ = small_ct()
    box = box or VoxelBox((13, 13, 13), (27, 27, 27))
    options = dict(dict(models=str(tiny), text_encoder=fake_text, steps=4, device="cpu"), **options)
    result = synthesize_lesion(
        volume=volume,
        organ_labels=organ,
        organ_names={1: "liver"},
        roi_box=box,
        lesion_type="liver_tumor",
        attributes="12 mm irregular hypodense liver lesion",
        seed=seed,
        backend=backend,
        backend_options=options,
    )
    return volume, box, result


@pytest.mark.parametrize("backend", ["lesiondiffusion", "lesiondiffusion-hybrid"])
def test_backend_end_to_end_with_tiny_weights(tiny, backend):
    volume, box, result = synth_diffusion(tiny, backend)
    lesion = result.labels.array == 2
    inside = np.zeros(lesion.shape, bool)
    inside[box.slices] = True
    assert lesion.any() and not (lesion & ~inside).any()  # the mask is inside the box
    changed = result.image.array != volume.array
    assert changed.any() and not (changed & ~inside).any()  # nothing changed outside it
    assert result.image.array.dtype == volume.array.dtype
    assert result.report["backend"] == backend
    render = result.report["render"]
    assert render["mask_source"] == ("lmnet" if backend == "lesiondiffusion" else "procedural")
    assert render["steps"] == 4 and render["weights"]["linet"] == "ema" and render["organ_ts_v1"] == 5
    assert render["linet_text"][1] == "liver"  # the lesion location is the organ's name
    if backend == "lesiondiffusion":
        assert render["lmnet_text"][-1] == "within the parenchymal organ," and render["lmnet_threshold"] in np.round(
            np.arange(0.9, 0.2, -0.1), 2
        )
    again = synth_diffusion(tiny, backend)[2]
    assert np.array_equal(again.image.array, result.image.array)  # seeded: the same lesion again


def test_backend_on_an_anisotropic_grid_keeps_outside_voxels(tiny):
    volume, organ = small_ct(n=32, spacing=(1.2, 1.2, 2.0))
    box = VoxelBox((10, 8, 8), (22, 24, 24))
    _, _, result = synth_diffusion(tiny, volume=volume, organ=organ, box=box)
    outside = np.ones(volume.array.shape, bool)
    outside[box.slices] = False
    assert np.array_equal(result.image.array[outside], volume.array[outside])
    assert (result.labels.array == 2).any()


def test_dataset_with_the_hybrid_backend(tiny, tmp_path):
    from pastacore.actions.dataset import generate_dataset

    volume, organ = small_ct()
    write_volume(volume, tmp_path / "ct.nii.gz")
    write_volume(organ, tmp_path / "ct_seg.nii.gz")
    summary = generate_dataset(
        backgrounds_dir=tmp_path / "ct.nii.gz",
        organ_masks=[tmp_path / "ct_seg.nii.gz"],
        output_dir=tmp_path / "ds",
        count=1,
        lesion_type="liver_cyst",
        seed=2,
        backend="lesiondiffusion-hybrid",
        backend_options=dict(models=str(tiny), text_encoder=fake_text, steps=2, device="cpu"),
    )
    assert summary["written"] == 1 and not summary["failed"]
    report = json.loads(next((tmp_path / "ds").rglob("report.json")).read_text())
    assert report["backend"] == "lesiondiffusion-hybrid" and report["render"]["steps"] == 2


def test_backend_refuses_clearly_before_any_work(tmp_path, tiny):
    from pastacore.synthesis.backends import backend_choices, get_backend

    with pytest.raises(
        PastaError,
        match=r"lesiondiffusion backend is unavailable: LMNet.ckpt, LINet.ckpt, the "
        r"BiomedCLIP text encoder not found",
    ):
        get_backend("lesiondiffusion", models=str(tmp_path), device="cpu")
    released = tmp_path / "released"  # checkpoints present but no configs: the released sizes apply
    released.mkdir()
    for name in ("LMNet.ckpt", "LINet.ckpt"):
        (released / name).write_bytes((tiny / name).read_bytes())
    with pytest.raises(
        PastaError,
        match=r"would take about .* per lesion on this CPU \(LMNet 200 steps .*"
        r'"allow slow" setting',
    ):
        get_backend("lesiondiffusion", models=str(released), text_encoder=fake_text, device="cpu")
    assert (
        get_backend("lesiondiffusion", models=str(released), text_encoder=fake_text, device="cpu", allow_slow=True).name
        == "lesiondiffusion"
    )
    with pytest.raises(PastaError, match="between 1 and 500"):
        get_backend("lesiondiffusion", models=str(tiny), text_encoder=fake_text, device="cpu", steps=800)
    choices = {c["name"]: c for c in backend_choices(models=str(tiny), text_encoder=fake_text, device="cpu")}
    assert list(choices) == ["procedural", "lesiondiffusion", "lesiondiffusion-hybrid"]
    assert all(c["available"] for c in choices.values())


# -- command line ---------------------------------------------------------------------------------


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "pastacore.cli.main", *map(str, args)], capture_output=True, text=True)


def test_cli_forward_round_trips(tiny, tmp_path):
    from pastacore.diffusion.networks import load_network

    g = torch.Generator().manual_seed(5)
    lm_in = {
        "x_t": torch.randn(1, 1, 8, 8, 8, generator=g),
        "t": torch.tensor([321]),
        "context": torch.randn(1, 6, CONTEXT, generator=g),
        "cond": torch.rand(1, 3, 8, 8, 8, generator=g),
    }
    torch.save(lm_in, tmp_path / "lm_in.pt")
    assert (
        pasta(
            "models",
            "forward",
            tiny / "LMNet.ckpt",
            tmp_path / "lm_in.pt",
            tmp_path / "lm_out.pt",
            "--config",
            tiny / "LMNet.yaml",
        )
        == 0
    )
    out = torch.load(tmp_path / "lm_out.pt", weights_only=True)
    net = load_network(tiny / "LMNet.ckpt", tiny / "LMNet.yaml", weights="model")  # apply_model's own weights
    with torch.inference_mode():
        expected = net.unet(torch.cat([lm_in["x_t"], lm_in["cond"]], 1), lm_in["t"], lm_in["context"])
    assert torch.equal(out["eps"], expected)
    assert (
        pasta(
            "models",
            "forward",
            tiny / "LMNet.ckpt",
            tmp_path / "lm_in.pt",
            tmp_path / "ema.pt",
            "--config",
            tiny / "LMNet.yaml",
            "--weights",
            "ema",
        )
        == 0
    )
    assert not torch.equal(torch.load(tmp_path / "ema.pt", weights_only=True)["eps"], expected)
    li_in = {
        "x_t": torch.randn(1, 4, 8, 8, 8, generator=g),
        "t": torch.tensor([7]),
        "context": torch.randn(1, 3, CONTEXT, generator=g),
        "cond": torch.ones(1, 1, 8, 8, 8),
    }
    torch.save(li_in, tmp_path / "li_in.pt")
    assert (
        pasta(
            "models", "forward", tiny / "LINet.ckpt", tmp_path / "li_in.pt", tmp_path / "li.pt", "--config", tiny / "LINet.yaml"
        )
        == 0
    )
    assert torch.load(tmp_path / "li.pt", weights_only=True)["eps"].shape == (1, 5, 8, 8, 8)
    torch.save({"x": torch.rand(1, 1, 16, 16, 16, generator=g)}, tmp_path / "vq_in.pt")
    assert (
        pasta("models", "forward", tiny / "VQ.ckpt", tmp_path / "vq_in.pt", tmp_path / "vq.pt", "--config", tiny / "VQ.yaml") == 0
    )
    vq = torch.load(tmp_path / "vq.pt", weights_only=True)
    assert vq["quant"].shape == (1, 4, 8, 8, 8) and vq["indices"].shape == (1, 8, 8, 8)
    assert vq["decoded"].shape == (1, 1, 16, 16, 16)
    del lm_in["cond"]
    torch.save(lm_in, tmp_path / "bad.pt")
    bad = run_cli(
        "models", "forward", tiny / "LMNet.ckpt", tmp_path / "bad.pt", tmp_path / "x.pt", "--config", tiny / "LMNet.yaml"
    )
    assert bad.returncode == 2 and bad.stderr.strip() == "error: bad.pt lacks 'cond'"
    assert not (tmp_path / "x.pt").exists()


def test_cli_sample_round_trips(tiny, tmp_path):
    from pastacore.diffusion.networks import load_network
    from pastacore.diffusion.sampler import NoiseSource, sample

    g = torch.Generator().manual_seed(6)
    x_T = torch.randn(1, 4, 8, 8, 8, generator=g)
    mask = torch.zeros(1, 1, 8, 8, 8)
    mask[..., 2:6, 2:6, 3:6] = 1
    data = {
        "x_T": x_T,
        "context": torch.randn(1, 3, CONTEXT, generator=g),
        "ddim_steps": 5,
        "eta": 1.0,
        "x0": torch.randn(1, 4, 8, 8, 8, generator=g),
        "mask": mask,
        "noise": torch.randn(5, 1, 4, 8, 8, 8, generator=g),
    }
    torch.save(data, tmp_path / "in.pt")
    assert (
        pasta("models", "sample", tiny / "LINet.ckpt", tmp_path / "in.pt", tmp_path / "out.pt", "--config", tiny / "LINet.yaml")
        == 0
    )
    out = torch.load(tmp_path / "out.pt", weights_only=True)
    net = load_network(tiny / "LINet.ckpt", tiny / "LINet.yaml", with_vq=False)
    expected = sample(
        net.unet,
        "inpaint",
        net.schedule(5, 1.0),
        x_T,
        data["context"],
        x0=data["x0"],
        mask=mask,
        channels=4,
        noise=NoiseSource(x_T.shape, noise=data["noise"]),
    )
    assert torch.equal(out["samples"], expected.samples) and out["samples"].shape == (1, 5, 8, 8, 8)
    assert out["x_inter"].shape == (3, 1, 4, 8, 8, 8)
    outside = (mask == 0).expand_as(x_T)
    assert torch.equal(out["samples"][:, :4][outside], data["x0"][outside])
    lm = {
        "x_T": torch.randn(1, 1, 8, 8, 8, generator=g),
        "context": torch.randn(1, 4, CONTEXT, generator=g),
        "ddim_steps": 2,
        "eta": 0.0,
        "cond": torch.rand(1, 3, 8, 8, 8, generator=g),
    }
    torch.save(lm, tmp_path / "lm.pt")
    assert (
        pasta(
            "models", "sample", tiny / "LMNet.ckpt", tmp_path / "lm.pt", tmp_path / "lm_out.pt", "--config", tiny / "LMNet.yaml"
        )
        == 0
    )
    first = torch.load(tmp_path / "lm_out.pt", weights_only=True)["samples"]
    assert (
        pasta(
            "models",
            "sample",
            tiny / "LMNet.ckpt",
            tmp_path / "lm.pt",
            tmp_path / "lm_out.pt",
            "--config",
            tiny / "LMNet.yaml",
            "--overwrite",
            "--seed",
            "9",
        )
        == 0
    )
    assert torch.equal(torch.load(tmp_path / "lm_out.pt", weights_only=True)["samples"], first)  # eta 0: no noise
    data["noise"] = data["noise"][:2]
    torch.save(data, tmp_path / "short.pt")
    bad = run_cli(
        "models", "sample", tiny / "LINet.ckpt", tmp_path / "short.pt", tmp_path / "o.pt", "--config", tiny / "LINet.yaml"
    )
    assert bad.returncode == 2 and "'noise' must be (steps=5" in bad.stderr


def test_cli_synth_with_the_lesiondiffusion_backend(tiny, tmp_path):
    from pastacore.cli.main import main

    models = tmp_path / "models"
    models.mkdir()
    for name in ("LMNet.ckpt", "LINet.ckpt", "LMNet.yaml", "LINet.yaml"):
        (models / name).write_bytes((tiny / name).read_bytes())
    _tiny_biomedclip(models / "BiomedCLIP")
    volume, organ = small_ct()
    write_volume(volume, tmp_path / "ct.nii.gz")
    write_volume(organ, tmp_path / "organ.nii.gz")
    outs = [tmp_path / n for n in ("img.nii.gz", "mask.nii.gz", "report.json")]
    args = [
        "synth",
        str(tmp_path / "ct.nii.gz"),
        "--box-ijk",
        "13,13,13,26,26,26",
        "--attributes",
        "12 mm hypodense liver lesion",
        "--organ-mask",
        str(tmp_path / "organ.nii.gz"),
        "--seed",
        "2",
        "--out-image",
        str(outs[0]),
        "--out-mask",
        str(outs[1]),
        "--out-report",
        str(outs[2]),
        "--backend",
        "lesiondiffusion",
        "--steps",
        "4",
        "--device",
        "cpu",
        "--ld-models",
        str(models),
    ]
    home = tmp_path / "home"
    env_home = {"PASTA_HOME": str(home)}
    import os

    old = {k: os.environ.get(k) for k in env_home}
    os.environ.update(env_home)
    try:
        assert main(args) == 0
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    report = json.loads(outs[2].read_text())
    assert report["backend"] == "lesiondiffusion" and report["render"]["steps"] == 4
    assert 2 in np.unique(read_volume(outs[1], is_label=True).array)
    assert list(home.glob("text-embeddings/*.pt"))  # the attribute embeddings were cached
    no_models = run_cli(*args[:-1], str(tmp_path / "empty"), "--overwrite")
    assert no_models.returncode == 2 and "does not exist" in no_models.stderr
