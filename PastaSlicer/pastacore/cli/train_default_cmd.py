"""``pasta train-default``: reproduce the built-in default model (synthetic lung lesions only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..training.default_card import MODEL_FILES
from .argtypes import seed

if TYPE_CHECKING:
    import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-default",
        help="train the built-in lung-lesion model on synthetic lesions (CPU)",
        description="Backgrounds are real chest CTs; every lesion is synthetic; the real tumours "
        "are excluded from training. With --evaluate-on, scores Dice, detection and "
        "false-positive volume on that scan's real tumour.",
    )
    p.add_argument("--backgrounds", default="lung1,lung2", help="sample cases used as backgrounds (default lung1,lung2)")
    p.add_argument("--evaluate-on", default="", help="sample cases whose real tumours are scored after training")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--lesions", type=int, default=80, help="synthetic lesions per background")
    p.add_argument("--patch", type=int, default=96)
    p.add_argument("--base-features", type=int, default=8)
    p.add_argument(
        "--spatial-augmentation",
        type=float,
        default=0.5,
        help="share of training patches randomly rotated and scaled (default 0.5)",
    )
    p.add_argument(
        "--elastic-mm",
        type=float,
        default=0.0,
        help="smooth random warp (mm, standard deviation) of the rotated and scaled patches (default 0)",
    )
    p.add_argument(
        "--pleura-mm",
        type=int,
        default=0,
        help="how far (mm) lesions against the wall may reach past the air-based lung mask, filling "
        "the partial-volume rim up to the wall (default 0: clipped at the air boundary, as the "
        "built-in model; 2 measured no better, see Testing/Benchmarks/RESULTS.md)",
    )
    p.add_argument(
        "--hard-negative-steps",
        type=int,
        default=0,
        help="a second stage of this many steps in which about 40 %% of the lesion-free patches are centred on "
        "the first stage's own false positives in the backgrounds (default 0: none)",
    )
    p.add_argument(
        "--zone-mm",
        type=int,
        default=None,
        help="no training patch or synthetic lesion comes within this many mm of a real tumour's box "
        "(default: half a patch + 10 mm, as the built-in model)",
    )
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--out", required=True, help="output folder for the model (weights, model.json, metrics)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace the files of an earlier model in --out (other files there are kept)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    import platform
    import time

    import torch

    from ..errors import PastaError
    from ..fileio.atomic import atomic_directory, check_output_dir
    from ..training.default_card import training_precision_name, write_default_model
    from ..training.default_model import default_zone_mm, evaluate, evaluate_tilings, load_background, train_default
    from ..training.trainer import TrainSettings
    from .progress import bar

    names = [n for n in args.backgrounds.split(",") if n]
    targets = [n for n in args.evaluate_on.split(",") if n]
    if not names:
        raise PastaError("give at least one background case")
    if args.zone_mm is not None and args.zone_mm < 0:
        raise PastaError(f"--zone-mm must be 0 or more, got {args.zone_mm}")
    from ..training.recipe import require_monai

    require_monai()
    patch = (args.patch,) * 3
    settings = TrainSettings(
        base_features=args.base_features,
        num_pool=4,
        patch_size=patch,
        steps=args.steps,
        seed=args.seed,
        spatial_augmentation=args.spatial_augmentation,
        elastic_mm=args.elastic_mm,
    )
    started = time.perf_counter()
    check_output_dir(args.out, args.overwrite, MODEL_FILES)
    with (
        atomic_directory(args.out, overwrite=args.overwrite, owned=MODEL_FILES) as folder,
        bar("pasta train-default") as progress,
    ):
        backgrounds = [load_background(n, patch, args.zone_mm) for n in names]
        trained = train_default(
            backgrounds,
            settings,
            args.lesions,
            lambda f, m: progress(0.9 * f, m),
            pleura_mm=args.pleura_mm,
            hard_negative_steps=args.hard_negative_steps,
        )
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
        metrics = {
            "backgrounds": names,
            "synthetic_lesions": pool,
            "steps": args.steps,
            "patch": list(patch),
            "base_features": args.base_features,
            "seed": args.seed,
            "spatial_augmentation": args.spatial_augmentation,
            "elastic_mm": args.elastic_mm,
            "pleura_mm": args.pleura_mm,
            "zone_mm": default_zone_mm(args.patch) if args.zone_mm is None else args.zone_mm,
            "hard_negative_steps": args.hard_negative_steps,
            "mined_false_positive_ml": trained.mined_ml,
            "train_seconds": round(log.seconds + (trained.second_log.seconds if trained.second_log else 0)),
            "total_seconds": round(time.perf_counter() - started),
            "final_loss": float(sum(log.losses[-50:]) / 50),
            "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
            "evaluation": scores,
            "trainer": "monai",
            "precision": training_precision_name(),
            "evaluation_tilings": tilings,
        }
        write_default_model(folder, network, metrics, reproduce_command(metrics, args))
    for s in scores:
        print(
            f"{s['case']}{' (TTA)' if s['tta'] else ''}: Dice {s['dice']:.3f}, real tumour {'detected' if s['detected'] else 'MISSED'}, "
            f"false positives {s['false_positive_ml']:.1f} mL (tumour {s['tumour_ml']:.1f} mL)"
        )
    for t in tilings:
        print(
            f"{t['case']} over {len(t['dice'])} tile offsets: Dice {t['dice_mean']:.3f} ({t['dice_min']:.3f}-{t['dice_max']:.3f}), "
            f"detected {t['detected']} of {len(t['dice'])}"
        )
    second = f" + {args.hard_negative_steps} on hard negatives" if args.hard_negative_steps else ""
    print(f"wrote {args.out} ({pool} synthetic lesions, {args.steps} steps{second}, {metrics['total_seconds']} s)")


def reproduce_command(metrics: dict, args: argparse.Namespace) -> str:
    """The command line that trains this model again (for its model card)."""
    from ..training.default_card import zone_is_set

    return (
        f"pasta train-default --backgrounds {','.join(metrics['backgrounds'])} --steps {metrics['steps']} "
        f"--lesions {args.lesions} --patch {args.patch} --base-features {args.base_features} --seed {args.seed} "
        f"--spatial-augmentation {args.spatial_augmentation} --pleura-mm {metrics.get('pleura_mm', 0)}"
        + (f" --elastic-mm {metrics['elastic_mm']:g}" if metrics.get("elastic_mm") else "")
        + (f" --hard-negative-steps {metrics['hard_negative_steps']}" if metrics.get("hard_negative_steps") else "")
        + (f" --zone-mm {metrics['zone_mm']}" if zone_is_set(metrics) else "")
        + (f" --evaluate-on {args.evaluate_on}" if args.evaluate_on else "")
        + " --out DIR"
    )
