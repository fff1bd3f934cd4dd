"""PyMIC ``[network]`` parameters of FMUNet and PCT-Net: names, PyMIC's defaults, checks.

A model config is a JSON object ``{"family": "pymic", "net_type": "FMUNet" | "PCTNet", ...}``
whose other keys are PyMIC's ``[network]`` parameters by their config names. An absent key
takes PyMIC's default (FMUNet: ``FMUNet.get_default_parameters``; PCT-Net: the ``params.get``
defaults of MIS-FM's ``PCTNet``). ``class_num`` has no default in PyMIC and must be given;
so must PCT-Net's ``input_size`` (its transformer is built for exactly that patch).
``in_chns`` has none either: 1 (one CT channel) is taken when it is absent.

Keys PyMIC ignores for a network (``up_mode``, ``trilinear``...) are kept as given; a value
PyMIC would fail on later (a list where FMUNet wants one dropout rate, channels a head count
does not divide, a patch the pyramid cannot halve) is refused here, naming the field.

One key is ours, not PyMIC's: ``hu_window`` ([low, high] in HU, default the lung VolF demo's
[-1000, 1000]), the window a CT is clipped to and mapped linearly onto [-1, 1] before it
enters the network (pretraining, fine-tuning and segmentation alike; always on PASTA's 1 mm
grid). Importing this module needs no torch.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from ...errors import PastaError

if TYPE_CHECKING:
    from collections.abc import Sequence

FAMILY = "pymic"
NET_TYPES = ("FMUNet", "PCTNet")

FMUNET_DEFAULTS = {
    "in_chns": 1,
    "feature_chns": [32, 64, 128, 256, 512],
    "dropout": 0.2,
    "res_mode": 0,
    "depth": 2,
    "multiscale_pred": True,
    "initialization": "he",
    "finetune_mode": "all",
    "weights_load_mode": "all",
}
PCTNET_DEFAULTS = {
    "in_chns": 1,
    "feature_chns": [32, 64, 128, 256, 512],
    "dropout": [0, 0, 0.2, 0.2, 0.2],
    "depths": [2, 2, 2],
    "num_heads": [4, 8, 16],
    "window_sizes": [6, 6, 6],
    "multiscale_pred": False,
    "resolution_mode": 0,
    "update_mode": 0,
}
OUR_DEFAULTS = {"hu_window": [-1000.0, 1000.0]}

# PCT-Net's stem shrinks each axis by this much before the pyramid (per resolution_mode), and
# the pyramid halves it twice more.
PCT_STEM_SCALE = {0: (4, 4, 4), 1: (2, 4, 4), 2: (1, 4, 4)}
# FMUNet's levels: res_mode 1/2 make the first one/two down-samplings in-plane only.
FMUNET_2D_LEVELS = {0: 0, 1: 1, 2: 2}


def _field(name: str) -> str:
    return f"network parameter {name!r}"


def _int(config: dict, name: str, low: int = 1) -> int:
    value = config.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise PastaError(f"{_field(name)} must be a whole number of at least {low}, got {value!r}")
    return value


def _ints(config: dict, name: str, length: int, low: int = 1) -> list:
    value = config.get(name)
    if (
        not isinstance(value, (list, tuple))
        or len(value) != length
        or any(isinstance(v, bool) or not isinstance(v, int) or v < low for v in value)
    ):
        raise PastaError(f"{_field(name)} must be a list of {length} whole numbers of at least {low}, got {value!r}")
    return [int(v) for v in value]


def _rate(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
        raise PastaError(f"{_field(name)} must be a dropout rate in [0, 1), got {value!r}")
    return float(value)


def _choice(config: dict, name: str, choices: tuple):
    value = config.get(name)
    if isinstance(value, bool) or value not in choices:
        raise PastaError(f"{_field(name)} must be one of {', '.join(map(str, choices))}, got {value!r}")
    return value


def _flag(config: dict, name: str) -> bool:
    value = config.get(name)
    if not isinstance(value, bool):
        raise PastaError(f"{_field(name)} must be true or false, got {value!r}")
    return value


def _hu_window(config: dict) -> list:
    value = config.get("hu_window")
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value)
        or not float(value[0]) < float(value[1])
    ):
        raise PastaError(f"'hu_window' must be [low, high] in HU with low < high, got {value!r}")
    return [float(value[0]), float(value[1])]


def _check_fmunet(config: dict) -> None:
    config["in_chns"] = _int(config, "in_chns")
    config["class_num"] = _int(config, "class_num", 1)
    config["feature_chns"] = _ints(config, "feature_chns", 5)
    config["dropout"] = _rate(config.get("dropout"), "dropout")
    config["res_mode"] = _choice(config, "res_mode", (0, 1, 2))
    config["depth"] = _int(config, "depth")
    config["multiscale_pred"] = _flag(config, "multiscale_pred")
    config["initialization"] = str(_choice(config, "initialization", ("he", "He", "HE", "xavier", "Xavier"))).lower()
    config["finetune_mode"] = _choice(config, "finetune_mode", ("all", "decoder"))
    config["weights_load_mode"] = _choice(config, "weights_load_mode", ("all", "encoder"))


def _check_pctnet(config: dict) -> None:
    config["in_chns"] = _int(config, "in_chns")
    config["class_num"] = _int(config, "class_num", 1)
    if "input_size" not in config:
        raise PastaError(f"{_field('input_size')} is required for PCTNet: the patch [D, H, W] its transformer is built for")
    size = config["input_size"] = _ints(config, "input_size", 3)
    features = config["feature_chns"] = _ints(config, "feature_chns", 5)
    dropout = config.get("dropout")
    if not isinstance(dropout, (list, tuple)) or len(dropout) != 5:
        raise PastaError(f"{_field('dropout')} must be a list of 5 dropout rates (one per level), got {dropout!r}")
    config["dropout"] = [_rate(v, "dropout") for v in dropout]
    config["depths"] = _ints(config, "depths", 3)
    heads = config["num_heads"] = _ints(config, "num_heads", 3)
    config["window_sizes"] = _ints(config, "window_sizes", 3)
    config["multiscale_pred"] = _flag(config, "multiscale_pred")
    mode = config["resolution_mode"] = _choice(config, "resolution_mode", (0, 1, 2))
    if _choice(config, "update_mode", (0, 1)) == 1:
        raise PastaError(
            f"{_field('update_mode')} 1 (train the decoder only) fails in MIS-FM's PCTNet (it names a missing 'pred_head'); use 0"
        )
    step = [s * 4 for s in PCT_STEM_SCALE[mode]]
    if any(n % m for n, m in zip(size, step)):
        raise PastaError(
            f"{_field('input_size')} {size} does not fit resolution_mode {mode}: each side must be a multiple of "
            f"{'x'.join(map(str, step))} (the stem and the pyramid halve it)"
        )
    for level, (channels, count) in enumerate(zip(features[2:], heads)):
        if channels % count:
            raise PastaError(
                f"{_field('num_heads')} {count} does not divide feature_chns[{level + 2}] = {channels} "
                "(each attention head takes an equal share of the channels)"
            )


def check_config(config: dict) -> dict:
    """The validated config of a PyMIC network (a new dict, PyMIC's defaults filled in);
    :class:`PastaError` naming the field for a bad value."""
    if not isinstance(config, dict):
        raise PastaError(f"a PyMIC model config is a JSON object, got {type(config).__name__}")
    family = config.get("family", FAMILY)
    if family != FAMILY:
        raise PastaError(f"'family' must be {FAMILY!r} for a PyMIC network, got {family!r}")
    net_type = config.get("net_type")
    if net_type not in NET_TYPES:
        raise PastaError(f"'net_type' must be one of {', '.join(NET_TYPES)}, got {net_type!r}")
    if "class_num" not in config:
        raise PastaError(f"{_field('class_num')} is required: the number of output classes, background included")
    defaults = FMUNET_DEFAULTS if net_type == "FMUNet" else PCTNET_DEFAULTS
    checked = {"family": FAMILY, "net_type": net_type}
    checked.update(copy.deepcopy({**OUR_DEFAULTS, **defaults}))
    checked.update({k: copy.deepcopy(v) for k, v in config.items() if k not in ("family", "net_type")})
    (_check_fmunet if net_type == "FMUNet" else _check_pctnet)(checked)
    checked["hu_window"] = _hu_window(checked)
    return checked


def with_classes(config: dict, class_num: int) -> dict:
    """``config`` with another ``class_num`` (the class-dependent output convolutions change)."""
    return check_config({**config, "class_num": int(class_num)})


def patch_rule(config: dict) -> tuple:
    """``(exact patch or None, per-axis divisor)``: PCT-Net takes exactly ``input_size``;
    FMUNet any patch whose sides its four down-samplings divide."""
    if config["net_type"] == "PCTNet":
        return tuple(config["input_size"]), (1, 1, 1)
    flat = FMUNET_2D_LEVELS[config["res_mode"]]
    return None, (2 ** (4 - flat), 16, 16)


def check_patch(config: dict, patch: Sequence[int]) -> tuple:
    """``patch`` as a tuple of three ints when the network takes it, else a one-line PastaError."""
    patch = tuple(int(p) for p in patch)
    exact, divisor = patch_rule(config)
    if exact is not None and patch != exact:
        raise PastaError(
            f"PCT-Net takes patches of exactly its input_size {'x'.join(map(str, exact))}, got {'x'.join(map(str, patch))}"
        )
    if len(patch) != 3 or any(p < d or p % d for p, d in zip(patch, divisor)):
        raise PastaError(
            f"patch {'x'.join(map(str, patch))} does not fit FMUNet (res_mode {config.get('res_mode')}): each side "
            f"must be a multiple of {'x'.join(map(str, divisor))}"
        )
    return patch


def describe(config: dict) -> str:
    """One line for people: the network and its size parameters."""
    if config["net_type"] == "FMUNet":
        return (
            f"FMUNet, features {config['feature_chns']}, depth {config['depth']}, res_mode {config['res_mode']}, "
            f"{config['class_num']} classes"
        )
    return (
        f"PCT-Net, features {config['feature_chns']}, input {'x'.join(map(str, config['input_size']))}, "
        f"resolution_mode {config['resolution_mode']}, {config['class_num']} classes"
    )
