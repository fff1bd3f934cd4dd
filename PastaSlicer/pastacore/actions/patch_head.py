"""Train a few-shot head on the PatchTCGA features of labelled patches (a folder with one
sub-folder per class, or images named in a labels CSV), cross-validated; ``write`` stores HEAD.pt
and HEAD.json as ``pasta patches train-head`` does. The hub's pathology panel runs it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import PastaError
from ..progress import reporter
from .result import ActionResult

if TYPE_CHECKING:
    from ..classify.headfile import TrainedHead
    from ..progress import Cancelled, Progress

WRITE_SHARE = 0.02


@dataclass(frozen=True)
class PatchHeadOptions:
    encoder: str = ""  # a PatchTCGA weight file (with config) or the name of an installed encoder
    config: str = ""
    kind: str = "linear"  # linear or mlp
    folds: int = 5
    seed: int = 0
    l2: float = 1.0
    batch_size: int = 16
    device: str = "auto"
    store: str = ""

    def check(self) -> None:
        if not self.encoder:
            raise PastaError("choose a PatchTCGA encoder (import one with its config first)")
        if self.kind not in ("linear", "mlp"):
            raise PastaError(f"the head kind must be linear or mlp (got {self.kind!r})")


@dataclass
class PatchHeadInputs:
    patches: str  # the folder of labelled patches
    labels: str = ""  # a labels CSV (id,label); "" = by sub-folder


@dataclass
class TrainedPatchHead(ActionResult):
    trained: TrainedHead

    def to_dict(self) -> dict:
        from ..classify.headfile import no_nan

        return no_nan({**self.trained.result, "unlabelled": len(self.trained.unlabelled)})


def run(
    options: PatchHeadOptions, inputs: PatchHeadInputs, progress: Progress | None = None, is_cancelled: Cancelled | None = None
) -> TrainedPatchHead:
    from ..classify.headfile import train_head
    from ..deps import torch_device_info
    from ..families.patchtcga.patches import image_features, labelled_patches, open_encoder, resolve_encoder
    from ..modelstore.store import ModelStore

    options.check()
    step = reporter(progress)
    paths, labels, column = labelled_patches(inputs.patches, inputs.labels or None)
    checkpoint, config = resolve_encoder(options.encoder, options.config or None, ModelStore(options.store or None))
    encoder = open_encoder(checkpoint, config, torch_device_info(options.device).kind)
    ids, features = image_features(paths, encoder, options.batch_size, lambda f, m="": step(0.9 * f, m), is_cancelled)
    step(0.9, "cross-validating the head")
    head_name = "head.pt"  # the file's own name is set when it is written
    trained = train_head(ids, features, labels, column, head_name, options.kind, options.folds, options.seed, options.l2)
    return TrainedPatchHead(trained)


def write(
    made: TrainedPatchHead,
    options: PatchHeadOptions,
    out: str = "",
    overwrite: bool = False,
    progress: Progress | None = None,
) -> dict:
    """HEAD.pt and HEAD.json at ``out``."""
    from pathlib import Path

    from ..classify.headfile import write_head

    if not out:
        raise PastaError("choose where to write the head (HEAD.pt)")
    made.trained.result["head_file"] = Path(out).name
    metrics = write_head(made.trained, out, overwrite)
    if progress is not None:
        progress(1.0, "head written")
    return {"head": str(out), "metrics": str(metrics)}


OPTIONS, INPUTS = PatchHeadOptions, PatchHeadInputs
