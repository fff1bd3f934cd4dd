"""GUI-thread time of the measurement table's update after a Segment Editor edit, on slicer-core.

A 512 x 512 x 300 CT (0.7 x 0.7 x 1 mm) with two air-filled lungs, a "Lung" segment and a
"Lung tumor" segment of three lesions (6 to 20 voxels in radius), as Segment makes them. Each
edit paints a 4 x 4 x 1 voxel stroke onto one lesion, as the editor's paint does, then the
table is measured again as the report panel does after an edit (``ReportController.measure``).

Compared in one run: the quick path the panel uses (the CT read as a view, the labels built
from the segments' own labelmaps, unchanged lesions' measurements kept) against the reference
path (the CT copied and the segments exported to a label map node, every lesion measured).
Usage::

    python Testing/Benchmarks/benchmark_edit_measure.py [--edits 5]

Prints a Markdown table for ``RESULTS.md``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np

SHAPE = (300, 512, 512)
LESIONS = (((150, 250, 160), 12), ((100, 300, 350), 6), ((200, 200, 380), 20))


def scene_with_segments():
    from pastacore.geometry import Grid, Volume
    from pastacore.mrml import segmentations, volumes
    from pastacore.mrml.scene import new_scene
    from pastacore.terminology import segment_info

    ct = np.full(SHAPE, -1000, np.int16)
    ct[:, 60:450, 40:470] = 40
    ct[20:280, 120:400, 80:240] = -850
    ct[20:280, 120:400, 280:440] = -850
    labels = np.zeros(SHAPE, np.uint8)
    labels[ct == -850] = 1
    k, j, i = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    for (ck, cj, ci), r in LESIONS:
        labels[(k - ck) ** 2 + (j - cj) ** 2 + (i - ci) ** 2 <= r * r] = 2
    volume = Volume(ct, Grid(SHAPE, (0.7, 0.7, 1.0), (0.0, 0.0, 0.0)))
    scene = new_scene().scene
    node = volumes.node_from_volume(scene, volume, "ct")
    terms = {1: segment_info("lung"), 2: segment_info("tumor@lung")}
    segmentation, _ = segmentations.add_labels_to_segmentation(scene, volume.with_array(labels, is_label=True), terms, node)
    return scene, node, segmentation


def paint(segmentation, stroke: int) -> None:
    """A Segment Editor paint stroke (4 x 4 x 1 voxels) on the first lesion's edge."""
    import slicer
    from vtk.util.numpy_support import vtk_to_numpy

    name = slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName()
    content = segmentation.GetSegmentation()
    sid = next(s for s in content.GetSegmentIDs() if "tumor" in content.GetSegment(s).GetName().lower())
    segment = content.GetSegment(sid)
    image = segment.GetRepresentation(name)
    e = image.GetExtent()
    data = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(e[5] - e[4] + 1, e[3] - e[2] + 1, e[1] - e[0] + 1)
    (ck, cj, ci), r = LESIONS[0]
    k, j, i = ck - e[4], cj - e[2], ci + r - e[0] + stroke
    data[k - 2 : k + 2, j - 2 : j + 2, i] = segment.GetLabelValue()
    image.Modified()
    segment.Modified()


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=5)
    args = parser.parse_args()

    from pastacore.tasks import InlineRunner
    from PastaSlicerLib.controllers import ReportController

    scene, node, segmentation = scene_with_segments()
    quick = ReportController(scene, InlineRunner())
    reference = ReportController(scene, InlineRunner())
    first = timed(lambda: quick.measure(node, segmentation))
    times = {"quick (the panel)": [], "reference (export + copy, all lesions)": []}
    for stroke in range(args.edits):
        paint(segmentation, stroke)
        times["quick (the panel)"].append(timed(lambda: quick.measure(node, segmentation)))
        times["reference (export + copy, all lesions)"].append(timed(lambda: reference.measure(node, segmentation, quick=False)))
    same = [m.volume_ml for m in quick.measure(node, segmentation)[1]] == [
        m.volume_ml for m in reference.measure(node, segmentation, quick=False)[1]
    ]
    print(f"{platform.machine()}, {platform.python_version()}; CT {'x'.join(map(str, SHAPE[::-1]))}, {args.edits} edits")
    print(f"first measurement (nothing kept): {first:.2f} s; quick and reference give the same lesions: {same}\n")
    print("| path | median s per edit | min s |")
    print("|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.3f} | {min(values):.3f} |")
    ratio = statistics.median(times["reference (export + copy, all lesions)"]) / statistics.median(times["quick (the panel)"])
    print(f"\nquick path {ratio:.1f}x faster than the reference")


if __name__ == "__main__":
    main()
