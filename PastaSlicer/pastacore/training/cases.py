"""A user's labelled cases, ready to fine-tune on and to validate with.

Each case is a CT and a label map on its grid. The label map's values are read as
``pasta report`` reads them: a ``.seg.nrrd`` says by its segment names which are lesions;
otherwise PASTA-Gen's convention applies (1 = organ, 2 = lesion) unless ``lesion_labels`` /
``organ_labels`` say which values are which. A value that is neither is refused, and a map
without its lesion value is refused with the fix in the message: nothing is guessed.

The organ target comes from the label map when it holds the organ, else (``organ_source``)
from the classical mask of the model's organ (the lungs for a lung model), else from the
start model's own organ prediction; ``"none"`` trains organ voxels as background.
CT and targets are standardised as segmentation does (PASTA's 1 mm grid).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import PastaError, option
from ..geometry.volume import Volume

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ..progress import Cancelled, Progress
    from .start_model import StartModel


ORGAN_SOURCES = ("auto", "labels", "classical", "model", "none")
SYNTHETIC_ZONE_MM = 10  # synthetic lesions stay this far from a real one


@dataclass
class LabelledCase:
    name: str
    image: Volume  # the CT on its own grid (validation runs segmentation on it)
    lesion: np.ndarray  # bool, the real lesions on the CT's own grid
    hu: np.ndarray  # standardised CT (1 mm)
    targets: np.ndarray  # uint8 classes of the network on the standard grid
    organ: np.ndarray  # bool organ on the standard grid
    grid: object  # the standard grid
    organ_source: str  # where the organ target came from
    slice_positions: np.ndarray | None = None
    slice_mm: float = 1.0

    @property
    def lesion_ml(self) -> float:
        return float(self.lesion.sum() * np.prod(self.image.grid.spacing) / 1000)


def split_label_values(
    labels: Volume,
    lesion_labels: Sequence[int] | None = None,
    organ_labels: Sequence[int] | None = None,
    what: str = "the label map",
) -> tuple:
    """``(lesion values, organ values)`` of a user's label map (see the module's notes)."""
    present = sorted(int(v) for v in np.unique(labels.array) if v != 0)
    segments = labels.meta.get("segments") or []
    if segments and lesion_labels is None and organ_labels is None:
        from ..terminology import is_lesion

        lesions = tuple(s["label"] for s in segments if is_lesion(s["name"], s.get("terminology", "")))
        organs = tuple(s["label"] for s in segments if s["label"] not in lesions)
        if not any(v in present for v in lesions):
            names = ", ".join(s["name"] for s in segments) or "none"
            raise PastaError(
                f"{what} has no lesion segment (segments: {names}); name the lesion segments as "
                f"lesions (e.g. 'Lung tumor') or set {option('lesion_label')} to the label that holds them"
            )
        return lesions, organs
    lesions = tuple(lesion_labels) if lesion_labels else (2,)
    organs = tuple(organ_labels) if organ_labels is not None else ((1,) if not lesion_labels else ())
    if not any(v in present for v in lesions):
        given = option("lesion_label") if lesion_labels else "PASTA-Gen's convention (1 = organ, 2 = lesion)"
        raise PastaError(
            f"{what} has no lesion label {', '.join(map(str, lesions))} (labels present: "
            f"{', '.join(map(str, present)) or 'none'}); by {given} that is where lesions are: "
            f"set {option('lesion_label')} to the label that holds the lesions"
        )
    other = [v for v in present if v not in lesions and v not in organs]
    if other:
        raise PastaError(
            f"{what} holds label(s) {', '.join(map(str, other))}, which are neither lesion "
            f"({', '.join(map(str, lesions))}) nor organ ({', '.join(map(str, organs)) or 'none'}); "
            f"say which with {option('lesion_label')} / {option('organ_label')}"
        )
    return lesions, organs


def _organ_mask(source: str, std, image: Volume, labelled_organ, start) -> tuple:
    """``(organ mask on the standard grid, the source used)``."""
    from ..anatomy.organs import classical_mask_standard, classical_search_region

    classical = classical_search_region(start.organ)
    if source == "auto":
        source = (
            "labels"
            if labelled_organ is not None and labelled_organ.any()
            else "classical"
            if classical
            else "model"
            if start.head_loaded
            else ""
        )
        if not source:
            raise PastaError(
                "the label maps hold no organ, the model's organ has no classical mask and the start "
                f"model has no trained segmentation outputs: give organ labels ({option('organ_label')}) or "
                f"set {option('organ_source')} to none to train the organ as background"
            )
    hu = std.volume.array
    if source == "labels":
        if labelled_organ is None or not labelled_organ.any():
            raise PastaError(f"{option('organ_source')} labels: the label map holds no organ label")
        return labelled_organ, source
    if source == "classical":
        if not classical:
            raise PastaError(
                f"{option('organ_source')} classical: there is no classical mask for the model's organ "
                f"({start.organ or 'none declared'}); only the lungs have one"
            )
        return classical_mask_standard(classical, hu, std.volume.grid.spacing), source
    if source == "model":
        if not start.head_loaded:
            raise PastaError(
                f"{option('organ_source')} model: the start model's segmentation outputs do not fit these labels, "
                "so it cannot draw the organ"
            )
        from ..geometry.standardize import standardize
        from ..inference.segment import segment_volume

        predicted = segment_volume(image, start.segmentation_model(), whole_body=True).labels
        organ = predicted.with_array(np.isin(predicted.array, start.organ_values).astype(np.uint8), is_label=True)
        return standardize(organ, is_label=True).volume.array > 0, source
    if source == "none":
        return np.zeros(hu.shape, bool), source
    raise PastaError(f"unknown organ source {source!r}; choose {', '.join(ORGAN_SOURCES)}")


def load_case(
    image: Volume,
    labels: Volume,
    start: StartModel,
    *,
    name: str = "case",
    lesion_labels: Sequence[int] | None = None,
    organ_labels: Sequence[int] | None = None,
    organ_source: str = "auto",
) -> LabelledCase:
    """A labelled case for the network of ``start`` (a :class:`~.start_model.StartModel`)."""
    from ..geometry.standardize import standardize
    from .backgrounds import scan_slices

    if organ_source not in ORGAN_SOURCES:
        raise PastaError(f"unknown organ source {organ_source!r}; choose {', '.join(ORGAN_SOURCES)}")
    image.check_matches(labels, f"label map of {name}")
    lesion_values, organ_values = split_label_values(labels, lesion_labels, organ_labels, f"the label map of {name}")
    lesion = np.isin(labels.array, lesion_values)
    classes = np.where(lesion, 2, np.where(np.isin(labels.array, organ_values), 1, 0)).astype(np.uint8)
    std = standardize(image, is_label=False)
    std_classes = standardize(labels.with_array(classes, is_label=True), is_label=True).volume.array
    labelled_organ = (std_classes == 1) if organ_values else None
    organ, used = _organ_mask(organ_source, std, image, labelled_organ, start)
    targets = np.zeros(std_classes.shape, np.uint8)
    targets[organ] = start.organ_values[0] if start.organ_values else 0
    targets[std_classes == 2] = start.lesion_values[0]
    positions, slice_mm = scan_slices(image.grid, std.volume.grid)
    return LabelledCase(
        name, image, lesion, std.volume.array.astype(np.float32), targets, organ, std.volume.grid, used, positions, slice_mm
    )


def read_case(image_path: str | Path, label_path: str | Path, start: StartModel, **options) -> LabelledCase:
    """:func:`load_case` for files (NIfTI, NRRD, ``.seg.nrrd``, DICOM folder)."""
    from ..fileio import read_volume

    image = read_volume(image_path)
    labels = read_volume(label_path, is_label=True)
    return load_case(image, labels, start, name=Path(str(image_path)).name, **options)


# --- synthetic lesions in the user's own cases ---------------------------------------------------


def lesion_type_for(organ: str | None) -> str:
    """The synthesis engine's lesion type for a model's organ (``lung`` -> ``lung_tumor``)."""
    from ..synthesis import lesion_types
    from ..synthesis import schema as S

    for key in lesion_types():
        if organ and S.lesion_type(key).organ == organ:
            return key
    raise PastaError(
        f"synthetic lesions need a model whose lesions belong to an organ the synthesis engine knows "
        f"(this model's: {organ or 'none declared'})"
    )


def synthetic_pool(
    cases: Sequence[LabelledCase],
    per_case: int,
    seed: int,
    lesion_type: str,
    lesion_value: int,
    progress: Progress | None = None,
    is_cancelled: Cancelled | None = None,
) -> list:
    """Synthetic lesions placed in each case's organ, at least 10 mm from its real lesions."""
    from .backgrounds import Background, make_lesion_pool

    backgrounds = []
    for case in cases:
        real = case.targets == lesion_value
        forbidden = _grown(real, SYNTHETIC_ZONE_MM)
        backgrounds.append(
            Background(
                case.name,
                case.hu,
                case.organ,
                forbidden,
                real,
                tuple(case.grid.spacing),
                case.grid,
                slice_positions=case.slice_positions,
                slice_mm=case.slice_mm,
            )
        )
    if not any(bg.lung.any() for bg in backgrounds):
        raise PastaError("synthetic lesions need the organ in the cases, and none has an organ")
    return make_lesion_pool(backgrounds, per_case, seed, progress, lesion_type=lesion_type, is_cancelled=is_cancelled)


def _grown(mask: np.ndarray, voxels: int) -> np.ndarray:
    """``mask`` grown by ``voxels`` (within its bounding box + the margin only: fast on a whole CT)."""
    from scipy import ndimage

    grown = np.zeros(mask.shape, bool)
    if not mask.any():
        return grown
    where = np.argwhere(mask)
    box = tuple(slice(max(int(lo) - voxels, 0), int(hi) + voxels + 1) for lo, hi in zip(where.min(0), where.max(0)))
    grown[box] = ndimage.distance_transform_edt(~mask[box]) <= voxels
    return grown


def synthetic_sampler(
    cases: Sequence[LabelledCase], pool: Sequence, patch: Sequence[int], lesion_value: int
) -> Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]]:
    """``make_patch(rng)`` -> (hu, targets) around a pooled synthetic lesion pasted into its case."""
    from .backgrounds import overlap

    size = np.array(patch)

    def make_patch(rng):
        item = pool[int(rng.integers(len(pool)))]
        case = cases[item.background]
        shape = np.array(case.hu.shape)
        centre = np.array([(s.start + s.stop) // 2 for s in item.box]) + rng.integers(-size // 3, size // 3 + 1)
        start = np.clip(centre - size // 2, 0, np.maximum(shape - size, 0))
        window = tuple(slice(int(a), int(a + n)) for a, n in zip(start, size))
        hu, targets = case.hu[window].copy(), case.targets[window].copy()
        meet = overlap(window, item.box)
        if meet is not None:
            local, source = meet
            hu[local] = item.image[source]
            targets[local][item.lesion[source]] = lesion_value
        pad = [(0, int(n - m)) for n, m in zip(size, hu.shape)]
        if any(p[1] for p in pad):
            hu, targets = np.pad(hu, pad, constant_values=-1024.0), np.pad(targets, pad)
        return hu, targets

    return make_patch


def mixed_sampler(
    real: Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]],
    synthetic: Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]] | None,
    fraction: float,
) -> Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]]:
    """A share ``fraction`` of patches from ``synthetic``, the rest from ``real``."""

    def make_patch(rng):
        return synthetic(rng) if synthetic is not None and rng.random() < fraction else real(rng)

    return make_patch
