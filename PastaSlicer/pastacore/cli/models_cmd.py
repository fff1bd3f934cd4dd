"""``pasta models``: list, import, verify and remove installed models; inspect and run a checkpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .shared import add_autocast_argument, add_device_argument, add_json_argument, add_overwrite_argument, run_with_bar

if TYPE_CHECKING:
    import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="manage installed models (list, import, verify, remove, inspect, forward, sample)")
    p.add_argument("--store", help="model folder (default: the per-user cache)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="list installed models")
    actions.add_parser("formats", help="list the weight-file formats and model folders that load")
    imp = actions.add_parser(
        "import",
        help="import a weight file, nnU-Net result folder or BiomedCLIP folder you downloaded, or a model folder from train-default or finetune",
    )
    imp.add_argument("path")
    imp.add_argument("--name", help="name to install under (default: from the manifest or the file name)")
    imp.add_argument(
        "--config",
        metavar="CFG.json",
        help="a model family's config (JSON naming its 'family', e.g. gcis, pymic, patchtcga) for a weight file of that family",
    )
    imp.add_argument(
        "--labels",
        metavar="LABELS.json",
        help='with --config: what each output label is, {"1": "liver", "2": "tumor@liver"} or [{"value": 1, "term": ...}]',
    )
    add_overwrite_argument(imp, "replace an installed model of the same name")
    clip = actions.add_parser(
        "import-clip",
        help="import CLIP ViT-B-32-quickgelu weights (open_clip, laion400m_e32) once: free-text prompts for multi-path gCIS models",
    )
    clip.add_argument(
        "path", metavar="FILE", help="the open_clip weight file (.pt, .bin or .safetensors); only its text tower is kept"
    )
    clip.add_argument(
        "--vocabulary",
        metavar="FILE.txt.gz",
        help="CLIP's BPE vocabulary (default: the one in the installed open_clip_torch package)",
    )
    add_overwrite_argument(clip, "replace CLIP weights imported before")
    ver = actions.add_parser("verify", help="check installed files against their SHA256")
    ver.add_argument("name", nargs="?", help="one model (default: all)")
    rem = actions.add_parser("remove", help="delete an installed model")
    rem.add_argument("name")
    ins = actions.add_parser("inspect", help="show what a PASTA checkpoint or nnU-Net result folder holds (nothing is run)")
    ins.add_argument("path", metavar="FILE_OR_DIR")
    add_json_argument(ins, "the full description")
    fwd = actions.add_parser(
        "forward",
        help="run the bare network on a .npy array (PASTA) or a .pt dict (with --config: a model family's JSON "
        "config, or LesionDiffusion's YAML)",
    )
    fwd.add_argument("path", metavar="FILE_OR_DIR")
    fwd.add_argument(
        "input",
        metavar="INPUT.npy|IN.pt",
        help="PASTA: array shaped (D,H,W), (C,D,H,W) or (B,C,D,H,W); a model family: the dict of tensors it takes "
        "(e.g. x); LesionDiffusion: dict with x_t, t, context, cond (VQ: x)",
    )
    fwd.add_argument("output", metavar="OUTPUT.npy|OUT.pt")
    fwd.add_argument(
        "--features", action="store_true", help="write the pooled encoder features (B, C) instead of full-resolution logits"
    )
    _diffusion_options(fwd, weights="model")
    add_overwrite_argument(fwd, "replace an existing output")
    smp = actions.add_parser("sample", help="run a LesionDiffusion DDIM sampler (LMNet or LINet) on a .pt dict")
    smp.add_argument("path", metavar="CKPT")
    smp.add_argument(
        "input",
        metavar="IN.pt",
        help="dict with x_T, context, ddim_steps, eta, and cond (LMNet) or x0 + mask (LINet); optional noise (steps, *x_T.shape)",
    )
    smp.add_argument("output", metavar="OUT.pt", help="dict with samples and x_inter")
    _diffusion_options(smp, config_required=True, weights="auto")
    smp.add_argument("--seed", type=int, default=0, help="seed of the per-step noise when IN.pt has none (default 0)")
    add_overwrite_argument(smp, "replace an existing output")
    p.set_defaults(func=run)


def _diffusion_options(parser, config_required=False, weights="auto"):
    parser.add_argument(
        "--config",
        metavar="CONFIG",
        required=config_required,
        help="a model family's config (CFG.json naming its 'family') or a LesionDiffusion config (the repository's YAML)",
    )
    parser.add_argument(
        "--weights",
        choices=("auto", "ema", "model"),
        default=weights,
        help=f"LesionDiffusion: the raw model.* weights (as apply_model outside ema_scope), the EMA "
        f"ones (as the public sampling), or auto (EMA when present); default {weights}",
    )
    add_device_argument(parser, "with --config: auto, cuda or cpu")
    add_autocast_argument(parser, "LesionDiffusion", auto="fp16 where the config sets use_fp16")


def run(args: argparse.Namespace) -> None:
    from ..errors import PastaError
    from ..modelstore.store import ModelStore

    store = ModelStore(args.store)
    if args.action == "list":
        models = store.list()
        if not models:
            print(f"no models installed (store: {store.root})")
        for m in models:
            where = "built in" if m.builtin else str(m.path)
            if m.damaged:
                print(f"{m.name:<24} DAMAGED: {m.damaged} ({where})")
            else:
                print(f"{m.name:<24} {m.version:<8} {m.task:<13} {m.family:<10} {where}")
    elif args.action == "formats":
        from ..families import families
        from ..networks.checkpoints import FORMATS

        for f in FORMATS.values():
            print(f"{f.name:<14} {' '.join(f.suffixes):<22} {f.description}")
        for family in families():
            print(f"{family.name:<14} {'--config CFG.json':<22} {family.description} ({family.task})")
        print(f"{'nnU-Net v2':<14} {'folder':<22} a result folder (plans.json, dataset.json, fold_N/checkpoint_*.pth)")
        print(f"{'model folder':<14} {'folder':<22} model.json naming its weights (as pasta train-default writes)")
    elif args.action == "import":
        if args.labels and not args.config:
            raise PastaError("--labels names the outputs of a model family's weights: give its --config too")
        if args.config:
            from ..families import read_model_config

            config = read_model_config(args.config)
            labels = _read_labels(args.labels) if args.labels else None
            model = store.import_family_model(args.path, config, name=args.name, labels=labels, overwrite=args.overwrite)
        else:
            model = store.import_file(args.path, name=args.name, overwrite=args.overwrite)
        print(f"imported {model.name} ({len(model.files)} file(s)) into {model.path}")
    elif args.action == "import-clip":
        from ..families.gcis.prompts import import_clip

        folder = import_clip(args.path, store, vocabulary=args.vocabulary, overwrite=args.overwrite)
        print(f"imported CLIP's text tower into {folder}: free-text prompts work for multi-path gCIS models")
    elif args.action == "verify":
        names = [args.name] if args.name else [m.name for m in store.list()]
        bad = 0
        for name in names:
            ok, problems = store.verify(name)
            print(f"{name}: {'ok' if ok else '; '.join(problems)}")
            bad += not ok
        if bad:
            raise PastaError(f"{bad} model(s) failed verification")
    elif args.action == "remove":
        store.remove(args.name)
        print(f"removed {args.name}")
    elif args.action == "inspect":
        _inspect(args)
    elif args.action == "forward" and args.config and args.config.lower().endswith(".json"):
        _family_forward(args)
    elif args.action == "forward" and args.config:
        _diffusion_forward(args)
    elif args.action == "forward":
        _forward(args)
    elif args.action == "sample":
        _diffusion_sample(args)


def _inspect(args):
    import json
    from pathlib import Path

    from ..networks.loading import inspect_checkpoint

    path = Path(args.path)
    from ..modelstore.store import OPEN_CLIP_FILES

    if path.is_dir() and all((path / name).is_file() for name in OPEN_CLIP_FILES):
        _inspect_open_clip(args, path)
        return
    if path.is_dir() and (path / "model.json").is_file() and not (path / "plans.json").is_file():
        from ..inference.segmentation_model import model_weights

        weights, description = model_weights(str(path))  # a model folder, as `pasta models import` takes it
        if description.get("family"):
            _inspect_family(args, weights, description)
            return
        path = weights
    info = inspect_checkpoint(path)
    if args.json:
        print(json.dumps(info.to_dict(), indent=2))
        return
    rows = [
        ("architecture", info.architecture),
        ("container", info.container),
        ("base_features", info.base_features),
        ("num_pool", info.num_pool),
        ("input_channels", info.input_channels),
        ("num_classes", info.num_classes),
        ("head outputs", info.num_head_outputs),
        ("feature size", info.feature_channels),
        ("tensors_loaded", len(info.tensors_loaded)),
        ("tensors_missing", _few(info.tensors_missing)),
        ("tensors_mismatched", _few(info.tensors_mismatched)),
        ("tensors_unexpected", _few(info.tensors_unexpected)),
    ]
    if info.trainer:
        alias = f" (recorded as {info.trainer_recorded})" if info.trainer_recorded != info.trainer else ""
        rows.append(("trainer", info.trainer + alias))
    if info.fold is not None:
        rows.append(("fold", f"{info.fold} ({info.checkpoint})"))
    if info.labels:
        rows.append(("labels", ", ".join(f"{v}={k}" for k, v in info.labels.items())))
    if info.patch_size:
        rows.append(("patch_size", "x".join(str(s) for s in info.patch_size)))
    if info.normalization:
        rows.append(
            (
                "normalization",
                f"{', '.join(info.normalization_schemes or ['?'])} ({len(info.normalization)} channel(s) of statistics)",
            )
        )
    for key, value in rows:
        print(f"{key + ':':<20} {'-' if value is None else value}")


def _inspect_open_clip(args, folder):
    """A text encoder folder in open_clip's format (BiomedCLIP), as the store imports it."""
    import json

    from ..errors import PastaError
    from ..modelstore.store import OPEN_CLIP_FILES
    from ..networks.checkpoints import load_checkpoint

    try:
        config = json.loads((folder / OPEN_CLIP_FILES[0]).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise PastaError(f"cannot read {OPEN_CLIP_FILES[0]} in {folder.name}: {str(exc)[:80]}") from None
    state = load_checkpoint(folder / OPEN_CLIP_FILES[1])
    tensors = state if isinstance(state, dict) else {}
    info = {
        "architecture": "open_clip text encoder folder",
        "model_cfg": sorted((config.get("model_cfg") or {}) if isinstance(config, dict) else {}),
        "tensors": len(tensors),
        "parameters": int(sum(getattr(t, "numel", lambda: 0)() for t in tensors.values())),
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return
    for key, value in info.items():
        print(f"{key + ':':<20} {value}")


def _inspect_family(args, weights, description):
    import json

    from ..families import checked_config, family_named

    family = family_named(description["family"])
    config = checked_config({**(description.get("config") or {}), "family": family.name})
    summary = family.implementation().verify(weights, config)
    info = {"family": family.name, "task": family.task, "weights": weights.name, "config": config, **summary}
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return
    for key, value in info.items():
        print(f"{key + ':':<20} {value}")


def _few(names):
    if not names:
        return 0
    return f"{len(names)} ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''})"


def _forward(args):
    from pathlib import Path

    import numpy as np
    import torch

    from ..errors import PastaError
    from ..fileio.atomic import atomic_outputs, check_outputs
    from ..networks.loading import load_encoder, load_for_segmentation

    # fail before the (slow) model load
    check_outputs([(args.output, (".npy",))], inputs=(args.input, args.path), overwrite=args.overwrite)
    source = Path(args.input)
    if source.suffix == ".pt":
        raise PastaError(f"{source.name} is a .pt input: LesionDiffusion networks need --config CONFIG.yaml")
    if not source.is_file():
        raise PastaError(f"input {source} does not exist")
    try:
        array = np.load(source, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise PastaError(f"cannot read {source.name} as a .npy array ({str(exc).splitlines()[0][:100]})") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
        raise PastaError(f"{source.name} must hold one numeric array")
    if array.ndim not in (3, 4, 5):
        raise PastaError(f"{source.name} has shape {array.shape}; expected (D,H,W), (C,D,H,W) or (B,C,D,H,W)")
    while array.ndim < 5:
        array = array[None]
    loaded = load_encoder(args.path) if args.features else load_for_segmentation(args.path)
    x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    with torch.inference_mode():
        result = loaded.network.encode_features(x) if args.features else loaded.network(x)
    out = result.cpu().numpy().astype(np.float32, copy=False)
    with atomic_outputs(args.output, overwrite=args.overwrite) as temp:
        with open(temp, "wb") as handle:  # np.save(path) would append .npy to other names
            np.save(handle, out)
    what = "features" if args.features else "logits"
    print(f"wrote {what} {tuple(out.shape)} to {args.output}")


def _read_labels(path) -> list:
    """[{"value", "term"}] from a labels JSON: {"1": "liver", ...} or that list itself."""
    import json
    from pathlib import Path

    from ..errors import PastaError
    from ..fileio.readers import require_regular_file

    require_regular_file(path, "labels file")
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise PastaError(f"cannot read the labels {Path(path).name} ({str(exc).splitlines()[0][:80]})") from None
    if isinstance(data, dict):
        data = [{"value": key, "term": term} for key, term in data.items()]
    try:
        labels = [{"value": int(item["value"]), "term": str(item["term"])} for item in data]
    except (TypeError, KeyError, ValueError):
        raise PastaError(
            f'the labels {Path(path).name} should map label values to names, {{"1": "liver", "2": "tumor@liver"}}'
        ) from None
    if not labels or any(item["value"] < 1 for item in labels) or len({i["value"] for i in labels}) != len(labels):
        raise PastaError(f"the labels {Path(path).name} need distinct label values from 1 (0 is the background)")
    return sorted(labels, key=lambda item: item["value"])


def _family_forward(args):
    from ..errors import PastaError
    from ..families.commands import forward_command

    if args.features:
        raise PastaError("--features is for PASTA checkpoints; a model family's forward writes what its config says")
    result = forward_command(args.path, args.input, args.output, args.config, args.device, args.overwrite)
    shapes = [f"{k} {tuple(v.shape)}" if hasattr(v, "shape") else k for k, v in result.items()]
    print(f"wrote {', '.join(shapes)} to {args.output}")


def _diffusion_forward(args):
    from ..diffusion.commands import forward
    from ..errors import PastaError

    if args.features:
        raise PastaError("--features is for PASTA checkpoints, not LesionDiffusion networks")
    result = forward(args.path, args.input, args.output, args.config, args.weights, args.device, args.precision, args.overwrite)
    print(f"wrote {', '.join(f'{k} {tuple(v.shape)}' for k, v in result.items())} to {args.output}")


def _diffusion_sample(args):
    from ..diffusion.commands import sample_command

    paths = (args.path, args.input, args.output, args.config)
    settings = (args.weights, args.device, args.precision, args.overwrite, args.seed)
    result = run_with_bar("sampling", sample_command, *paths, *settings)
    print(f"wrote samples {tuple(result['samples'].shape)} and x_inter {tuple(result['x_inter'].shape)} to {args.output}")
