"""Benchmark: sliding-window segmentation of a CT-sized volume, pastacore vs MONAI vs nnU-Net v2.

Same network and weights, same normalised input (the real lung2 CT interpolated to
512 x 512 x 300 at 0.7 x 0.7 x 1 mm and standardised to 1 mm), same patch size and overlap
(0.5), Gaussian blending everywhere, no mirroring:

* pastacore: ``predict_logits`` with its defaults (skips patches outside the body mask,
  channels-last memory, bf16 where the CPU supports it); the body mask is timed with it;
  also once in fp32 to separate the effect of precision from that of tiling, and once in fp32
  over the whole volume (no body box, no skipping): the very tiles nnU-Net places, which
  checks the implementation itself (the body box moves the tiles by a few voxels, and a
  network that is not translation-stable changes its argmax there);
* MONAI ``sliding_window_inference`` (fp32, whole volume);
* nnU-Net v2 ``nnUNetPredictor.predict_sliding_window_return_logits`` (fp32 on CPU, whole
  volume), given our network through ``manual_initialization``.

Each runs in its own process (time and peak memory); label maps are compared voxel by voxel.
The network is a trained model (``--model``, a PASTA-topology weight file); without one,
the script first trains a small lung model (``--train-steps``) so the comparison is between
confident predictions, not random noise. Usage:

    .venv/bin/python Testing/Benchmarks/benchmark_segment.py [--model FILE] [--patch 96] [--methods ...]

nnU-Net v2 is optional: ``pip install nnunetv2`` into the same environment to include it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_standardize import make_input  # noqa: E402  (the same CT-sized input)


def _rss_mb(field):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field)) / 1024


def prepare(model_path):
    from pastacore.geometry.standardize import standardize
    from pastacore.networks.loading import load_for_segmentation
    from pastacore.preprocessing.normalize import pasta_slf

    hu = standardize(make_input(), is_label=False).volume.array
    network = load_for_segmentation(model_path).network
    return hu, pasta_slf(hu)[None], network


def run_ours(hu, image, network, patch, amp=True, whole=False):
    from pastacore.anatomy.masks import body_mask
    from pastacore.inference.sliding_window import WindowSettings, predict_logits

    region = np.ones(hu.shape, bool) if whole else body_mask(hu)
    logits, box, run, total = predict_logits(network, image, WindowSettings(patch, 0.5, 2, device="cpu", amp=amp), region)
    labels = np.zeros(hu.shape, np.uint8)
    labels[tuple(slice(a, b) for a, b in box)] = logits.argmax(0)
    labels[~region] = 0
    return labels, {"patches_run": run, "patches_total": total}


def run_monai(hu, image, network, patch):
    import torch
    from monai.inferers import sliding_window_inference

    with torch.inference_mode():
        logits = sliding_window_inference(
            torch.from_numpy(image)[None], patch, 2, network, overlap=0.5, mode="gaussian", sigma_scale=0.125
        )
    return logits[0].argmax(0).numpy().astype(np.uint8), {}


def run_nnunet(hu, image, network, patch):
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = {
        "dataset_name": "Dataset999_Bench",
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [1, 1, 1],
        "original_median_shape_after_transp": list(hu.shape),
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "experiment_planner_used": "bench",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {},
        "configurations": {
            "3d_fullres": {
                "data_identifier": "bench",
                "preprocessor_name": "DefaultPreprocessor",
                "batch_size": 2,
                "patch_size": list(patch),
                "median_image_size_in_voxels": list(hu.shape),
                "spacing": [1, 1, 1],
                "normalization_schemes": ["CTNormalization"],
                "use_mask_for_norm": [False],
                "resampling_fn_data": "resample_data_or_seg_to_shape",
                "resampling_fn_seg": "resample_data_or_seg_to_shape",
                "resampling_fn_data_kwargs": {},
                "resampling_fn_seg_kwargs": {},
                "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
                "resampling_fn_probabilities_kwargs": {},
                "architecture": {"network_class_name": "unused", "arch_kwargs": {}, "_kw_requires_import": []},
                "batch_dice": False,
            }
        },
    }
    dataset = {
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "organ": 1, "lesion": 2},
        "numTraining": 1,
        "file_ending": ".nii.gz",
    }
    predictor = nnUNetPredictor(
        tile_step_size=0.5,
        use_gaussian=True,
        use_mirroring=False,
        perform_everything_on_device=False,
        device=torch.device("cpu"),
        verbose=False,
        allow_tqdm=False,
    )
    plans_manager = PlansManager(plans)
    predictor.manual_initialization(
        network, plans_manager, plans_manager.get_configuration("3d_fullres"), [network.state_dict()], dataset, "bench", None
    )
    with torch.inference_mode():
        logits = predictor.predict_sliding_window_return_logits(torch.from_numpy(image))
    return logits.argmax(0).numpy().astype(np.uint8), {}


def run_ours_fp32(hu, image, network, patch):
    return run_ours(hu, image, network, patch, amp=False)


def run_ours_whole(hu, image, network, patch):
    return run_ours(hu, image, network, patch, amp=False, whole=True)


METHODS = {
    "pastacore": run_ours,
    "pastacore fp32": run_ours_fp32,
    "pastacore fp32, whole-volume tiles": run_ours_whole,
    "MONAI sliding_window_inference": run_monai,
    "nnU-Net v2 nnUNetPredictor": run_nnunet,
}


def child(method, model_path, patch, out):
    import torch

    torch.set_num_threads(2)
    hu, image, network = prepare(model_path)
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    before = _rss_mb("VmRSS")
    start = time.perf_counter()
    labels, extra = METHODS[method](hu, image, network, patch)
    seconds = time.perf_counter() - start
    np.save(out, labels)
    print(json.dumps({"seconds": seconds, "peak_extra_mb": _rss_mb("VmHWM") - before, **extra}))


def train_model(steps, path):
    import torch

    from pastacore.anatomy.masks import lung_mask
    from pastacore.fileio import read_volume
    from pastacore.geometry.standardize import standardize
    from pastacore.samples import sample_paths
    from pastacore.training.trainer import TrainSettings, train

    cases = []
    for case in ("lung1", "lung2"):
        hu = standardize(read_volume(sample_paths(case)[0]), is_label=False).volume.array
        cases.append((hu, lung_mask(hu).astype(np.uint8)))
    network, log = train(cases, TrainSettings(steps=steps))
    torch.save(network.state_dict(), path)
    print(f"trained a lung model for {steps} steps in {log.seconds:.0f} s", file=sys.stderr)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", help="PASTA-topology weight file (default: train a small lung model first)")
    parser.add_argument("--train-steps", type=int, default=200)
    parser.add_argument("--patch", type=int, default=96)
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    patch = (args.patch,) * 3
    if args.child:
        return child(args.child, args.model, patch, args.out)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or f"{tmp}/lung_model.pth"
        if not args.model:
            train_model(args.train_steps, model)
        results, labels = {}, {}
        for index, method in enumerate(args.methods):
            out = f"{tmp}/{index}.npy"
            proc = subprocess.run(
                [sys.executable, __file__, "--child", method, "--model", model, "--patch", str(args.patch), "--out", out],
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                print(f"{method}: failed ({proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else 'no output'})")
                continue
            results[method] = json.loads(proc.stdout.strip().splitlines()[-1])
            labels[method] = np.load(out)
    # The same post-processing for everyone: our pipeline discards predictions outside the body
    # (air outside the patient looks like lung to a lung model), so compare inside the body.
    from pastacore.anatomy.masks import body_mask

    body = body_mask(prepare(args.model)[0])
    for method in labels:
        labels[method] = np.where(body, labels[method], 0)
    ours = results.get("pastacore")
    print(f"Volume 512x512x300 at 0.7x0.7x1 mm standardised to 1 mm; patch {patch}, overlap 0.5; 2 CPU threads.")
    print()
    print(f"Agreement is over the whole volume after zeroing outside the body ({100 * body.mean():.0f} % of voxels) for all.")
    print()
    print("| method | time (s) | pastacore speed-up | extra peak memory (MB) | voxel agreement with pastacore |")
    print("|---|---|---|---|---|")
    for method, r in results.items():
        agree = (labels[method] == labels["pastacore"]).mean() if "pastacore" in labels else float("nan")
        speed = r["seconds"] / ours["seconds"] if ours else float("nan")
        print(f"| {method} | {r['seconds']:.1f} | {speed:.2f}x | {r['peak_extra_mb']:.0f} | {100 * agree:.3f} % |")
    if ours:
        print(f"\npastacore ran {ours['patches_run']} of {ours['patches_total']} patches (the rest lie outside the body).")
    names = list(labels)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            print(
                f"- agreement {a} vs {b}: {100 * (labels[a] == labels[b]).mean():.3f} %;"
                f" inside the body {100 * (labels[a] == labels[b])[body].mean():.3f} %;"
                f" foreground voxels {int((labels[a] > 0).sum())} vs {int((labels[b] > 0).sum())}"
            )


if __name__ == "__main__":
    main()
