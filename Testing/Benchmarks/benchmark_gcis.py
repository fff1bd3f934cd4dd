"""gCIS on the CPU: our pipeline against the public one, and a multi-path model's cost per prompt.

1. Single-path gCIS (feature_size 48, seeded random weights in the released layout) on a crop of
   the real pyradiomics ``lung2`` chest CT at test.py's 1 mm: ``pastacore`` (the family's
   ``segment_like_test_py``: MONAI transforms and sliding window, our network in inference mode with
   scaled-dot-product attention) against the public pipeline (MONAI's dict transforms reading the
   file, ``sliding_window_inference`` over the same weights in the public network's form: the
   explicit attention of MONAI <= 1.4, ``torch.no_grad``), in one run; the agreement of the label maps.
2. Multi-path gCIS (feature_size 48, ``ap_num`` 6): one window with only the chosen sub-path of each
   position (ours) against every sub-path run and masked (the public ``SwinAP``).

Usage: .venv/bin/python Testing/Benchmarks/benchmark_gcis.py [--roi 96] [--crop-mm 120 120 96]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def crop_ct(size_mm):
    """The centre of lung2, ``size_mm`` (x, y, z) wide, as a Volume."""
    from pastacore.fileio import read_volume
    from pastacore.geometry.grid import Grid
    from pastacore.geometry.volume import Volume
    from pastacore.samples import ensure_samples

    ct = read_volume(ensure_samples() / "lung2_image.nrrd")
    g = ct.grid
    counts = [min(n, int(round(mm / s))) for n, mm, s in zip(reversed(ct.array.shape), size_mm, g.spacing)]  # i, j, k
    start = [(n - c) // 2 for n, c in zip(reversed(ct.array.shape), counts)]
    k0, j0, i0 = start[2], start[1], start[0]
    array = ct.array[k0 : k0 + counts[2], j0 : j0 + counts[1], i0 : i0 + counts[0]]
    origin = np.array(g.origin) + g.direction @ (np.array(g.spacing) * np.array(start))
    return Volume(np.ascontiguousarray(array), Grid(array.shape, g.spacing, origin, g.direction))


def public_attention(network, on: bool) -> None:
    """MONAI <= 1.4's explicit windowed attention (on=True) or scaled_dot_product_attention."""
    for module in network.modules():
        if hasattr(module, "use_flash_attention"):
            module.use_flash_attention = not on


def public_test_py(path, network, config):
    """test.py's steps: MONAI dict transforms from the file, sliding window, softmax, argmax, zoom back."""
    import nibabel
    from monai import transforms
    from monai.inferers import sliding_window_inference
    from scipy import ndimage

    load = transforms.Compose(
        [
            transforms.LoadImaged(keys=["image"]),
            transforms.EnsureChannelFirstd(keys=["image"]),
            transforms.Spacingd(keys="image", pixdim=(config["space_x"], config["space_y"], config["space_z"]), mode="bilinear"),
            transforms.ScaleIntensityRanged(
                keys=["image"],
                a_min=config["a_min"],
                a_max=config["a_max"],
                b_min=config["b_min"],
                b_max=config["b_max"],
                clip=True,
            ),
        ]
    )
    image = load({"image": str(path)})["image"][None]
    roi = (config["roi_x"], config["roi_y"], config["roi_z"])
    with torch.no_grad():
        out = sliding_window_inference(
            image, roi, config["sw_batch_size"], network, overlap=config["infer_overlap"], mode="gaussian"
        )
    labels = np.argmax(torch.softmax(out, 1).cpu().numpy(), axis=1).astype(np.uint8)[0]
    target = nibabel.load(str(path)).shape
    return ndimage.zoom(labels, [t / s for t, s in zip(target, labels.shape)], order=0, prefilter=False), image.shape[2:]


def route_every_path(self, x, prompt):
    """The public SwinAP's evaluation: every sub-path runs on each sample, all but the chosen one masked."""
    weights = torch.softmax(self.prompt_router(prompt), dim=1)
    mask = torch.zeros_like(weights).scatter_(1, weights.max(1, keepdim=True)[1], 1.0)
    outs = []
    for i in range(x.shape[0]):
        sample = x[i : i + 1]
        outs.append(sum(self.path(p)(sample) * mask[i, p] for p in range(self.ap_num)))
    return torch.cat(outs, 0)


def single_path(args, folder):
    from pastacore.families.gcis.config import check_config
    from pastacore.families.gcis.network import build_network
    from pastacore.families.gcis.pipeline import segment_like_test_py
    from pastacore.fileio import read_volume, write_volume

    config = check_config({"variant": "single", "feature_size": 48, "roi_x": args.roi, "roi_y": args.roi, "roi_z": args.roi})
    torch.manual_seed(0)
    network = build_network(config)
    path = write_volume(crop_ct(args.crop_mm), Path(folder) / "lung2_crop.nii.gz")

    def public():
        public_attention(network, True)
        started = time.perf_counter()
        labels, resampled = public_test_py(path, network, config)
        return time.perf_counter() - started, labels, resampled

    def pastacore():
        public_attention(network, False)
        started = time.perf_counter()
        labels, windows = segment_like_test_py(read_volume(path), network, config)
        return time.perf_counter() - started, labels, windows

    # A B B A: each pipeline runs first once and last once, so a load that drifts during the run
    # weighs on both alike; the mean of each is reported
    public_s, ours_s = [], []
    for order in [(public, pastacore), (pastacore, public)][: max(1, args.rounds)]:
        for run in order:
            seconds, labels, extra = run()
            if run is public:
                public_s.append(seconds)
                theirs, resampled = labels, extra
            else:
                ours_s.append(seconds)
                ours, windows = labels, extra
    ct = read_volume(path)
    public_s, ours_s = float(np.mean(public_s)), float(np.mean(ours_s))
    agreement = float((ours == theirs.transpose(2, 1, 0)).mean())
    print(
        f"\n## single path: crop {'x'.join(map(str, ct.array.shape[::-1]))} voxels (i, j, k), resampled {tuple(resampled)}, {windows} windows of {args.roi}^3"
    )
    print(f"{args.rounds} run(s) of each, mean")
    print("| pipeline | time (s) | speed-up |")
    print("|---|---|---|")
    print(f"| public test.py (MONAI transforms + sliding_window_inference, explicit attention) | {public_s:.1f} | 1.00x |")
    print(f"| pastacore (segment_like_test_py) | {ours_s:.1f} | {public_s / ours_s:.2f}x |")
    print(
        f"- label agreement: {100 * agreement:.3f} % of {ours.size} voxels; labels 1 in ours: {100 * float((ours == 1).mean()):.1f} %"
    )


def multi_path(args):
    from pastacore.families.gcis import blocks
    from pastacore.families.gcis.config import check_config
    from pastacore.families.gcis.network import build_network

    config = check_config(
        {"variant": "ap", "feature_size": 48, "ap_num": args.ap_num, "roi_x": args.roi, "roi_y": args.roi, "roi_z": args.roi}
    )
    torch.manual_seed(1)
    network = build_network(config)
    x = torch.rand(1, 1, args.roi, args.roi, args.roi)
    prompt = torch.randn(1, 512)
    with torch.inference_mode():
        started = time.perf_counter()
        ours = network(x, prompt)
        ours_s = time.perf_counter() - started
        chosen = blocks.PathwaySwitch.route
        blocks.PathwaySwitch.route = route_every_path
        try:
            started = time.perf_counter()
            every = network(x, prompt)
            every_s = time.perf_counter() - started
        finally:
            blocks.PathwaySwitch.route = chosen
    print(f"\n## multi-path: one {args.roi}^3 window, ap_num {args.ap_num}, pathways {network.pathways(prompt)[0].tolist()}")
    print("| forward | time (s) | speed-up |")
    print("|---|---|---|")
    print(f"| every sub-path, masked (public SwinAP) | {every_s:.1f} | 1.00x |")
    print(f"| chosen sub-path only (pastacore) | {ours_s:.1f} | {every_s / ours_s:.2f}x |")
    print(f"- max |logits difference|: {float((ours - every).abs().max()):.2e}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roi", type=int, default=96, help="window side (test.py's default is 128; 96 keeps the run short)")
    parser.add_argument("--crop-mm", type=float, nargs=3, default=(120.0, 120.0, 96.0), help="x y z extent of the CT crop in mm")
    parser.add_argument("--ap-num", type=int, default=6)
    parser.add_argument("--rounds", type=int, choices=(1, 2), default=2, help="2: public, ours, ours, public (means reported)")
    parser.add_argument("--skip", choices=("single", "multi"), help="leave one part out")
    args = parser.parse_args()
    print(
        f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}"
    )
    with tempfile.TemporaryDirectory() as folder:
        if args.skip != "single":
            single_path(args, folder)
        if args.skip != "multi":
            multi_path(args)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
