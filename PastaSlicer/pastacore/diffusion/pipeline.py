"""One lesion through LesionDiffusion: mask (LMNet or procedural), texture (LINet), paste back.

1. A 1 mm working grid centred on the lesion covers both networks' crops; the CT (linear),
   the organ and the user's box (nearest) are resampled onto it.
2. Mask: LMNet samples in its crop from (TotalSegmentator-style organ map / 104, organ,
   filled lesion box) and the attribute text, and the public threshold search picks the
   mask; or, in hybrid mode, the procedural engine's lesion mask is used. The mask is kept
   inside the user's box (and the organ, where the lesion type is clipped to it).
3. Texture: the CT crop (HU -> 0..1) is VQ-encoded, LINet inpaints the latent under the
   (latent-resolution) mask with the clean latent re-imposed outside it, the VQ decodes,
   and the crop is shifted so its mean matches the original crop (as the public code).
4. Paste back: only the mask and a soft rim of about 2 mm change (the VQ round trip alters
   every voxel slightly, so the public whole-crop replacement is not used), and nothing
   outside the user's box; results are resampled onto the CT's own grid.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import PastaError
from ..geometry import Volume
from ..synthesis import schema as S
from . import crops
from .intensity import hu_to_unit, unit_to_hu
from .masks import select_mask, too_small
from .precision import autocast
from .sampler import NoiseSource, sample
from .text import cavity_phrase, linet_attributes, lmnet_attributes, organ_name

if TYPE_CHECKING:
    from ..geometry.boxes import VoxelBox
    from ..geometry.grid import Grid
    from ..progress import Cancelled, Progress
    from ..synthesis.plan import SynthesisPlan
    from ..synthesis.render import Rendered
    from ..synthesis.schema import LesionType
    from .networks import DiffusionNetwork
    from .text import TextConditioner


WEIGHT_FLOOR = 0.01
RIM_SIGMA_MM = 1.0


@dataclass
class Settings:
    steps: int
    eta: float
    device: torch.device
    precision_lmnet: str
    precision_linet: str
    mask_source: str  # "lmnet" or "procedural"
    stats: dict = field(default_factory=dict)


def seed_of(plan_seed: int, stream: int) -> int:
    return int(np.random.SeedSequence([int(plan_seed), stream]).generate_state(1)[0])


def organ_ts_id(kind_organ: str, organ: np.ndarray | None, grid: Grid, center_lps: np.ndarray) -> int:
    """The TotalSegmentator v1 label of the lesion's organ (side and lobe from the organ mask)."""
    ids = S.schema()["organs"][kind_organ]["ts_v1"]
    if organ is None or kind_organ not in ("kidney", "lung") or not organ.any():
        return int(ids[0])
    step = max(1, int(np.ceil((organ.size / 2e6) ** (1 / 3))))
    where = np.argwhere(organ[::step, ::step, ::step])[:, ::-1] * step
    points = grid.index_to_lps(where.astype(float))
    center = np.asarray(center_lps, float)
    left = center[0] > np.median(points[:, 0])  # LPS: x grows to the patient's left
    if kind_organ == "kidney":
        return 3 if left else 2
    side = points[(points[:, 0] > np.median(points[:, 0])) == left]
    upper = center[2] > np.median(side[:, 2]) if len(side) else True
    return (13 if upper else 14) if left else (15 if upper else 17)


def type_attributes(plan: SynthesisPlan, organ_id: int) -> dict:
    """The PASTA-Gen ``type.json`` attribute dict of the planned lesion (our report's one)."""
    from ..synthesis.report import type_json

    size = [float(v) for v in plan.size_mm]
    return type_json(plan, organ_id, size, size, float(plan.target_mean_hu))[str(organ_id)][2]


def _as_tensor(array, device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None, None].to(device)


def lmnet_mask(
    network: DiffusionNetwork,
    text: TextConditioner,
    plan: SynthesisPlan,
    kind: LesionType,
    ts_id: int,
    organ1: np.ndarray | None,
    lesion_box1: np.ndarray,
    crop: tuple[slice, ...],
    settings: Settings,
    progress: Progress,
    cancelled: Cancelled,
) -> np.ndarray | None:
    """LMNet's mask in ``crop`` of the working grid (or None when it drew nothing)."""
    started = time.perf_counter()
    organ_crop = organ1[crop] if organ1 is not None else np.zeros(lesion_box1[crop].shape, bool)
    channels = [organ_crop * (ts_id / 104.0), organ_crop.astype(np.float32), lesion_box1[crop].astype(np.float32)]
    cond = torch.cat([_as_tensor(crops.to_model(c), settings.device) for c in channels], dim=1)
    values = lmnet_attributes(
        type_attributes(plan, ts_id), organ_name(ts_id), cavity_phrase(plan.attributes, kind.organ, kind.kind, plan.placement)
    )
    context = text.context(values).to(settings.device)
    schedule = network.schedule(settings.steps, settings.eta)
    reference = int(lesion_box1[crop].sum())
    mask, threshold = None, None
    for attempt in range(2):
        noise = NoiseSource((1, network.spec.channels) + tuple(cond.shape[2:]), seed_of(plan.seed, 31 + attempt))
        result = sample(
            network.unet,
            network.kind,
            schedule,
            noise.initial().to(settings.device),
            context,
            cond=cond,
            noise=noise,
            precision=settings.precision_lmnet,
            is_cancelled=cancelled,
            progress=lambda f, m: progress(f, f"mask: {m}"),
        )
        soft = crops.from_model(result.samples[0, 0].float().cpu().numpy())
        mask, threshold = select_mask(soft, reference)
        if not too_small(mask, kind.kind == "stone"):
            break
    settings.stats.update(
        lmnet_seconds=round(time.perf_counter() - started, 2), lmnet_threshold=threshold, lmnet_text=list(values.values())
    )
    return mask


def linet_texture(
    network: DiffusionNetwork,
    text: TextConditioner,
    plan: SynthesisPlan,
    ts_id: int,
    ct1: np.ndarray,
    mask1: np.ndarray,
    crop: tuple[slice, ...],
    settings: Settings,
    progress: Progress,
    cancelled: Cancelled,
) -> np.ndarray:
    """(decoded HU on the crop, after the mean shift) of LINet's inpainting under ``mask1[crop]``."""
    started = time.perf_counter()
    vq, device, precision = network.vq, settings.device, settings.precision_linet
    x = _as_tensor(hu_to_unit(crops.to_model(ct1[crop])), device)
    with torch.inference_mode(), autocast(device, precision):
        latent = vq.encode(x).float()
    mask = _as_tensor(crops.to_model(mask1[crop]), device)
    mask = (torch.nn.functional.interpolate(mask, size=tuple(latent.shape[2:])) > 0.5).float()
    values = linet_attributes(type_attributes(plan, ts_id), organ_name(ts_id))
    context = text.context(values).to(device)
    schedule = network.schedule(settings.steps, settings.eta)
    noise = NoiseSource(tuple(latent.shape), seed_of(plan.seed, 41))
    result = sample(
        network.unet,
        network.kind,
        schedule,
        noise.initial().to(device),
        context,
        x0=latent,
        mask=mask,
        noise=noise,
        channels=network.spec.channels,
        precision=precision,
        is_cancelled=cancelled,
        progress=lambda f, m: progress(f, f"texture: {m}"),
    )
    with torch.inference_mode(), autocast(device, precision):
        decoded = vq.decode(result.samples[:, : network.spec.channels].float()).float()
    hu = crops.from_model(unit_to_hu(decoded[0, 0].cpu().numpy()))
    hu -= float(hu.mean() - ct1[crop].mean())
    settings.stats.update(linet_seconds=round(time.perf_counter() - started, 2), linet_text=list(values.values()))
    return hu


def blend_weight(mask1: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """1 in the mask, a Gaussian rim of about 2 mm around it, 0 outside ``allowed``."""
    from scipy import ndimage

    weight = ndimage.gaussian_filter(ndimage.binary_dilation(mask1).astype(np.float32), RIM_SIGMA_MM)
    weight = np.clip(weight * 2.0, 0.0, 1.0)
    weight[mask1] = 1.0
    weight *= allowed
    weight[weight < WEIGHT_FLOOR] = 0.0
    return weight


def render_lesion(
    networks: dict[str, DiffusionNetwork],
    text: TextConditioner,
    volume: Volume,
    organ: np.ndarray | None,
    plan: SynthesisPlan,
    kind: LesionType,
    center_lps: np.ndarray,
    box: VoxelBox | None,
    settings: Settings,
    progress: Progress,
    cancelled: Cancelled,
) -> Rendered:
    """Insert one lesion; returns the synthesis engine's ``Rendered``."""
    from ..synthesis.plan import resolve_intensity
    from ..synthesis.render import Rendered

    linet = networks["linet"]
    li_shape = tuple(n * linet.spec.first_stage.factor for n in linet.spec.image_size)
    lm_shape = tuple(networks["lmnet"].spec.image_size) if settings.mask_source == "lmnet" else li_shape
    work = tuple(max(a, b) for a, b in zip(lm_shape, li_shape))
    grid1 = crops.working_grid(center_lps, work)
    ct1 = crops.resample_image(volume, grid1)
    organ1 = crops.resample_mask(organ, volume.grid, grid1) if organ is not None else None
    li_crop, lm_crop = crops.centered(work, li_shape), crops.centered(work, lm_shape)
    allowed = crops.box_on_grid(box, volume.grid, grid1)  # the user's box, within LINet's crop
    in_li = np.zeros(work, bool)
    in_li[li_crop] = True
    allowed &= in_li
    ts_id = organ_ts_id(kind.organ, organ, volume.grid, center_lps)
    organ_mean = _organ_mean(ct1, organ1, grid1, center_lps, plan)
    resolve_intensity(plan, organ_mean)
    progress(0.05, "crops")
    if settings.mask_source == "lmnet":
        box1 = crops.lesion_box(grid1, center_lps, plan.size_mm)
        mask1 = np.zeros(work, bool)
        mask1[lm_crop] = lmnet_mask(
            networks["lmnet"],
            text,
            plan,
            kind,
            ts_id,
            organ1,
            box1,
            lm_crop,
            settings,
            lambda f, m: progress(0.05 + 0.45 * f, m),
            cancelled,
        )
    else:
        from ..synthesis.render import render as procedural

        mask1 = crops.resample_mask(procedural(volume, organ, plan, center_lps).lesion, volume.grid, grid1)
    outside = int((mask1 & ~allowed).sum())
    if outside and box is not None:
        plan.notes.append(f"kept inside the box: {outside} mm³ of the drawn mask beyond the box were cut off")
    mask1 &= allowed
    if plan.clip_to_organ and organ1 is not None:
        mask1 &= organ1
    if not mask1.any():
        raise PastaError("the mask came out empty inside the box; try another seed or a larger box")
    hu = np.array(ct1)
    hu[li_crop] = linet_texture(
        linet, text, plan, ts_id, ct1, mask1, li_crop, settings, lambda f, m: progress(0.5 + 0.45 * f, m), cancelled
    )
    progress(0.95, "paste back")
    out, lesion, cbox, changed = paste_back(
        volume, organ if plan.clip_to_organ else None, box, grid1, mask1, hu, blend_weight(mask1, allowed), center_lps
    )
    settings.stats.update(
        organ_mean_hu=round(organ_mean, 1), organ_ts_v1=ts_id, crop_shape=list(work), mask_source=settings.mask_source
    )
    return Rendered(out, lesion, cbox, changed, dict(settings.stats))


def paste_back(
    volume: Volume,
    clip_organ: np.ndarray | None,
    box: VoxelBox | None,
    grid1: Grid,
    mask1: np.ndarray,
    hu1: np.ndarray,
    weight1: np.ndarray,
    center_lps: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, VoxelBox, np.ndarray]:
    """(new array, full lesion mask, changed VoxelBox, changed voxels in it): the working grid's
    values blended into a copy of the CT with ``weight1``; nothing outside ``box`` changes."""
    from ..geometry.resample import LINEAR, resample
    from ..synthesis.render import crop_box, paste_values, sub_grid

    cbox = crop_box(volume.grid, center_lps, np.array(grid1.shape[::-1], float) / 2 + 1.0)
    cgrid = sub_grid(volume.grid, cbox)
    weight = resample(Volume(weight1, grid1), cgrid, LINEAR, fill=0.0).array
    values = resample(Volume(hu1.astype(np.float32), grid1), cgrid, LINEAR, fill=0.0).array
    weight *= crops.box_on_grid(box, volume.grid, cgrid)
    weight[weight < WEIGHT_FLOOR] = 0.0
    lesion = crops.resample_mask(mask1, grid1, cgrid) & (weight > 0)
    if clip_organ is not None:
        lesion &= clip_organ[cbox.slices]
    if not lesion.any():
        raise PastaError("the lesion is smaller than one voxel of this volume; make it larger")
    orig = volume.array[cbox.slices].astype(np.float32)
    out, full, changed = paste_values(volume, cbox, orig + weight * (values - orig), weight, lesion)
    return out, full, cbox, changed


def _organ_mean(ct1, organ1, grid1, center_lps, plan) -> float:
    """Median HU of the organ near the lesion (outside its box), else of the whole crop."""
    box = crops.lesion_box(grid1, center_lps, plan.size_mm)
    if organ1 is not None and (organ1 & ~box).sum() > 50:
        return float(np.median(ct1[organ1 & ~box]))
    return float(np.median(ct1[box])) if box.any() else float(np.median(ct1))
