"""The model config of a PatchTCGA encoder: which method's file, which network, which pixels.

A config is a JSON object::

    {"family": "patchtcga", "method": "simclr" | "moco" | "byol" | "dino" | "mae",
     "arch": "resnet50" | "vit_small_patch16_224" | "vit_base_patch16_224" | "vit_large_patch16_224",
     "layers": [3, 4, 6, 3], "channels": [64, 128, 256, 512],                      # ResNets
     "patch_size": 16, "img_size": 224, "embed_dim": 384, "depth": 12, "num_heads": 6, "mlp_ratio": 4,  # ViTs
     "mean": [3 values], "std": [3 values], "pool": "cls" | "avg"}

Omitted fields take the named model's values; the config's sizes win over any ``args`` stored in a
checkpoint. Pixels are RGB / 255, then ``(x - mean) / std``: ImageNet's statistics for every method
but SimCLR, which PatchTCGA trained on pixels in [0, 1] without a mean or SD. ``pool`` is the MAE
feature: ``avg`` (mean of the patch tokens, then a fresh LayerNorm: the fine-tuning default) or
``cls`` (the normed CLS token: linear probing); DINO's feature is always the normed CLS token and a
ResNet's the global average of its last feature map (``pool`` does not change it).
"""

from __future__ import annotations

import math

from ...errors import PastaError

FAMILY = "patchtcga"
METHODS = ("simclr", "moco", "byol", "dino", "mae")
METHOD_LABELS = {"simclr": "SimCLR v1.5", "moco": "MoCo v2", "byol": "BYOL", "dino": "DINO v1", "mae": "MAE"}
RESNET_METHODS = ("simclr", "moco", "byol")
DEFAULT_ARCH = {
    "simclr": "resnet50",
    "moco": "resnet50",
    "byol": "resnet50",
    "dino": "vit_small_patch16_224",
    "mae": "vit_large_patch16_224",
}

RESNET_FIELDS = ("layers", "channels")
VIT_FIELDS = ("patch_size", "img_size", "embed_dim", "depth", "num_heads", "mlp_ratio")
ARCHS = {
    "resnet50": {"layers": [3, 4, 6, 3], "channels": [64, 128, 256, 512]},
    "vit_small_patch16_224": {"patch_size": 16, "img_size": 224, "embed_dim": 384, "depth": 12, "num_heads": 6, "mlp_ratio": 4.0},
    "vit_base_patch16_224": {"patch_size": 16, "img_size": 224, "embed_dim": 768, "depth": 12, "num_heads": 12, "mlp_ratio": 4.0},
    "vit_large_patch16_224": {
        "patch_size": 16,
        "img_size": 224,
        "embed_dim": 1024,
        "depth": 24,
        "num_heads": 16,
        "mlp_ratio": 4.0,
    },
}
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
POOLS = ("cls", "avg")
OTHER_FIELDS = ("family", "method", "arch", "mean", "std", "pool", "name", "description")


def is_vit(config: dict) -> bool:
    return str(config["arch"]).startswith("vit_")


def feature_dim(config: dict) -> int:
    """Length of one feature vector: 4 x the last stage's width (ResNet) or the embedding size (ViT)."""
    return int(config["embed_dim"]) if is_vit(config) else 4 * int(config["channels"][-1])


def describe(config: dict) -> str:
    """One line for people, e.g. ``DINO v1, vit_small_patch16_224 (384 features, CLS token)``."""
    pool = {"cls": "CLS token", "avg": "mean of patch tokens"}[config["pool"]] if is_vit(config) else "average pooled"
    return f"{METHOD_LABELS[config['method']]}, {config['arch']} ({feature_dim(config)} features, {pool})"


def check_config(config: dict) -> dict:
    """The validated config with every default filled in; PastaError naming the field for a bad value."""
    if not isinstance(config, dict):
        raise PastaError("a PatchTCGA model config must be a JSON object")
    unknown = sorted(set(config) - set(OTHER_FIELDS) - set(RESNET_FIELDS) - set(VIT_FIELDS))
    if unknown:
        raise PastaError(f"unknown field '{unknown[0]}' in the PatchTCGA config (fields: {', '.join(OTHER_FIELDS[1:6])}, sizes)")
    if config.get("family", FAMILY) != FAMILY:
        raise PastaError(f"the config's family is '{config.get('family')}', not '{FAMILY}'")
    method = config.get("method")
    if method not in METHODS:
        raise PastaError(f"'method' must be one of {', '.join(METHODS)} (got {method!r})")
    arch = config.get("arch", DEFAULT_ARCH[method])
    if arch not in ARCHS:
        raise PastaError(f"'arch' must be one of {', '.join(ARCHS)} (got {arch!r})")
    vit = arch.startswith("vit_")
    if vit == (method in RESNET_METHODS):
        kind = "a ResNet" if method in RESNET_METHODS else "a ViT"
        raise PastaError(f"method '{method}' trains {kind}; 'arch' {arch!r} does not fit it")
    wrong = [f for f in (RESNET_FIELDS if vit else VIT_FIELDS) if f in config]
    if wrong:
        raise PastaError(f"'{wrong[0]}' is a {'ResNet' if vit else 'ViT'} size field; arch {arch} does not take it")
    out = {"family": FAMILY, "method": method, "arch": arch}
    out.update({k: config.get(k, v) for k, v in ARCHS[arch].items()})
    _check_sizes(out, vit)
    simclr = method == "simclr"
    out["mean"] = _triple(config.get("mean", [0.0, 0.0, 0.0] if simclr else IMAGENET_MEAN), "mean", positive=False)
    out["std"] = _triple(config.get("std", [1.0, 1.0, 1.0] if simclr else IMAGENET_STD), "std", positive=True)
    out["pool"] = _pool(config.get("pool"), method)
    out.update({k: str(config[k]) for k in ("name", "description") if k in config})
    return out


def _pool(pool, method: str) -> str:
    """MAE: ``avg`` (default) or ``cls``; DINO: ``cls``; a ResNet has one feature, the global
    average, whatever ``pool`` says (it has no CLS token)."""
    if pool is not None and pool not in POOLS:
        raise PastaError(f"'pool' must be cls or avg (got {pool!r})")
    if method in RESNET_METHODS:
        return "avg"
    if method == "dino":
        if pool == "avg":
            raise PastaError("DINO's feature is the normed CLS token; 'pool' must be cls for method 'dino'")
        return "cls"
    return pool or "avg"


def _positive_int(value, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PastaError(f"'{field}' must be a positive whole number (got {value!r})")
    return value


def _int_list(value, field: str) -> list:
    if not isinstance(value, list) or len(value) != 4:
        raise PastaError(f"'{field}' must be a list of 4 positive whole numbers, one per ResNet stage (got {value!r})")
    return [_positive_int(v, field) for v in value]


def _check_sizes(out: dict, vit: bool) -> None:
    if not vit:
        out["layers"] = _int_list(out["layers"], "layers")
        out["channels"] = _int_list(out["channels"], "channels")
        return
    for field in ("patch_size", "img_size", "embed_dim", "depth", "num_heads"):
        out[field] = _positive_int(out[field], field)
    ratio = out["mlp_ratio"]
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not ratio > 0 or int(out["embed_dim"] * ratio) < 1:
        raise PastaError(f"'mlp_ratio' must be a positive number (got {ratio!r})")
    out["mlp_ratio"] = float(ratio)
    if out["embed_dim"] % out["num_heads"]:
        raise PastaError(f"'embed_dim' {out['embed_dim']} must be a multiple of 'num_heads' {out['num_heads']}")
    if out["img_size"] % out["patch_size"]:
        raise PastaError(f"'img_size' {out['img_size']} must be a multiple of 'patch_size' {out['patch_size']}")


def _triple(value, field: str, positive: bool) -> list:
    ok = isinstance(value, list) and len(value) == 3
    ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    if not ok or (positive and not all(v > 0 for v in value)):
        what = "3 positive numbers" if positive else "3 numbers"
        raise PastaError(f"'{field}' must be {what}, one per RGB channel (got {value!r})")
    return [float(v) for v in value]
