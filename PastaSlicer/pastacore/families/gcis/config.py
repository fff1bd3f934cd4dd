"""A gCIS model's config: the public network constructor's arguments plus test.py's preprocessing.

A config is a JSON object (``CFG.json`` beside a weight file, or the ``config`` of an installed
model's ``model.json``) with ``"family": "gcis"`` and ``"variant"``:

- ``"single"``: one path per automatic-pathway (AP) position, as the released task files
  (``params.pth``) are; with ``path_selection`` (7 one-based indexes) it is cut from a multi-path
  checkpoint as the public ``--ap_model/--path_selection`` fine-tuning start does;
- ``"ap"``: the multi-path network, ``ap_num`` sub-paths per AP position, routed by a 512-d prompt.

Its other keys are the names of the public ``SwinAP``/``SwinSingle`` arguments and of test.py's
options, with test.py's defaults where test.py passes a value and the constructor's otherwise.
Nothing here imports torch.
"""

from __future__ import annotations

import difflib
import math

from ...errors import PastaError

VARIANTS = ("single", "ap")
AP_POSITIONS = ("decoder10", "decoder5", "decoder4", "decoder3", "decoder2", "decoder1", "out")
PROMPT_DIM = 512  # the CLIP text embedding the routers take
BLEND_MODES = ("gaussian", "constant")
DOWNSAMPLE = ("merging", "mergingv2")

NETWORK_DEFAULTS = {
    "in_channels": 1,
    "out_channels": 2,
    "feature_size": 48,
    "depths": [2, 2, 2, 2],
    "num_heads": [3, 6, 12, 24],
    "norm_name": "instance",
    "drop_rate": 0.0,
    "attn_drop_rate": 0.0,
    "dropout_path_rate": 0.0,
    "normalize": True,
    "use_checkpoint": False,
    "spatial_dims": 3,
    "downsample": "merging",
}
AP_DEFAULTS = {"ap_num": 6, "tau": 1.0}
PREPROCESSING_DEFAULTS = {
    "a_min": -175.0,
    "a_max": 250.0,
    "b_min": 0.0,
    "b_max": 1.0,
    "space_x": 1.0,
    "space_y": 1.0,
    "space_z": 1.0,
    "roi_x": 128,
    "roi_y": 128,
    "roi_z": 128,
    "infer_overlap": 0.5,
    "sw_batch_size": 4,
    "mode": "gaussian",
}
# Keys that describe a model rather than build it: kept as they are.
DESCRIPTIVE = ("family", "variant", "img_size", "path_selection", "prompts", "labels", "name", "description")
KNOWN = set(DESCRIPTIVE) | set(NETWORK_DEFAULTS) | set(AP_DEFAULTS) | set(PREPROCESSING_DEFAULTS)
DIVISOR = 32  # five stride-2 stages: every window side must be a multiple of 2**5


def check_config(config: dict) -> dict:
    """The validated config with every default filled in; PastaError naming the field otherwise.

    ``img_size`` becomes a list of three ints (default: the window ``roi_x/y/z``); ``prompts``
    (ap only) is a list of ``{"text", "embedding": [512 floats], "term"?}``; ``labels`` maps label
    values (as strings) to terms. Keys this family does not know are kept, unless they look like a
    misspelt known key.
    """
    if not isinstance(config, dict):
        raise PastaError("a gCIS config must be a JSON object")
    _refuse_misspellings(config)
    variant = config.get("variant")
    if variant not in VARIANTS:
        raise PastaError(f"gCIS config: 'variant' must be one of {', '.join(VARIANTS)}, got {variant!r}")
    checked = {**NETWORK_DEFAULTS, **AP_DEFAULTS, **PREPROCESSING_DEFAULTS, **config, "family": "gcis"}
    for key in ("in_channels", "out_channels", "feature_size", "ap_num", "sw_batch_size", "roi_x", "roi_y", "roi_z"):
        checked[key] = _positive_int(checked, key)
    for key in ("drop_rate", "attn_drop_rate", "dropout_path_rate"):
        checked[key] = _number(checked, key, 0.0, 1.0)
    for key in ("a_min", "a_max", "b_min", "b_max", "tau"):
        checked[key] = _number(checked, key)
    for key in ("space_x", "space_y", "space_z"):
        checked[key] = _number(checked, key, low_exclusive=0.0)
    checked["infer_overlap"] = _number(checked, "infer_overlap", 0.0, 1.0)
    if checked["infer_overlap"] >= 1.0:
        raise PastaError("gCIS config: 'infer_overlap' must be below 1")
    if checked["a_max"] <= checked["a_min"]:
        raise PastaError(f"gCIS config: 'a_max' ({checked['a_max']:g}) must exceed 'a_min' ({checked['a_min']:g})")
    if checked["feature_size"] % 12:
        raise PastaError(f"gCIS config: 'feature_size' must be divisible by 12, got {checked['feature_size']}")
    if checked["tau"] <= 0:
        raise PastaError(f"gCIS config: 'tau' must be positive, got {checked['tau']:g}")
    if checked["spatial_dims"] != 3:
        raise PastaError(f"gCIS config: only 'spatial_dims' 3 is supported (CT volumes), got {checked['spatial_dims']!r}")
    for key in ("normalize", "use_checkpoint"):
        if not isinstance(checked[key], bool):
            raise PastaError(f"gCIS config: '{key}' must be true or false, got {checked[key]!r}")
    _choice(checked, "mode", BLEND_MODES)
    _choice(checked, "downsample", DOWNSAMPLE)
    if not isinstance(checked["norm_name"], (str, list)):
        raise PastaError(f"gCIS config: 'norm_name' must be a MONAI norm name such as \"instance\", got {checked['norm_name']!r}")
    checked["depths"] = _stages(checked, "depths")
    checked["num_heads"] = _stages(checked, "num_heads")
    roi = [checked["roi_x"], checked["roi_y"], checked["roi_z"]]
    _divisible("roi_x/roi_y/roi_z", roi)
    if min(roi) < 2 * DIVISOR:
        raise PastaError(
            f"gCIS config: roi_x/roi_y/roi_z must be at least {2 * DIVISOR} (the deepest level needs 2 voxels a side), got {roi}"
        )
    checked["img_size"] = _img_size(checked.get("img_size", roi))
    checked["path_selection"] = _path_selection(checked)
    checked["labels"] = _labels(checked.get("labels"))
    checked["prompts"] = _prompts(checked.get("prompts"), variant)
    _check_terms(checked)
    return checked


def window(config: dict) -> tuple:
    """The sliding window's size (roi_x, roi_y, roi_z) in voxels of the resampled grid."""
    return (config["roi_x"], config["roi_y"], config["roi_z"])


def spacing(config: dict) -> tuple:
    """The spacing test.py resamples to (space_x, space_y, space_z), in mm along the array axes."""
    return (config["space_x"], config["space_y"], config["space_z"])


def network_arguments(config: dict) -> dict:
    """The keyword arguments of the network constructor (:func:`..network.build_network`)."""
    names = list(NETWORK_DEFAULTS) + ["img_size"] + (list(AP_DEFAULTS) if config["variant"] == "ap" else [])
    return {name: config[name] for name in names}


def _refuse_misspellings(config: dict) -> None:
    for key in config:
        if key in KNOWN:
            continue
        close = difflib.get_close_matches(str(key), sorted(KNOWN), n=1, cutoff=0.8)
        if close:
            raise PastaError(f"gCIS config: unknown key {key!r} (did you mean {close[0]!r}?)")


def _positive_int(config: dict, key: str) -> int:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PastaError(f"gCIS config: '{key}' must be a positive whole number, got {value!r}")
    return value


def _number(config: dict, key: str, low=None, high=None, low_exclusive=None) -> float:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PastaError(f"gCIS config: '{key}' must be a number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise PastaError(f"gCIS config: '{key}' must lie in [{low:g}, {high:g}], got {value:g}")
    if low_exclusive is not None and value <= low_exclusive:
        raise PastaError(f"gCIS config: '{key}' must be above {low_exclusive:g}, got {value:g}")
    return float(value)


def _choice(config: dict, key: str, allowed: tuple) -> None:
    if config[key] not in allowed:
        raise PastaError(f"gCIS config: '{key}' must be one of {', '.join(allowed)}, got {config[key]!r}")


def _stages(config: dict, key: str) -> list:
    value = config[key]
    if not (isinstance(value, list) and len(value) == 4 and all(isinstance(v, int) and v > 0 for v in value)):
        raise PastaError(f"gCIS config: '{key}' must be four positive whole numbers (one per Swin stage), got {value!r}")
    return list(value)


def _divisible(name: str, sizes: list) -> None:
    if any(s % DIVISOR for s in sizes):
        raise PastaError(f"gCIS config: {name} must be multiples of {DIVISOR} (five stride-2 stages), got {sizes}")


def _img_size(value) -> list:
    sizes = [value] * 3 if isinstance(value, int) and not isinstance(value, bool) else value
    if not (isinstance(sizes, list) and len(sizes) == 3 and all(isinstance(s, int) and s > 0 for s in sizes)):
        raise PastaError(f"gCIS config: 'img_size' must be a whole number or three, got {value!r}")
    _divisible("'img_size'", sizes)
    return list(sizes)


def _path_selection(config: dict):
    selection = config.get("path_selection")
    if selection is None:
        return None
    if config["variant"] != "single":
        raise PastaError(
            "gCIS config: 'path_selection' cuts a single-path model from a multi-path one; use it with variant single"
        )
    if isinstance(selection, str):  # the public --path_selection "2,1,3,5,3,6,6"
        try:
            selection = [int(part) for part in selection.split(",")]
        except ValueError:
            raise PastaError(f"gCIS config: 'path_selection' must be 7 whole numbers, got {selection!r}") from None
    ap_num = config["ap_num"]
    if not (
        isinstance(selection, list)
        and len(selection) == len(AP_POSITIONS)
        and all(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= ap_num for n in selection)
    ):
        raise PastaError(
            f"gCIS config: 'path_selection' must be 7 one-based path indexes from 1 to ap_num {ap_num} "
            f"({', '.join(AP_POSITIONS)}), got {selection!r}"
        )
    return list(selection)


def _labels(labels):
    if labels is None:
        return None
    if not isinstance(labels, dict) or not labels:
        raise PastaError('gCIS config: \'labels\' must map label values to terms, e.g. {"1": "tumor@liver"}')
    checked = {}
    for value, term in labels.items():
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = -1
        if number < 1 or not isinstance(term, str) or not term:
            raise PastaError(f"gCIS config: label {value!r} must be a positive label value with a term, got {term!r}")
        checked[str(number)] = term
    return checked


def _prompts(prompts, variant: str):
    if prompts is None:
        return None
    if variant != "ap":
        raise PastaError("gCIS config: 'prompts' (known prompt embeddings) belong to an ap model")
    if not isinstance(prompts, list):
        raise PastaError('gCIS config: \'prompts\' must be a list of {"text": ..., "embedding": [512 numbers]}')
    checked, seen = [], set()
    for item in prompts:
        text = item.get("text") if isinstance(item, dict) else None
        embedding = item.get("embedding") if isinstance(item, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise PastaError(f"gCIS config: every prompt needs a 'text', got {str(item)[:60]}")
        if not (
            isinstance(embedding, list)
            and len(embedding) == PROMPT_DIM
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in embedding)
        ):
            raise PastaError(f"gCIS config: the embedding of prompt {text!r} must be {PROMPT_DIM} finite numbers")
        key = normalized_prompt(text)
        if key in seen:
            raise PastaError(f"gCIS config: prompt {text!r} is listed twice")
        seen.add(key)
        entry = {"text": text.strip(), "embedding": [float(v) for v in embedding]}
        if item.get("term") is not None:
            if not isinstance(item["term"], str):
                raise PastaError(f'gCIS config: the term of prompt {text!r} must be text such as "tumor@liver"')
            entry["term"] = item["term"]
        checked.append(entry)
    return checked


def _check_terms(config: dict) -> None:
    """Terms ("tumor@liver") of the labels and prompts name known organs and lesion kinds (names
    without "@" are free); checked here so that a typo stops before any work."""
    from ...inference.segmentation_model import label_meaning

    terms = list((config["labels"] or {}).values()) + [p["term"] for p in config["prompts"] or [] if "term" in p]
    for term in terms:
        try:
            label_meaning({1: term})
        except PastaError as problem:
            raise PastaError(f"gCIS config: term {term!r}: {problem}") from None


def normalized_prompt(text: str) -> str:
    """A prompt as it is looked up: lower case, single spaces ("Liver  Tumor" == "liver tumor")."""
    return " ".join(str(text).lower().split())
