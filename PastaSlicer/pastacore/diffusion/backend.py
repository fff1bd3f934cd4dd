"""The ``lesiondiffusion`` synthesis backend (and its hybrid: procedural mask, LINet texture).

Options: ``steps`` (DDIM steps, default the public 200), ``eta`` (1.0), ``allow_slow``
(run even when the estimate on this CPU is over :data:`SLOW_LIMIT_S`), ``device``
(auto/cuda/cpu), ``precision`` (auto/fp32/fp16/bf16), ``models`` (a folder with the
checkpoints; default the model store), ``text_encoder`` (a BiomedCLIP folder, or a callable
mapping texts to 512-d rows), ``weights`` (auto/ema/model). Networks stay loaded for the
process, so a dataset pays the loading once per worker.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..deps import install_hint
from ..errors import PastaError, option
from ..progress import reporter
from ..synthesis.backends import Backend
from . import sources
from .schedule import ddim_timesteps

if TYPE_CHECKING:
    import numpy as np

    from ..geometry.boxes import VoxelBox
    from ..geometry.volume import Volume
    from ..modelstore.store import ModelStore
    from ..progress import Cancelled, Progress
    from ..synthesis.plan import SynthesisPlan
    from ..synthesis.render import Rendered


DEFAULT_STEPS, DEFAULT_ETA = 200, 1.0
SLOW_LIMIT_S = 300.0
TYPICAL_TOKENS = {"lmnet": 7, "linet": 10}
_LOADED: dict = {}
_TEXT_TOWERS: dict = {}


class LesionDiffusionBackend(Backend):
    def __init__(
        self,
        mask_source: str = "lmnet",
        steps: int | None = None,
        eta: float = DEFAULT_ETA,
        allow_slow: bool = False,
        device: str = "auto",
        precision: str = "auto",
        models: str | Path | None = None,
        text_encoder: str | Path | None = None,
        store: ModelStore | None = None,
        weights: str = "auto",
    ) -> None:
        if mask_source not in ("lmnet", "procedural"):
            raise PastaError(f"unknown mask source {mask_source!r}")
        self.mask_source = mask_source
        self.name = "lesiondiffusion" if mask_source == "lmnet" else "lesiondiffusion-hybrid"
        self.description = "LesionDiffusion" + (" (procedural mask)" if mask_source == "procedural" else "")
        self.steps = DEFAULT_STEPS if steps is None else int(steps)
        self.eta, self.allow_slow, self.weights = float(eta), bool(allow_slow), weights
        self.device_preference, self.precision = device, precision
        self.models, self.store = models, store
        self.text_callable = text_encoder if callable(text_encoder) else None
        self.files = sources.locate(models, None if self.text_callable else text_encoder, store)
        self._text = None

    @property
    def roles(self) -> tuple:
        return ("lmnet", "linet") if self.mask_source == "lmnet" else ("linet",)

    # -- checks before any work ---------------------------------------------------------------
    def unavailable_reason(self) -> str | None:
        """Why the backend cannot run, decided without importing torch (a fresh Slicer has none)."""
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            return f"the {self.name} backend needs PyTorch (in Slicer: the PyTorch extension; elsewhere: pip install torch)"
        missing = self.files.problems(self.roles)
        if self.text_callable is not None:
            missing = [m for m in missing if "text encoder" not in m]
        if missing:
            where = self.files.origin
            return (
                f"the {self.name} backend is unavailable: {', '.join(missing)} not found ({where}); download the "
                f"LesionDiffusion checkpoints (see the README) and import them with 'pasta models import'"
            )
        if self.text_callable is None and self.files.text is not None:
            from .biomedclip import folder_problems

            problems = folder_problems(self.files.text)
            if problems:
                return f"the {self.name} backend is unavailable: the BiomedCLIP folder lacks {', '.join(problems)}"
            if importlib.util.find_spec("transformers") is None or importlib.util.find_spec("yaml") is None:
                return (
                    f"the {self.name} backend is unavailable: the BiomedCLIP text encoder needs the packages of "
                    f"the diffusion group (transformers, PyYAML): {install_hint('diffusion')}"
                )
        from .estimate import describe_seconds
        from .precision import resolve_device

        device = resolve_device(self.device_preference)
        specs = self.specs()
        for role in self.roles:
            ddim_timesteps(self.steps, specs[role].timesteps)  # refuses a step count the schedule cannot take
        if device.type == "cpu" and not self.allow_slow:
            seconds, detail = self.estimate_seconds()
            if seconds > SLOW_LIMIT_S:
                return (
                    f"the {self.name} backend would take about {describe_seconds(seconds)} per lesion on this CPU "
                    f"({detail}); run it on a CUDA GPU, lower {option('steps')}, or pass {option('allow_slow')} to run anyway"
                )
        return None

    def reach_mm(self, plan: SynthesisPlan) -> float:
        """The paste-back rim: one 1 mm dilation, a Gaussian of RIM_SIGMA_MM (weight floor at 2.6
        sigma) and 1 mm of resampling onto the CT's grid."""
        from .pipeline import RIM_SIGMA_MM

        return 2.0 + 2.6 * RIM_SIGMA_MM

    def specs(self) -> dict:
        from .config import load_config

        return {role: load_config(self.files.configs[role]) for role in self.roles}

    def estimate_seconds(self, device: str = "cpu") -> tuple:
        """(seconds per lesion, what they are made of) on ``device``."""
        from .estimate import describe_seconds, rates, unet_cost, vq_cost

        specs = self.specs()
        measured = rates(device)
        parts, total = [], 0.0
        for role in self.roles:
            spec = specs[role]
            spatial = tuple(spec.image_size)
            steps = len(ddim_timesteps(self.steps, spec.timesteps))
            seconds = (unet_cost(spec.unet, spatial, TYPICAL_TOKENS[role]) * steps).seconds(measured)
            parts.append(f"{role.upper().replace('NET', 'Net')} {steps} steps {describe_seconds(seconds)}")
            total += seconds
            if spec.first_stage is not None:
                pixels = tuple(n * spec.first_stage.factor for n in spatial)
                seconds = vq_cost(spec.first_stage, pixels).seconds(measured)
                parts.append(f"VQ {describe_seconds(seconds)}")
                total += seconds
        return total, ", ".join(parts)

    # -- work ---------------------------------------------------------------------------------
    def _networks(self, device) -> dict:
        from .networks import load_network

        key = (
            tuple((r, str(self.files.checkpoints[r]), str(self.files.configs[r])) for r in self.roles),
            str(self.files.checkpoints.get("vq")),
            self.weights,
            str(device),
        )
        if key not in _LOADED:
            _LOADED.clear()  # one set of networks per process
            loaded = {}
            for role in self.roles:
                loaded[role] = load_network(
                    self.files.checkpoints[role],
                    self.files.configs[role],
                    self.weights,
                    vq_checkpoint=self.files.checkpoints.get("vq"),
                ).to(device)
            _LOADED[key] = loaded
        return _LOADED[key]

    def _conditioner(self, device):
        from ..samples import cache_dir
        from .text import EmbeddingCache, TextConditioner

        if self._text is None:
            if self.text_callable is not None:
                self._text = TextConditioner(lambda: self.text_callable)
            else:
                folder = Path(self.files.text)
                cache = EmbeddingCache(cache_dir() / "text-embeddings" / f"{self.files.text_id}.pt")

                def load():
                    from .biomedclip import BiomedCLIPText

                    key = (str(folder), self.files.text_id, str(device))
                    if key not in _TEXT_TOWERS:
                        _TEXT_TOWERS.clear()  # one text tower per process
                        _TEXT_TOWERS[key] = BiomedCLIPText(folder, device)
                    return _TEXT_TOWERS[key]

                self._text = TextConditioner(load, cache)
        return self._text

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
        from ..synthesis import schema as S
        from .pipeline import Settings, render_lesion

        report = reporter(progress)
        from .precision import resolve_device, resolve_precision

        device = resolve_device(self.device_preference)
        networks = self._networks(device)
        settings = Settings(
            steps=self.steps,
            eta=self.eta,
            device=device,
            mask_source=self.mask_source,
            precision_lmnet=resolve_precision(self.precision, device, networks["lmnet"].spec.unet.use_fp16)
            if "lmnet" in networks
            else "fp32",
            precision_linet=resolve_precision(self.precision, device, networks["linet"].spec.unet.use_fp16),
        )
        settings.stats.update(
            steps=self.steps,
            eta=self.eta,
            device=device.type,
            precision={"lmnet": settings.precision_lmnet, "linet": settings.precision_linet},
            weights={r: networks[r].reports[0].weights for r in networks},
        )
        return render_lesion(
            networks,
            self._conditioner(device),
            volume,
            organ,
            plan,
            S.lesion_type(plan.lesion_type),
            center_lps,
            box,
            settings,
            report,
            is_cancelled,
        )
