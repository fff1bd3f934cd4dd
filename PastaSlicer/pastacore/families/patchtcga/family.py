"""The model-family functions of PatchTCGA's encoders (task "encoder").

* ``check_config(config)``: the checked config, defaults filled in (:mod:`.config`);
* ``verify(checkpoint, config)``: load the encoder strictly (:mod:`.weights`) and summarise it;
* ``forward(checkpoint, config, inputs, device)``: features of a batch of patches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import PastaError
from . import config as _config

if TYPE_CHECKING:
    from pathlib import Path


def check_config(config: dict) -> dict:
    """The validated config (defaults filled in); PastaError naming the field for a bad value."""
    return _config.check_config(config)


def verify(checkpoint: Path, config: dict) -> dict:
    """Load the weights strictly into the configured network (weights_only); a JSON-ready summary:
    ``parameters``, ``layout``, ``encoder_source``, ``ignored``, ``method``, ``arch``, ``feature_dim``."""
    from .weights import load_encoder

    return load_encoder(checkpoint, check_config(config)).summary()


def forward(checkpoint: Path, config: dict, inputs: dict, device: str) -> dict:
    """``inputs``: ``{"images": (B, H, W, 3) uint8 RGB}`` (preprocessed as ``pasta patches features``
    does) or ``{"input": (B, 3, H, W) float}`` (fed to the network as it is); returns
    ``{"features": (B, C) float32}``."""
    import torch

    from .patches import open_encoder

    encoder = open_encoder(checkpoint, config, device)
    if "images" in inputs:
        images = inputs["images"]
        array = images.cpu().numpy() if isinstance(images, torch.Tensor) else images
        features = encoder.features(array)
    elif "input" in inputs:
        batch = torch.as_tensor(inputs["input"], dtype=torch.float32)
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise PastaError(f"'input' must be a (B, 3, H, W) tensor (got {tuple(batch.shape)})")
        features = encoder.run(batch.to(encoder.device).contiguous(memory_format=torch.channels_last))
    else:
        raise PastaError(
            f"the inputs need 'images' (B, H, W, 3 uint8) or 'input' (B, 3, H, W); got {', '.join(map(str, inputs)) or 'none'}"
        )
    return {"features": torch.from_numpy(features)}
