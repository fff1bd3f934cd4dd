"""``pasta models forward CKPT IN.pt OUT.pt --config CFG.json`` for any model family: the bare
network on tensors, to compare implementations. ``IN.pt`` and ``OUT.pt`` are ``torch.save``
dicts; the input is read with ``weights_only=True``."""

from __future__ import annotations

from pathlib import Path

from ..errors import PastaError
from . import read_model_config


def forward_command(
    checkpoint: str | Path,
    in_path: str | Path,
    out_path: str | Path,
    config_path: str | Path,
    device: str = "auto",
    overwrite: bool = False,
) -> dict:
    """Run the family's ``forward`` on the tensors of ``in_path``; write its dict to ``out_path``."""
    import torch

    from ..deps import torch_device_info
    from ..fileio.atomic import atomic_outputs, check_outputs
    from ..networks.checkpoints import load_checkpoint
    from . import family_of

    check_outputs([(out_path, (".pt", ".pth"))], inputs=(in_path, checkpoint, config_path), overwrite=overwrite)
    config = read_model_config(config_path)
    family = family_of(config)
    checkpoint, in_path = Path(checkpoint), Path(in_path)
    if not checkpoint.exists():
        raise PastaError(f"{checkpoint} does not exist")
    if not in_path.is_file():
        raise PastaError(f"input {in_path} does not exist")
    inputs = load_checkpoint(in_path)
    if not isinstance(inputs, dict):
        raise PastaError(f"{in_path.name} must hold a dict of tensors")
    kind = torch_device_info(device).kind
    result = family.implementation().forward(checkpoint, config, inputs, kind)
    with atomic_outputs(out_path, overwrite=overwrite) as temp:
        torch.save(result, str(temp))
    return result
