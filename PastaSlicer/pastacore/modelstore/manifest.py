"""The model manifest in ``Resources/models/manifest.json``: what each known model is."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import PastaError
from ..resources import load_json


@dataclass(frozen=True)
class ModelSpec:
    name: str
    version: str
    task: str
    description: str = ""
    architecture: dict = field(default_factory=dict)
    input_spacing_mm: tuple = (1.0, 1.0, 1.0)
    normalization: str = ""
    labels: tuple = ()
    files: tuple = ()  # ({"name": ..., "sha256": ... or None}, ...)
    license: str = ""
    source: str = ""

    def expected_sha256(self, filename: str) -> str | None:
        return next((f.get("sha256") for f in self.files if f["name"] == filename), None)


def _spec(entry: dict) -> ModelSpec:
    try:
        return ModelSpec(
            name=entry["name"],
            version=str(entry["version"]),
            task=entry["task"],
            description=entry.get("description", ""),
            architecture=dict(entry.get("architecture", {})),
            input_spacing_mm=tuple(entry.get("input_spacing_mm", (1.0, 1.0, 1.0))),
            normalization=entry.get("normalization", ""),
            labels=tuple(entry.get("labels", ())),
            files=tuple(entry.get("files", ())),
            license=entry.get("license", ""),
            source=entry.get("source", ""),
        )
    except KeyError as exc:
        raise PastaError(f"model description lacks {exc}") from None


def known_models() -> dict:
    """name -> :class:`ModelSpec` for every model in the manifest."""
    return {entry["name"]: _spec(entry) for entry in load_json("models/manifest.json")["models"]}


def spec_for_file(filename: str) -> ModelSpec | None:
    """The known model that ships a file called ``filename``, if any."""
    for spec in known_models().values():
        if any(f["name"] == filename for f in spec.files):
            return spec
    return None


def spec_from_dict(entry: dict) -> ModelSpec:
    return _spec(entry)
