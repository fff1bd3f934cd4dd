"""Synthesis backends: how a planned lesion becomes voxels.

``procedural`` (default) renders the plan with numpy/scipy on the CPU. ``diffusion`` is the
slot for a LesionDiffusion-style model (mask and inpainting diffusion nets, GPU); it is not
shipped, so it reports itself unavailable with the reason instead of failing later.
"""

from __future__ import annotations

from ..errors import PastaError


class Backend:
    name = ""
    description = ""

    def unavailable_reason(self) -> str | None:
        """None when usable, else one line saying why not."""
        return None

    def render(self, volume, organ, plan, center_lps, progress=None):
        raise NotImplementedError


class ProceduralBackend(Backend):
    name = "procedural"
    description = "attribute-driven shapes, textures and HU rules on the CPU (about a second per lesion)"

    def render(self, volume, organ, plan, center_lps, progress=None):
        from .render import render

        return render(volume, organ, plan, center_lps, progress)


class DiffusionBackend(Backend):
    name = "diffusion"
    description = "LesionDiffusion-style mask and texture diffusion models (needs a CUDA GPU and model weights)"

    def unavailable_reason(self) -> str | None:
        try:
            import torch

            gpu = bool(torch.cuda.is_available())
        except Exception:
            gpu = False
        need = "" if gpu else "a CUDA GPU and "
        return (f"the diffusion backend is unavailable: it needs {need}LesionDiffusion model weights, which this "
                f"version does not provide; use the procedural backend")


BACKENDS = {b.name: b for b in (ProceduralBackend(), DiffusionBackend())}


def backend_names() -> list:
    return list(BACKENDS)


def get_backend(name: str | None) -> Backend:
    backend = BACKENDS.get(name or "procedural")
    if backend is None:
        raise PastaError(f"unknown synthesis backend {name!r}; choose one of: {', '.join(BACKENDS)}")
    reason = backend.unavailable_reason()
    if reason:
        raise PastaError(reason)
    return backend
