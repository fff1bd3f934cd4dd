"""The PyMIC model family: MIS-FM's VolF-pretrained FMUNet and PCT-Net (PyMIC checkpoints with
a JSON config of PyMIC's ``[network]`` parameters), VolF pretraining on a user's own CTs
(:mod:`.pretrain`) and fine-tuning from either. Importing this package needs no torch."""

from .. import ModelFamily, register

register(
    ModelFamily(
        name="pymic",
        description="MIS-FM / PyMIC networks (FMUNet, PCT-Net): VolF-pretrained starts for fine-tuning, PyMIC checkpoints",
        module=f"{__name__}.family",
        requirement_group="",
        task="segmentation",
    )
)
