"""Synthesis backends: how a planned lesion becomes voxels.

``procedural`` (default) renders the plan with numpy/scipy on the CPU.
``lesiondiffusion`` runs LesionDiffusion's networks (pastacore.diffusion): LMNet draws the
mask in the box from the attributes, LINet inpaints the texture; it needs the released
checkpoints and a BiomedCLIP text encoder, and a CUDA GPU to be quick.
``lesiondiffusion-hybrid`` takes the procedural mask and LINet's texture (no LMNet).
A backend that cannot run says why in one line before any work starts.

Each backend is a class constructed with its options (``get_backend(name, **options)``);
:func:`backend_choices` lists them for a user interface. Backends living in other packages
register by import path ("module:factory"), so this package does not import them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import PastaError

if TYPE_CHECKING:
    import numpy as np

    from ..geometry.boxes import VoxelBox
    from ..geometry.volume import Volume
    from ..progress import Cancelled, Progress
    from .plan import SynthesisPlan
    from .render import Rendered


class Backend:
    name = ""
    description = ""

    def __init__(self, **options) -> None:
        if options:
            raise PastaError(f"the {self.name} backend takes no options ({', '.join(options)} given)")

    def unavailable_reason(self) -> str | None:
        """None when usable, else one line saying why not."""
        return None

    def reach_mm(self, plan: SynthesisPlan) -> float:
        """How far (mm) past the lesion's planned size the backend changes voxels (its blend or
        feathering): the lesion is fitted into the user's box with this margin (:mod:`.inbox`)."""
        from .inbox import default_reach_mm

        return default_reach_mm(plan)

    def render(
        self,
        volume: Volume,
        organ: np.ndarray | None,
        plan: SynthesisPlan,
        center_lps: np.ndarray,
        progress: Progress | None = None,
        box: VoxelBox | None = None,
        is_cancelled: Cancelled | None = None,
    ) -> Rendered:
        raise NotImplementedError


class ProceduralBackend(Backend):
    name = "procedural"
    description = "attribute-driven shapes, textures and HU rules on the CPU (about a second per lesion)"

    def render(
        self,
        volume: Volume,
        organ: np.ndarray | None,
        plan: SynthesisPlan,
        center_lps: np.ndarray,
        progress: Progress | None = None,
        box: VoxelBox | None = None,
        is_cancelled: Cancelled | None = None,
    ) -> Rendered:
        from .render import render

        return render(volume, organ, plan, center_lps, progress)


def _plugin(path: str, **fixed):
    """A factory for the backend class at ``"module:Class"``, imported when first used."""

    def make(**options):
        import importlib

        module, name = path.split(":")
        return getattr(importlib.import_module(module), name)(**fixed, **options)

    return make


BACKENDS = {
    "procedural": (ProceduralBackend, ProceduralBackend.description),
    "lesiondiffusion": (
        _plugin("pastacore.diffusion.backend:LesionDiffusionBackend", mask_source="lmnet"),
        "LesionDiffusion: LMNet mask + LINet texture from the released checkpoints (CUDA GPU recommended)",
    ),
    "lesiondiffusion-hybrid": (
        _plugin("pastacore.diffusion.backend:LesionDiffusionBackend", mask_source="procedural"),
        "procedural mask + LesionDiffusion LINet texture (CUDA GPU recommended)",
    ),
}
ALIASES = {"diffusion": "lesiondiffusion"}


def backend_names() -> list:
    return list(BACKENDS)


def backend_choices(**options) -> list:
    """[{name, description, available, reason}] for every backend, for a user interface.
    ``options`` (e.g. ``allow_slow=True``) are passed to the diffusion backends' check."""
    choices = []
    for name, (factory, description) in BACKENDS.items():
        try:
            reason = factory(**(options if name != "procedural" else {})).unavailable_reason()
        except PastaError as exc:
            reason = str(exc)
        choices.append({"name": name, "description": description, "available": reason is None, "reason": reason})
    return choices


def get_backend(name: str | Backend, **options) -> Backend:
    """The backend ``name`` (or a :class:`Backend` instance, returned as is), checked usable."""
    if isinstance(name, Backend):
        backend = name
    else:
        key = ALIASES.get(name or "procedural", name or "procedural")
        if key not in BACKENDS:
            raise PastaError(f"unknown synthesis backend {name!r}; choose one of: {', '.join(BACKENDS)}")
        backend = BACKENDS[key][0](**options)
    reason = backend.unavailable_reason()
    if reason:
        raise PastaError(reason)
    return backend
