"""The text condition: one 512-d token per attribute value of the lesion.

Both networks see a PASTA-Gen ``type.json`` attribute dict, changed as the public inference
changes it: ``lesion location`` becomes the TotalSegmentator v1 organ name and ``size`` is
dropped. LMNet further drops ``CT value``, ``density``, ``density variations`` and an empty
``specific features`` and gets a ``cavity`` phrase appended; LINet sees the rest, with the
CT value phrase as the public inference passes it. Each value (e.g. ``"low density
lesion,"``) is encoded separately by the text tower; the context is (1, n_values, 512).

Encoded values are cached per text tower, in memory and in a small file next to the user's
model store, so the tower is loaded only for values never seen before.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..errors import PastaError
from ..synthesis import schema as S

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence


LOCATION, SIZE, HU_VALUE = "lesion location", "size", "CT value"
LMNET_DROPPED = (SIZE, HU_VALUE, S.VARIATIONS, S.DENSITY)
HOLLOW_ORGANS = ("colon", "bladder", "esophagus", "gall", "stomach")


@functools.lru_cache(maxsize=1)
def ts_v1_names() -> dict:
    """TotalSegmentator v1 label -> class name (``Resources/ts_v1_names.json``)."""
    from ..resources import load_json

    return {int(k): v for k, v in load_json("ts_v1_names.json")["names"].items()}


def organ_name(ts_id: int) -> str:
    try:
        return ts_v1_names()[int(ts_id)]
    except KeyError:
        raise PastaError(f"{ts_id} is not a TotalSegmentator v1 organ label (1-104)") from None


def cavity_phrase(attributes: dict, organ: str, lesion_kind: str, placement: str) -> str:
    """LMNet's ``cavity`` value: the user's when given, else the public rule for hollow organs
    and the lesion's placement for solid ones."""
    if attributes.get(S.CAVITY):
        return S.report_phrase(S.CAVITY, attributes[S.CAVITY]) + ","
    if any(word in organ for word in HOLLOW_ORGANS):
        return "within the lumen of a hollow organ," if lesion_kind == "stone" else "wall thickening,"
    return "protruding from the parenchymal organ," if placement == "surface" else "within the parenchymal organ,"


def lmnet_attributes(type_attributes: dict, location: str, cavity: str) -> dict:
    values = {k: v for k, v in type_attributes.items() if k not in LMNET_DROPPED}
    values[LOCATION] = location
    if values.get(S.FEATURES, None) == "":
        values.pop(S.FEATURES)
    values["cavity"] = cavity
    return values


def linet_attributes(type_attributes: dict, location: str) -> dict:
    values = {k: v for k, v in type_attributes.items() if k != SIZE}
    values[LOCATION] = location
    return values


class EmbeddingCache:
    """Text -> embedding, in memory and (optionally) in one ``torch.save`` file per text tower."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.values: dict = {}
        if self.path is not None and self.path.is_file():
            from ..networks.checkpoints import load_checkpoint

            try:
                stored = load_checkpoint(self.path)
                self.values = {str(k): v for k, v in stored.items() if isinstance(v, torch.Tensor)}
            except PastaError:
                self.values = {}  # a damaged cache is rebuilt, never trusted

    def missing(self, texts: Sequence[str]) -> list:
        return [t for t in dict.fromkeys(texts) if t not in self.values]

    def add(self, texts: Sequence[str], embeddings: torch.Tensor) -> None:
        for text, row in zip(texts, embeddings):
            self.values[text] = row.detach().float().cpu().clone()
        if self.path is not None:
            from ..fileio.atomic import atomic_outputs

            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with atomic_outputs(self.path, overwrite=True) as temp:
                    torch.save(self.values, temp)
            except (OSError, PastaError):
                pass  # the cache is an optimisation: a read-only home only costs time


class TextConditioner:
    """Builds the (1, n, dim) context of an attribute dict. ``load_encoder()`` returns the text
    tower (a callable mapping a list of strings to (n, dim): BiomedCLIP, or any stand-in); it
    is called only when a value is not in the cache."""

    def __init__(
        self,
        load_encoder: Callable[[], Callable[[list[str]], torch.Tensor]] | None = None,
        cache: EmbeddingCache | None = None,
        missing_reason: str = "",
    ) -> None:
        self.load_encoder = load_encoder
        self.cache = cache or EmbeddingCache()
        self.missing_reason = missing_reason
        self._encoder = None

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        texts = [str(t) for t in texts]
        todo = self.cache.missing(texts)
        if todo:
            if self._encoder is None:
                if self.load_encoder is None:
                    raise PastaError(self.missing_reason or "no text encoder is available for the attribute text")
                self._encoder = self.load_encoder()
            with torch.inference_mode():
                self.cache.add(todo, self._encoder(todo))
        return torch.stack([self.cache.values[t] for t in texts])

    def context(self, attributes: dict) -> torch.Tensor:
        if not attributes:
            raise PastaError("the lesion has no attributes to condition on")
        return self.embed(list(attributes.values()))[None]
