"""PASTA features: standardise, crop, normalise, run the encoder, pool (one vector per organ or lesion).

The path follows PASTA's classification code (see the reference notes, sections 1.3, 2.2, 2.4):

1. CT and mask are resampled to PASTA's 1 mm grid (:func:`pastacore.geometry.standardize.standardize`);
2. the CT is mapped by PASTA's piecewise-linear HU function (SLF) to [0, 1];
3. the crop is cut from the normalised CT, so padding with 0 means "air" (<= -1000 HU):

   * ``organ``: the organ's bounding box +- 32 voxels, centred padding to >= 128^3, trilinear
     resize to exactly 128^3 (plain-CT tumour detection);
   * ``lesion``: a 96^3 box centred on the lesion's bounding box (report attributes, staging);

4. the encoder (stages 0..P-1, not the bottleneck) runs and its output is averaged over space:
   1024 values for PASTA (``PastaUNet.encode_features``).

PASTA's classification loader reads volumes as [S, A, L] (its y axis is flipped against the
[S, P, L] of the standardised file, section 2.3); with ``flip_ap`` (default) the crop is flipped
the same way before the encoder sees it. :class:`CropItem` keeps every transform, so any
point of a crop maps back onto the original grid (:meth:`CropItem.crop_to_source_index`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import PastaError
from ..geometry.grid import Grid
from ..geometry.standardize import standardize
from ..geometry.volume import Volume
from ..preprocessing.crops import Crop, lesion_crop, organ_crop
from ..preprocessing.normalize import pasta_slf
from ..progress import reporter

if TYPE_CHECKING:
    from collections.abc import Sequence

    import torch

    from ..progress import Cancelled, Progress


CROP_KINDS = ("organ", "lesion")
ORGAN_SIZE = (128, 128, 128)
ORGAN_MARGIN = 32
LESION_SIZE = (96, 96, 96)


@dataclass(frozen=True)
class CropShape:
    """What the encoder sees: an organ's crop (voxels at 1 mm, and the margin in voxels kept
    around the organ) and a lesion's crop (voxels at 1 mm, centred on the lesion)."""

    organ_size: tuple[int, int, int] = ORGAN_SIZE
    organ_margin: int = ORGAN_MARGIN
    lesion_size: tuple[int, int, int] = LESION_SIZE


@dataclass
class CropItem:
    """One crop: ``crop.array`` is SLF-normalised CT on PASTA's 1 mm grid, axes [S, P, L]."""

    id: str
    kind: str  # organ | lesion
    label: int  # mask value the item comes from
    component: int  # connected-component number (1 = largest), 0 for a whole label
    crop: Crop  # cut from the standardised, normalised CT
    grid: Grid  # the standardised grid the crop was cut from
    source_grid: Grid  # the grid of the CT as given
    flip_ap: bool = True

    @property
    def input(self) -> np.ndarray:
        """What the encoder sees: the crop, flipped front-to-back when ``flip_ap``, float32."""
        array = self.crop.array[:, ::-1, :] if self.flip_ap else self.crop.array
        return np.ascontiguousarray(array, dtype=np.float32)

    def crop_to_standard_index(self, kji: np.ndarray) -> np.ndarray:
        """Continuous (k, j, i) indices of ``crop.array`` to (k, j, i) on the standardised grid."""
        kji = np.asarray(kji, dtype=float)
        size = np.array(self.crop.array.shape, float)
        padded = np.array(self.crop.padded_shape, float)
        # torch/our trilinear resize with align_corners=False: centres of the output voxels
        position = (kji + 0.5) * (padded / size) - 0.5
        start = np.array([b[0] - p[0] for b, p in zip(self.crop.box, self.crop.pad)], float)
        return position + start

    def crop_to_lps(self, kji: np.ndarray) -> np.ndarray:
        return self.grid.index_to_lps(self.crop_to_standard_index(kji)[..., ::-1])

    def crop_to_source_index(self, kji: np.ndarray) -> np.ndarray:
        """Continuous (i, j, k) indices on the original grid of a (k, j, i) position in the crop."""
        return self.source_grid.lps_to_index(self.crop_to_lps(kji))

    def input_to_crop_index(self, kji: np.ndarray) -> np.ndarray:
        """(k, j, i) of the network input to (k, j, i) of ``crop.array`` (undoes the flip)."""
        kji = np.array(kji, dtype=float)
        if self.flip_ap:
            kji[..., 1] = self.crop.array.shape[1] - 1 - kji[..., 1]
        return kji


def _present_labels(mask: np.ndarray) -> list:
    return [int(v) for v in np.unique(mask) if v != 0]


def item_masks(mask: np.ndarray, crop: str, labels: Sequence[int] | None = None, split_components: bool = True) -> list:
    """``[(label, component, component mask)]`` in the order of the report's lesion numbers.

    ``lesion``: every connected component (26-connected, largest first) of each label, or each
    whole label without ``split_components``; ``organ``: each whole label.
    """
    if crop not in CROP_KINDS:
        raise PastaError(f"unknown crop '{crop}'; choose {' or '.join(CROP_KINDS)}")
    present = _present_labels(mask)
    if not present:
        raise PastaError("the mask is empty: there is no organ or lesion to crop around")
    if labels is None:
        wanted = present
    else:
        wanted = [int(v) for v in labels]
        absent = [v for v in wanted if v not in present]
        if absent:
            raise PastaError(
                f"label {', '.join(map(str, absent))} is not present in the mask (labels present: {', '.join(map(str, present))})"
            )
    from ..report.measure import MAX_LESIONS, lesion_components

    out = []
    for label in wanted:
        if crop == "organ":
            out.append((label, 0, mask == label))
            continue
        for component, box, local in lesion_components(mask, label, split_components, MAX_LESIONS - len(out)):
            full = np.zeros(mask.shape, bool)
            full[box] = local
            out.append((label, component if split_components else 0, full))
    return out


def item_id(case: str, crop: str, label: int, index: int, labels_count: int) -> str:
    """Row id: the case for a single organ; ``case:labelN`` / ``case:lesionK`` otherwise."""
    if crop == "organ":
        return case if labels_count == 1 else f"{case}:label{label}"
    return f"{case}:lesion{index}"


def prepare_crops(
    image: Volume,
    mask: Volume,
    crop: str = "lesion",
    labels: Sequence[int] | None = None,
    split_components: bool = True,
    case: str = "case",
    flip_ap: bool = True,
    shape: CropShape = CropShape(),
    progress: Progress | None = None,
) -> list:
    """The :class:`CropItem` of every organ label or lesion of ``mask`` (on ``image``'s grid).

    Lesions are numbered as in the report (label by label, largest component first). A lesion
    too small to survive resampling to 1 mm is cropped around its centroid.
    """
    from ..fileio import as_label

    mask = as_label(mask, "the mask")
    image.check_matches(mask, "mask")
    parts = item_masks(mask.array, crop, labels, split_components)
    labels_count = len({label for label, _c, _m in parts})
    named = (
        (label, component, item_id(case, crop, label, n, labels_count), m)
        for n, (label, component, m) in enumerate(parts, start=1)
    )
    return crops_from_masks(image, named, crop, flip_ap, shape, progress)


def crops_from_masks(
    image: Volume,
    parts: Sequence[tuple[int, int, str, np.ndarray]],
    crop: str = "lesion",
    flip_ap: bool = True,
    shape: CropShape = CropShape(),
    progress: Progress | None = None,
) -> list:
    """:class:`CropItem` list for ``parts``: ``(label, component, id, boolean mask on image's grid)``."""
    if crop not in CROP_KINDS:
        raise PastaError(f"unknown crop '{crop}'; choose {' or '.join(CROP_KINDS)}")
    image.check_finite()
    # Every item in one label map on the original grid, standardised once (nearest neighbour).
    numbered = np.zeros(image.array.shape, np.uint16)
    keys, centroids = [], []
    for label, component, ident, m in parts:
        if len(keys) == 65535:
            raise PastaError("more than 65535 organs or lesions; crop them in several runs")
        m = np.asarray(m, bool)
        if m.shape != numbered.shape:
            raise PastaError(f"mask shape {m.shape} does not match image shape {numbered.shape}")
        if not m.any():
            raise PastaError(f"{ident} is empty: there is nothing to crop around")
        numbered[m] = len(keys) + 1
        keys.append((int(label), int(component), str(ident)))
        centroids.append(np.argwhere(m).mean(axis=0)[::-1])  # (i, j, k) on the source grid
    if not keys:
        raise PastaError("no organ or lesion to crop around")
    if progress:
        progress(0.1, "standardising to 1 mm")
    std_image = standardize(image, is_label=False)
    std_numbers = standardize(Volume(numbered, image.grid, is_label=True), is_label=True).volume.array
    del numbered
    grid = std_image.volume.grid
    normalised = pasta_slf(std_image.volume.array)
    del std_image
    out = []
    for n, (label, component, ident) in enumerate(keys, start=1):
        region = std_numbers == n
        if not region.any():  # smaller than a 1 mm voxel after resampling: keep its centre
            kji = np.rint(grid.lps_to_index(image.grid.index_to_lps(centroids[n - 1]))[::-1]).astype(int)
            kji = np.clip(kji, 0, np.array(region.shape) - 1)
            region[tuple(kji)] = True
        if crop == "organ":
            cut = organ_crop(normalised, region, size=tuple(shape.organ_size), margin=shape.organ_margin, pad_value=0.0)
        else:
            cut = lesion_crop(normalised, region, size=tuple(shape.lesion_size), pad_value=0.0)
        out.append(CropItem(ident, crop, label, component, cut, grid, image.grid, flip_ap))
        if progress:
            progress(0.2 + 0.8 * n / len(keys), f"cropped {ident}")
    return out


@dataclass
class FeatureTable:
    """Features of several items: ``ids[n]`` names row ``features[n]`` (C values)."""

    ids: list
    features: np.ndarray
    items: list | None = None


def extract_features(
    network: torch.nn.Module,
    items: Sequence[CropItem],
    batch_size: int = 2,
    device: str = "cpu",
    progress: Progress | None = None,
    cancelled: Cancelled | None = None,
) -> np.ndarray:
    """Encoder features (N, C) of the :class:`CropItem` list, ``batch_size`` crops per forward pass."""
    import torch

    if not items:
        raise PastaError("nothing to extract features from")
    batch_size = max(1, int(batch_size))
    network = network.to(device).eval()
    rows = []
    with torch.inference_mode():
        for start in range(0, len(items), batch_size):
            if cancelled is not None and cancelled():
                from ..errors import CancelledError

                raise CancelledError("feature extraction was cancelled")
            batch = np.stack([item.input for item in items[start : start + batch_size]])[:, None]
            x = torch.from_numpy(batch).to(device)
            rows.append(network.encode_features(x).float().cpu().numpy())
            if progress:
                done = min(start + batch_size, len(items))
                progress(done / len(items), f"features {done}/{len(items)}")
    return np.concatenate(rows, axis=0).astype(np.float32)


def compute_features(
    image: Volume,
    mask: Volume,
    network: torch.nn.Module,
    crop: str = "lesion",
    labels: Sequence[int] | None = None,
    split_components: bool = True,
    case: str = "case",
    batch_size: int = 2,
    device: str = "cpu",
    flip_ap: bool = True,
    progress: Progress | None = None,
    cancelled: Cancelled | None = None,
) -> FeatureTable:
    """Crops and features in one call; ``progress(fraction, message)`` covers both."""
    step = reporter(progress)
    items = prepare_crops(image, mask, crop, labels, split_components, case, flip_ap, progress=lambda f, m="": step(0.3 * f, m))
    features = extract_features(
        network, items, batch_size, device, progress=lambda f, m="": step(0.3 + 0.7 * f, m), cancelled=cancelled
    )
    return FeatureTable([item.id for item in items], features, items)
