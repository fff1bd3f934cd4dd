"""gCIS (Ouyang et al., Communications Engineering 2024): a general CT segmentation model whose
text prompt picks the decoder pathway. Registered here without importing torch; the
implementation is :mod:`.family`."""

from .. import ModelFamily, register

register(
    ModelFamily(
        name="gcis",
        description="gCIS general CT segmentation (Swin encoder, prompt-routed decoder pathways; test.py's pipeline)",
        module=f"{__name__}.family",
        requirement_group="gcis",
        task="segmentation",
    )
)
