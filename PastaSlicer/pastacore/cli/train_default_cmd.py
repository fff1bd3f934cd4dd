"""``pasta train-default``: reproduce the built-in default model (synthetic lung lesions only)."""

from __future__ import annotations

import json

from .argtypes import seed


MODEL_FILES = ("model.pth", "metrics.json", "model.json", "README.md")  # what --out receives


def add_parser(sub):
    p = sub.add_parser("train-default", help="train the built-in lung-lesion model on synthetic lesions (CPU)",
                       description="Backgrounds are real chest CTs; every lesion is synthetic; the real tumours "
                                   "are excluded from training. With --evaluate-on, scores Dice, detection and "
                                   "false-positive volume on that scan's real tumour.")
    p.add_argument("--backgrounds", default="lung1,lung2", help="sample cases used as backgrounds (default lung1,lung2)")
    p.add_argument("--evaluate-on", default="", help="sample cases whose real tumours are scored after training")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--lesions", type=int, default=80, help="synthetic lesions per background")
    p.add_argument("--patch", type=int, default=96)
    p.add_argument("--base-features", type=int, default=8)
    p.add_argument("--spatial-augmentation", type=float, default=0.5,
                   help="share of training patches randomly rotated and scaled (default 0.5)")
    p.add_argument("--elastic-mm", type=float, default=0.0,
                   help="smooth random warp (mm, standard deviation) of the rotated and scaled patches (default 0)")
    p.add_argument("--pleura-mm", type=int, default=0,
                   help="how far (mm) lesions against the wall may reach past the air-based lung mask, filling "
                        "the partial-volume rim up to the wall (default 0: clipped at the air boundary, as the "
                        "built-in model; 2 measured no better, see Testing/Benchmarks/RESULTS.md)")
    p.add_argument("--hard-negative-steps", type=int, default=0,
                   help="a second stage of this many steps in which about 40 %% of the lesion-free patches are centred on "
                        "the first stage's own false positives in the backgrounds (default 0: none)")
    p.add_argument("--zone-mm", type=int, default=None,
                   help="no training patch or synthetic lesion comes within this many mm of a real tumour's box "
                        "(default: half a patch + 10 mm, as the built-in model)")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--out", required=True, help="output folder for the model (weights, model.json, metrics)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the files of an earlier model in --out (other files there are kept)")
    p.set_defaults(func=run)


def run(args):
    import platform
    import time

    import torch

    from ..errors import PastaError
    from ..io.atomic import atomic_directory, check_output_dir
    from ..training.default_model import default_zone_mm, evaluate, evaluate_tilings, load_background, train_default
    from ..training.trainer import TrainSettings
    from .progress import bar

    names = [n for n in args.backgrounds.split(",") if n]
    targets = [n for n in args.evaluate_on.split(",") if n]
    if not names:
        raise PastaError("give at least one background case")
    if args.zone_mm is not None and args.zone_mm < 0:
        raise PastaError(f"--zone-mm must be 0 or more, got {args.zone_mm}")
    patch = (args.patch,) * 3
    settings = TrainSettings(base_features=args.base_features, num_pool=4, patch_size=patch, steps=args.steps,
                             seed=args.seed, spatial_augmentation=args.spatial_augmentation,
                             elastic_mm=args.elastic_mm)
    started = time.perf_counter()
    check_output_dir(args.out, args.overwrite, MODEL_FILES)
    with atomic_directory(args.out, overwrite=args.overwrite, owned=MODEL_FILES) as folder, \
            bar("pasta train-default") as progress:
        backgrounds = [load_background(n, patch, args.zone_mm) for n in names]
        trained = train_default(backgrounds, settings, args.lesions, lambda f, m: progress(0.9 * f, m),
                                pleura_mm=args.pleura_mm, hard_negative_steps=args.hard_negative_steps)
        network, log, pool = trained.network, trained.log, trained.pool
        # score exactly what ships: the weights rounded to fp16, as stored
        network.load_state_dict({k: v.half().float() for k, v in network.state_dict().items()})
        scores, tilings = [], []
        for n in targets:
            bg = next((b for b in backgrounds if b.name == n), None) or load_background(n, patch)
            plain = evaluate(network, bg, patch)  # as `pasta segment` runs it, and with --tta
            scores += [dict(plain.__dict__, tta=False), dict(evaluate(network, bg, patch, tta=True).__dict__, tta=True)]
            tilings.append(evaluate_tilings(network, bg, patch, unshifted=plain))
        progress(1.0, "saved")
        torch.save({k: v.half() for k, v in network.state_dict().items()}, folder / "model.pth")
        metrics = {
            "backgrounds": names, "synthetic_lesions": pool, "steps": args.steps, "patch": list(patch),
            "base_features": args.base_features, "seed": args.seed,
            "spatial_augmentation": args.spatial_augmentation, "elastic_mm": args.elastic_mm,
            "pleura_mm": args.pleura_mm, "zone_mm": default_zone_mm(args.patch) if args.zone_mm is None else args.zone_mm,
            "hard_negative_steps": args.hard_negative_steps, "mined_false_positive_ml": trained.mined_ml,
            "train_seconds": round(log.seconds + (trained.second_log.seconds if trained.second_log else 0)),
            "total_seconds": round(time.perf_counter() - started), "final_loss": float(sum(log.losses[-50:]) / 50),
            "machine": f"{platform.machine()}, {torch.get_num_threads()} threads", "evaluation": scores,
            "evaluation_tilings": tilings,
        }
        from ..models.store import sha256_of

        description = model_description(metrics)
        description["files"] = [{"name": "model.pth", "sha256": sha256_of(folder / "model.pth")}]
        (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
        (folder / "model.json").write_text(json.dumps(description, indent=2))
        (folder / "README.md").write_text(model_card(metrics, description, args))
    for s in scores:
        print(f"{s['case']}{' (TTA)' if s['tta'] else ''}: Dice {s['dice']:.3f}, real tumour {'detected' if s['detected'] else 'MISSED'}, "
              f"false positives {s['false_positive_ml']:.1f} mL (tumour {s['tumour_ml']:.1f} mL)")
    for t in tilings:
        print(f"{t['case']} over {len(t['dice'])} tile offsets: Dice {t['dice_mean']:.3f} ({t['dice_min']:.3f}-{t['dice_max']:.3f}), "
              f"detected {t['detected']} of {len(t['dice'])}")
    second = f" + {args.hard_negative_steps} on hard negatives" if args.hard_negative_steps else ""
    print(f"wrote {args.out} ({pool} synthetic lesions, {args.steps} steps{second}, {metrics['total_seconds']} s)")


def model_description(metrics: dict) -> dict:
    return {
        "name": "pasta-lung-default", "version": "0.3", "task": "segmentation",
        "description": "Small PASTA-topology network for lung lesions in chest CT, trained only on synthetic lesions.",
        "architecture": {"type": "pasta_generic_unet", "base_features": metrics["base_features"], "num_pool": 4,
                         "input_channels": 1},
        "input_spacing_mm": [1.0, 1.0, 1.0], "normalization": "pasta_slf", "patch_size": metrics["patch"],
        "labels": [{"value": 1, "term": "lung"}, {"value": 2, "term": "tumor@lung"}],
        "weights": "model.pth", "files": [{"name": "model.pth", "sha256": None}],
        # what its reports list as lesions (pastacore.candidates.Floor): smaller or less sure pieces are set apart
        "reporting_floor": {"min_long_axis_mm": 3.0, "min_volume_ml": 0.03, "min_confidence": 0.7},
        "license": "Apache-2.0 (trained by this project)", "source": "pasta train-default",
    }


def reporting_floor(description: dict) -> str:
    """The model card's paragraph on what reports leave out (empty when the model sets no floor)."""
    floor = description.get("reporting_floor")
    if not floor:
        return ""
    return f"""## Reports

`model.json` sets the reporting floor (`reporting_floor`): pieces with a long axis under {floor['min_long_axis_mm']:g} mm,
under {floor['min_volume_ml']:g} mL, or with a mean lesion probability under {floor['min_confidence']:g} are listed apart in a report,
not as lesions (`pasta report --min-confidence` and the other `--min-*` options change it). The
probability orders the candidates; it is not a calibrated probability of disease.

"""


def false_positive_range(metrics: dict) -> str:
    volumes = [s["false_positive_ml"] for s in metrics["evaluation"]]
    return f"{min(volumes):.0f}-{max(volumes):.0f} mL" if volumes else "not measured"


def wall_clipping(metrics: dict) -> str:
    reach = metrics.get("pleura_mm", 0)
    if reach <= 0:
        return "clipped by the air-based lung mask"
    return (f"reaching up to the wall: clipped by the lung mask grown {reach} mm, so no line of air\n"
            "  separates a lesion from the wall, as none separates a real one")


def warp(metrics: dict) -> str:
    mm = metrics.get("elastic_mm", 0)
    return f" (those also smoothly warped, {mm:g} mm standard deviation)" if mm else ""


def second_stage(metrics: dict) -> str:
    steps = metrics.get("hard_negative_steps", 0)
    if not steps:
        return ""
    found = " and ".join(f"{v:.0f} mL" for v in metrics.get("mined_false_positive_ml", [])) or "none"
    return (f", then {steps} steps at a quarter of the learning rate with about 40 % of the lesion-free\n"
            f"  patches centred on the first stage's own false positives in the backgrounds ({found})")


def zone_is_set(metrics: dict) -> bool:
    from ..training.default_model import default_zone_mm

    return metrics.get("zone_mm") is not None and metrics["zone_mm"] != default_zone_mm(metrics["patch"][0])


def zone(metrics: dict) -> str:
    """How far training stayed from the real tumours (older runs: half a patch + 10 mm)."""
    return f"{metrics['zone_mm']} mm" if zone_is_set(metrics) else "half a patch + 10 mm"


def tiling_rows(metrics: dict) -> str:
    tilings = metrics.get("evaluation_tilings")
    if not tilings:
        return ""
    rows = "\n".join(f"| {t['case']} | {t['dice_mean']:.3f} | {t['dice_min']:.3f}-{t['dice_max']:.3f} | "
                     f"{t['detected']} of {len(t['dice'])} | {min(t['false_positive_ml']):.1f}-{max(t['false_positive_ml']):.1f} |"
                     for t in tilings)
    return f"""Where the sliding-window tiles fall is arbitrary, and moving them by a few voxels changes the
result. The same scans scored with the tiles at {len(tilings[0]['dice'])} offsets (no test-time augmentation):

| scan | Dice, mean | Dice, range | real tumour detected | false positives (mL), range |
|---|---|---|---|---|
{rows}

"""


def model_card(metrics: dict, description: dict, args) -> str:
    """The model card: what the model is, how it was made, how it scored, what it is not for."""
    rows = "\n".join(
        f"| {s['case']} | {'8 mirrorings (--tta)' if s.get('tta') else 'none (default)'} | {s['dice']:.3f} | {'yes' if s['detected'] else 'no'} | {s['false_positive_ml']:.1f} | "
        f"{s['tumour_ml']:.1f} | {'yes' if s['case'] in metrics['backgrounds'] else 'no'} |"
        for s in metrics["evaluation"]) or "| (not evaluated) | | | | | | |"
    command = (f"pasta train-default --backgrounds {','.join(metrics['backgrounds'])} --steps {metrics['steps']} "
               f"--lesions {args.lesions} --patch {args.patch} --base-features {args.base_features} --seed {args.seed} "
               f"--spatial-augmentation {args.spatial_augmentation} --pleura-mm {metrics.get('pleura_mm', 0)}"
               + (f" --elastic-mm {metrics['elastic_mm']:g}" if metrics.get("elastic_mm") else "")
               + (f" --hard-negative-steps {metrics['hard_negative_steps']}" if metrics.get("hard_negative_steps") else "")
               + (f" --zone-mm {metrics['zone_mm']}" if zone_is_set(metrics) else "")
               + (f" --evaluate-on {args.evaluate_on}" if args.evaluate_on else "") + " --out DIR")
    return f"""# {description['name']} {description['version']}: lung lesions learnt from synthetic lesions only

**Research use only. Not for diagnosis.**

- **What it does:** segments the lungs (label 1) and lung lesions (label 2) in chest CT, on
  PASTA's 1 mm grid with PASTA's HU normalisation (SLF). PASTA's network topology (nnU-Net v1
  `Generic_UNet`) at reduced width: {metrics['base_features']} base features, 4 poolings, patch {metrics['patch'][0]}^3.
- **Training data:** real chest CT backgrounds ({', '.join(metrics['backgrounds'])}: the pyradiomics 3.1.0
  sample scans) with {metrics['synthetic_lesions']} lesions made by our procedural synthesis engine (lung tumours,
  6-70 mm, varied shape, density, texture and margins; 40 % against the chest wall, mediastinum
  or diaphragm, {wall_clipping(metrics)}). Each lesion is rendered at 1 mm and then put
  through the scan's own 5 mm slice sampling, so it is no sharper along z than the real
  anatomy. The real tumours of those scans were never training targets and never inside a
  training patch (a zone of the tumour box + {zone(metrics)} is excluded). Lung labels
  come from the classical lung mask. Lesion-free patches are centred on the lung surface
  half of the time (hard negatives).
- **Training:** {metrics['steps']} steps of batch 2{second_stage(metrics)}, AdamW, one-cycle learning rate, cross-entropy + soft
  Dice, random flips, random rotation (up to 15 degrees) and scaling (0.8-1.25) of
  {round(100 * metrics.get('spatial_augmentation', 0))} % of patches{warp(metrics)}, random HU gain/offset/noise, bf16 on CPU; {metrics['train_seconds']} s of training ({metrics['total_seconds']} s in all) on
  {metrics['machine']}. Weights stored in fp16 ({description['files'][0]['sha256'][:12]}...).
- **Reproduce:** `{command}`

## Scores on real tumours

| scan | test-time augmentation | Dice | real tumour detected | false-positive lesion volume (mL) | tumour (mL) | scan used as background |
|---|---|---|---|---|---|---|
{rows}

{tiling_rows(metrics)}A scan used as a background was seen during training (its tumour was not). Cross-wise
scores (training on one scan, scoring on the other) are in `Testing/Benchmarks/RESULTS.md`.

{reporting_floor(description)}## Limits
{len(metrics['backgrounds'])} real training scan(s) only ({', '.join(metrics['backgrounds'])}); chest CT at about 1 mm after standardisation; lung lesions only;
false positives at the diaphragm domes, the mediastinum, the heart border and hilar vessels are expected
({false_positive_range(metrics)} per scan on the sample scans). A PASTA checkpoint or an nnU-Net
result folder imported in the hub gives better results where one is available. Runs of this size
vary widely with the seed (the same command with another seed can find much less of a tumour);
`Testing/Benchmarks/RESULTS.md` records how much, and the scores above are this run's only.
"""
