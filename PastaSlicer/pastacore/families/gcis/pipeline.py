"""gCIS's own inference pipeline, as its public test.py runs it, on a :class:`~pastacore.geometry.volume.Volume`.

test.py loads the image as it is stored (no orientation step: the array stays in the file's
voxel order, ``(i, j, k)`` with a RAS affine), resamples it to ``space_x/y/z`` mm (MONAI
``Spacing``, bilinear), clips HU ``a_min..a_max`` onto ``b_min..b_max``, runs MONAI's sliding
window (``roi_x/y/z``, ``infer_overlap``, Gaussian blending, ``sw_batch_size`` windows at a time),
takes the softmax's argmax, and brings that label array back to the input's voxel counts with a
nearest-neighbour ``scipy.ndimage.zoom`` of the array (not by an affine inverse). This module does
the same with MONAI's own transforms and sliding window, so the numbers are the public ones; the
network runs in inference mode and a multi-path model runs only the chosen sub-path of each
position (:mod:`.blocks`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from ...errors import CancelledError
from ...geometry.volume import Volume
from .config import spacing, window

if TYPE_CHECKING:
    import torch


def model_input(volume: Volume, config: dict) -> torch.Tensor:
    """The network's input as test.py's transforms make it: (1, 1, X, Y, Z) float32 tensor on the
    ``space_x/y/z`` grid, in the stored voxel order (i fastest in the file = X), HU windowed to
    ``b_min..b_max``."""
    import torch
    from monai.data import MetaTensor
    from monai.transforms import ScaleIntensityRange, Spacing

    stored = np.ascontiguousarray(np.asarray(volume.array, dtype=np.float32).transpose(2, 1, 0))
    image = MetaTensor(torch.from_numpy(stored)[None], affine=torch.as_tensor(volume.grid.ijk_to_ras(), dtype=torch.float64))
    image = Spacing(pixdim=spacing(config), mode="bilinear")(image)
    image = ScaleIntensityRange(config["a_min"], config["a_max"], config["b_min"], config["b_max"], clip=True)(image)
    return image.as_tensor()[None].float()


def window_count(shape: tuple, roi: tuple, overlap: float) -> int:
    """How many windows MONAI's sliding window runs over an image of ``shape`` (its scan rule)."""
    count = 1
    for size, side in zip(shape, roi):
        size = max(size, side)  # a smaller image is padded to one window
        step = max(1, int(side * (1 - overlap))) if size > side else side
        count *= math.ceil((size - side) / step) + 1
    return count


class WindowPredictor:
    """The network as the sliding window's predictor: ``prompt`` (1, 512) bound for a multi-path
    model, ``progress(fraction, message)`` after each batch of windows, ``is_cancelled()`` polled
    before each (raising :class:`~pastacore.errors.CancelledError`)."""

    def __init__(
        self,
        network: torch.nn.Module,
        prompt: torch.Tensor | None = None,
        total: int = 1,
        progress: Callable | None = None,
        is_cancelled: Callable | None = None,
    ) -> None:
        self.network, self.prompt, self.total = network, prompt, max(1, total)
        self.progress, self.is_cancelled, self.done = progress, is_cancelled, 0

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if self.is_cancelled is not None and self.is_cancelled():
            raise CancelledError()
        out = self.network(batch) if self.prompt is None else self.network(batch, self.prompt.to(batch.device))
        self.done += batch.shape[0]
        if self.progress is not None:
            self.progress(min(1.0, self.done / self.total), f"window {min(self.done, self.total)}/{self.total}")
        return out


def blended_logits(
    network: torch.nn.Module,
    image: torch.Tensor,
    config: dict,
    prompt: torch.Tensor | None = None,
    device: str = "cpu",
    progress: Callable | None = None,
    is_cancelled: Callable | None = None,
) -> tuple:
    """MONAI's sliding window over ``image`` (1, C, X, Y, Z) with the config's window, overlap,
    batch and blending: ((1, out_channels, X, Y, Z) float32 logits on the CPU, windows run)."""
    import torch
    from monai.inferers import sliding_window_inference

    roi = window(config)
    predictor = WindowPredictor(
        network, prompt, window_count(tuple(image.shape[2:]), roi, config["infer_overlap"]), progress, is_cancelled
    )
    with torch.inference_mode():
        logits = sliding_window_inference(
            image,
            roi,
            config["sw_batch_size"],
            predictor,
            overlap=config["infer_overlap"],
            mode=config["mode"],
            sw_device=device,
            device="cpu",
        )
    return logits, predictor.done


def labels_back(labels: np.ndarray, shape: tuple) -> np.ndarray:
    """test.py's ``resample_3d``: the label array zoomed to ``shape`` by nearest neighbour (scipy,
    order 0, no prefilter), the zoom factors being the ratios of the voxel counts."""
    from scipy import ndimage

    factors = tuple(float(t) / float(s) for t, s in zip(shape, labels.shape))
    return ndimage.zoom(labels, factors, order=0, prefilter=False)


def segment_like_test_py(
    volume: Volume,
    network: torch.nn.Module,
    config: dict,
    prompt: torch.Tensor | None = None,
    device: str = "cpu",
    progress: Callable | None = None,
    is_cancelled: Callable | None = None,
) -> tuple:
    """``(labels, windows run)``: the label map test.py writes for ``volume``, as ``array[k, j, i]``
    uint8 on ``volume``'s grid, and how many windows the network ran on.

    ``network`` in evaluation mode on ``device``; ``prompt`` the (1, 512) embedding of a multi-path
    model. ``progress(fraction, message)`` follows the windows."""
    import torch

    image = model_input(volume, config)
    logits, windows = blended_logits(network, image, config, prompt, device, progress, is_cancelled)
    labels = torch.argmax(torch.softmax(logits, 1), dim=1)[0].numpy().astype(np.uint8)
    stored_shape = tuple(reversed(volume.array.shape))
    return np.ascontiguousarray(labels_back(labels, stored_shape).transpose(2, 1, 0)), windows
