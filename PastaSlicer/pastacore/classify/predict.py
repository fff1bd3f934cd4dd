"""Report attributes for measured lesions: crops, encoder features, head, one dict per lesion.

Used by the Slicer hub's report panel: the lesions are those of
:func:`pastacore.report.measure.measure_lesions`, so the predictions are keyed by the same
lesion numbers as the measurement table and :func:`pastacore.report.export.make_report`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import PastaError
from ..progress import reporter
from .features import crops_from_masks, extract_features
from .heads import Head, load_head

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..geometry.volume import Volume
    from ..progress import Cancelled, Progress
    from ..report.measure import LesionMeasurement


@dataclass
class AttributeModel:
    """An encoder and a head on its features, with their provenance for the report."""

    network: object
    head: Head
    models: list = field(default_factory=list)  # pastacore.report.model.ModelProvenance
    crop: str = "lesion"


def load_attribute_model(
    head_source: str | Path | dict,
    encoder_source: str | Path | None = None,
    device: str = "cpu",
    crop: str = "lesion",
    with_checksums: bool = True,
) -> AttributeModel:
    """The head in ``head_source`` and the encoder in ``encoder_source`` (default: the same file).

    A PASTA checkpoint such as ``PASTA_final.pth`` holds both; a head trained with
    ``pasta train-head`` needs the encoder its features came from.
    """
    from ..networks.loading import load_encoder
    from ..report.model import ModelProvenance

    head = load_head(head_source)
    encoder_source = encoder_source or head_source
    try:
        loaded = load_encoder(encoder_source, device=device)
    except PastaError as exc:
        if encoder_source == head_source:
            raise PastaError(
                f"{Path(str(head_source)).name} holds a head but no PASTA encoder; choose the encoder "
                f"weights its features came from ({exc})"
            ) from None
        raise
    if loaded.info.feature_channels != head.feature_dim:
        raise PastaError(
            f"the encoder gives {loaded.info.feature_channels} features but the head expects "
            f"{head.feature_dim}; choose the encoder the head was trained on"
        )
    models = []
    if with_checksums:
        for source, role in ((head_source, "attributes"), (encoder_source, "features")):
            if Path(str(source)).is_file() and (role == "attributes" or source != head_source):
                models.append(ModelProvenance.from_file(source, role=role))
    return AttributeModel(loaded.network, head, models, crop)


def lesion_parts(labels: np.ndarray, measurements: Sequence[LesionMeasurement]) -> list:
    """``(label, component, id, mask)`` of each measured lesion, ids ``lesion<number>``."""
    from ..report.measure import lesion_components

    parts = []
    cache = {}
    for m in measurements:
        split = int(m.component) != 0
        key = (int(m.label), split)
        if key not in cache:
            cache[key] = {number: (box, local) for number, box, local in lesion_components(labels, m.label, split)}
        found = cache[key].get(int(m.component))
        if found is None:
            raise PastaError(f"lesion {m.index} (label {m.label}, part {m.component}) is not in the segmentation")
        box, local = found
        full = np.zeros(labels.shape, bool)
        full[box] = local
        parts.append((int(m.label), int(m.component), f"lesion{m.index}", full))
    return parts


def predict_lesion_attributes(
    image: Volume,
    labels: Volume,
    measurements: Sequence[LesionMeasurement],
    model: AttributeModel,
    device: str = "cpu",
    batch_size: int = 2,
    progress: Progress | None = None,
    cancelled: Cancelled | None = None,
) -> dict:
    """``{lesion number: {attribute: AttributeValue}}`` for ``measurements`` of ``labels`` on ``image``."""
    if not measurements:
        raise PastaError("there are no lesions to predict attributes for")
    image.check_matches(labels, "segmentation")
    step = reporter(progress)
    items = crops_from_masks(
        image, lesion_parts(np.asarray(labels.array), measurements), model.crop, progress=lambda f, m="": step(0.3 * f, m)
    )
    features = extract_features(
        model.network, items, batch_size, device, progress=lambda f, m="": step(0.3 + 0.7 * f, m), cancelled=cancelled
    )
    rows = model.head.predict(features)
    return {int(m.index): row for m, row in zip(measurements, rows)}
