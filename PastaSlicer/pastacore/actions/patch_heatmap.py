"""Classify a pathology image tile by tile with a PatchTCGA encoder and a few-shot head: the heat
map of one class's probability on the image's pixels, and the image's class (the highest mean
tile probability). ``pasta patches heatmap``, the hub's pathology panel and the web app run it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PastaError
from ..progress import reporter

if TYPE_CHECKING:
    import numpy as np

    from ..families.patchtcga.heatmap import HeatMap
    from ..progress import Cancelled, Progress


@dataclass(frozen=True)
class PatchHeatmapOptions:
    encoder: str = ""  # a PatchTCGA weight file (with config) or the name of an installed encoder
    head: str = ""  # a head trained on that encoder's features (HEAD.pt)
    config: str = ""  # the model config (JSON) of a weight file; an installed encoder has its own
    tile: int = 224  # tile size in pixels
    class_name: str = ""  # the class mapped ("" = the second of two)
    batch_size: int = 16
    device: str = "auto"
    precision: str = "fp32"  # fp32, bf16 or auto
    store: str = ""  # the model store's root ("" = the user's)

    def check(self) -> None:
        if not self.encoder:
            raise PastaError("choose a PatchTCGA encoder (import one with its config first)")
        if not self.head:
            raise PastaError("choose a head trained on that encoder's features")
        if self.tile < 1 or self.batch_size < 1:
            raise PastaError("the tile size and the batch size must be at least 1")


@dataclass
class PatchHeatmapInputs:
    image: str | Path | np.ndarray  # an image file, a saved .npy array, or (H, W, 3) uint8 RGB


@dataclass
class PatchHeatmapResult:
    heat: HeatMap

    def to_dict(self) -> dict:
        return self.heat.summary()

    def volumes(self) -> dict:
        """``heat``: the map as a one-slice volume on the plain pixel grid (a front end puts it on the image's)."""
        from ..geometry import Grid, Volume

        values = self.heat.values[None]
        return {"heat": Volume(values, Grid(values.shape, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)))}


def _image(value) -> np.ndarray:
    import numpy as np

    from ..families.patchtcga.images import read_rgb, rgb_from_array

    if isinstance(value, (str, Path)):
        path = Path(value)
        return rgb_from_array(np.load(path, allow_pickle=False), path.name) if path.suffix == ".npy" else read_rgb(path)
    return rgb_from_array(value)


def run(
    options: PatchHeatmapOptions,
    inputs: PatchHeatmapInputs,
    progress: Progress | None = None,
    is_cancelled: Cancelled | None = None,
) -> PatchHeatmapResult:
    from ..classify.heads import load_head
    from ..deps import torch_device_info
    from ..families.patchtcga.heatmap import class_index, compute_heatmap, tile_origins
    from ..families.patchtcga.patches import check_head_fits, open_encoder, resolve_encoder
    from ..modelstore.store import ModelStore

    options.check()
    step = reporter(progress)
    image = _image(inputs.image)
    tile_origins(image.shape[0], image.shape[1], options.tile)  # a tile too large fails before the model loads
    head = load_head(options.head)
    class_index(head, options.class_name or None)
    checkpoint, config = resolve_encoder(options.encoder, options.config or None, ModelStore(options.store or None))
    step(0.02, "loading the encoder")
    encoder = open_encoder(checkpoint, config, torch_device_info(options.device).kind, options.precision)
    check_head_fits(head, encoder)
    heat = compute_heatmap(
        image, encoder, head, options.tile, options.class_name or None, options.batch_size,
        lambda f, m="": step(0.05 + 0.95 * f, m), is_cancelled,
    )  # fmt: skip
    return PatchHeatmapResult(heat)


OPTIONS, INPUTS = PatchHeatmapOptions, PatchHeatmapInputs
