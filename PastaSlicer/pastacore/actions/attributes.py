"""Predict the five report attributes of each lesion (shape, density, margin... ) from PASTA's
encoder and attribute heads; the report panel runs it through the task process."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PastaError
from .result import ActionResult

if TYPE_CHECKING:
    from ..geometry.volume import Volume
    from ..progress import Cancelled, Progress


@dataclass(frozen=True)
class AttributesOptions:
    head: str = ""  # the attribute head (a PASTA checkpoint or a head from `pasta train-attribute-heads`)
    encoder: str = ""  # the encoder, when the head does not carry one
    device: str = "auto"

    def check(self) -> None:
        if not self.head:
            raise PastaError("choose the attribute head (a PASTA checkpoint or a head from 'pasta train-head')")


@dataclass
class AttributesInputs:
    image: str | Path | Volume
    labels: str | Path | Volume  # lesions 1..N
    names: dict | None = None  # label value -> segment name


@dataclass
class PredictedAttributes(ActionResult):
    attributes: dict  # lesion number -> {attribute: AttributeValue}
    models: list  # ModelProvenance

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return {
            "attributes": {str(n): {a: asdict(v) for a, v in values.items()} for n, values in self.attributes.items()},
            "models": [asdict(m) for m in self.models],
        }


def run(
    options: AttributesOptions, inputs: AttributesInputs, progress: Progress | None = None, is_cancelled: Cancelled | None = None
) -> PredictedAttributes:
    from ..classify.predict import load_attribute_model, predict_lesion_attributes
    from ..deps import torch_device_info
    from ..fileio import as_volume
    from ..report.measure import measure_lesions

    options.check()
    image, labels = as_volume(inputs.image), as_volume(inputs.labels, is_label=True)
    names = {int(k): v for k, v in (inputs.names or {}).items()}
    device = torch_device_info(options.device).kind
    model = load_attribute_model(options.head, options.encoder or None, device=device)
    measurements = measure_lesions(image, labels, label_names=names)
    predicted = predict_lesion_attributes(image, labels, measurements, model, device, progress=progress, cancelled=is_cancelled)
    return PredictedAttributes(predicted, list(model.models))


OPTIONS, INPUTS = AttributesOptions, AttributesInputs
