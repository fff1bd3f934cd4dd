"""LesionDiffusion network descriptions, read from the repository's YAML files.

A config is the ``model:`` section of one of LesionDiffusion's YAML files
(``{target, params}``), given as a path, as the parsed document, or as the section itself.
Three kinds are understood, told apart by ``target``:

* ``...MaskDiffusion`` (LMNet): pixel-space diffusion on the lesion mask;
* ``...InpaintingDiffusion...`` (LINet): latent diffusion with a VQ first stage;
* ``...VQModel...`` (the VQ autoencoder on its own).

Every width, depth and schedule number comes from the config, so a narrowed config builds a
narrowed network. Options the released networks do not use (class conditioning, scale-shift
norm, residual up/down sampling, plain attention blocks, VQ attention) are refused with the
option named rather than silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import PastaError

MASK, INPAINT, VQ = "mask", "inpaint", "vq"
# set_precision("fp16") in these classes' constructors also rounds the stored noise schedule
_FP16_SCHEDULE_TARGETS = ("InpaintingDiffusion_v2",)


@dataclass(frozen=True)
class UNetSpec:
    in_channels: int
    out_channels: int
    model_channels: int
    num_res_blocks: int
    attention_resolutions: tuple
    channel_mult: tuple
    num_heads: int = -1
    num_head_channels: int = -1
    context_dim: int | None = None
    transformer_depth: int = 1
    skip_context: bool = False
    use_fp16: bool = False
    conv_resample: bool = True

    def heads(self, channels: int) -> tuple:
        """(heads, channels per head) of a spatial transformer at width ``channels``."""
        heads = channels // self.num_head_channels if self.num_head_channels != -1 else self.num_heads
        if heads < 1:
            raise PastaError(f"attention at width {channels} gets no head (num_head_channels {self.num_head_channels})")
        return heads, channels // heads


@dataclass(frozen=True)
class VQSpec:
    ch: int
    ch_mult: tuple
    num_res_blocks: int
    z_channels: int
    embed_dim: int
    n_embed: int
    in_channels: int = 1
    out_ch: int = 1
    sample_depth: tuple | None = None

    @property
    def downsamplings(self) -> int:
        return len(self.sample_depth) if self.sample_depth is not None else len(self.ch_mult) - 1

    @property
    def factor(self) -> int:
        return 2**self.downsamplings


@dataclass(frozen=True)
class DiffusionSpec:
    kind: str  # MASK or INPAINT
    target: str
    unet: UNetSpec
    timesteps: int = 1000
    linear_start: float = 1e-4
    linear_end: float = 2e-2
    beta_schedule: str = "linear"
    channels: int = 1
    image_size: tuple = ()
    first_stage: VQSpec | None = None
    context_length: int = 256
    fp16_schedule: bool = False  # the public inference rounds the schedule to float16 (LINet)
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def cond_channels(self) -> int:
        """Channels concatenated to ``x_t`` (LMNet: seg, target, box; LINet: the latent mask)."""
        return self.unet.in_channels - self.channels


def _read_yaml(path: Path) -> dict:
    try:
        import yaml
    except ImportError:
        from ..deps import install_hint

        raise PastaError(
            f"reading LesionDiffusion configs needs PyYAML (the diffusion group): {install_hint('diffusion')}"
        ) from None
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PastaError(f"cannot read config {path}: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PastaError(f"{path.name} is not valid YAML ({str(exc).splitlines()[0]})") from None


def model_section(source: str | Path | dict) -> dict:
    """The ``{target, params}`` mapping from a YAML path, a parsed document or the section."""
    where = source.name if isinstance(source, Path) else "config"
    if isinstance(source, (str, Path)):
        source = Path(source)
        where = source.name
        if not source.is_file():
            raise PastaError(f"config {source} does not exist")
        source = _read_yaml(source)
    if not isinstance(source, dict):
        raise PastaError(f"{where} must hold a mapping with a 'model' section")
    section = source.get("model", source)
    if not isinstance(section, dict) or "target" not in section or not isinstance(section.get("params"), dict):
        raise PastaError(f"{where} has no 'model: {{target, params}}' section")
    return section


def _need(params: dict, key: str, where: str):
    if key not in params:
        raise PastaError(f"{where} lacks '{key}'")
    return params[key]


def _refuse(params: dict, where: str, **unsupported) -> None:
    for key, allowed in unsupported.items():
        if key in params and params[key] not in allowed:
            raise PastaError(f"{where}: {key}={params[key]!r} is not supported by this implementation")


def unet_spec(params: dict, where: str = "unet_config") -> UNetSpec:
    _refuse(
        params,
        where,
        num_classes=(None,),
        use_scale_shift_norm=(False,),
        resblock_updown=(False,),
        n_embed=(None,),
        use_spatial_transformer=(True,),
        dims=(3,),
        legacy=(True,),
        use_zero_module=(True, False),
        conv_resample=(True,),
    )
    if not params.get("use_spatial_transformer", False):
        raise PastaError(f"{where}: only spatial-transformer UNets (use_spatial_transformer: true) are supported")
    spec = UNetSpec(
        in_channels=int(_need(params, "in_channels", where)),
        out_channels=int(_need(params, "out_channels", where)),
        model_channels=int(_need(params, "model_channels", where)),
        num_res_blocks=int(_need(params, "num_res_blocks", where)),
        attention_resolutions=tuple(int(v) for v in _need(params, "attention_resolutions", where)),
        channel_mult=tuple(int(v) for v in params.get("channel_mult", (1, 2, 4, 8))),
        num_heads=int(params.get("num_heads", -1)),
        num_head_channels=int(params.get("num_head_channels", -1)),
        context_dim=None if params.get("context_dim") is None else int(params["context_dim"]),
        transformer_depth=int(params.get("transformer_depth", 1)),
        skip_context=bool(params.get("skip_context", False)),
        use_fp16=bool(params.get("use_fp16", False)),
    )
    if spec.context_dim is None:
        raise PastaError(f"{where}: a spatial-transformer UNet needs context_dim")
    if spec.num_heads == -1 and spec.num_head_channels == -1:
        raise PastaError(f"{where}: set num_heads or num_head_channels")
    for width in attention_widths(spec):
        if width % 32:
            raise PastaError(f"{where}: attention at width {width} needs a width divisible by 32 (GroupNorm of 32 groups)")
        heads, per_head = spec.heads(width)
        if spec.skip_context and heads * per_head != spec.context_dim:
            raise PastaError(
                f"{where}: skip_context runs the cross-attention as self-attention, which needs the "
                f"attention width ({heads * per_head}) to equal context_dim ({spec.context_dim})"
            )
    return spec


def attention_widths(spec: UNetSpec) -> list:
    """Channel widths at which a spatial transformer sits (input, middle and output blocks)."""
    widths, ds = [], 1
    for level, mult in enumerate(spec.channel_mult):
        if ds in spec.attention_resolutions:
            widths.append(spec.model_channels * mult)
        if level != len(spec.channel_mult) - 1:
            ds *= 2
    if spec.attention_resolutions:
        widths.append(spec.model_channels * spec.channel_mult[-1])
    return widths


def vq_spec(params: dict, where: str = "first_stage_config") -> VQSpec:
    dd = _need(params, "ddconfig", where)
    where_dd = f"{where}.ddconfig"
    _refuse(
        dd,
        where_dd,
        double_z=(False,),
        dims=(3,),
        attn_type=("none",),
        attn_resolutions=([], None, ()),
        use_linear_attn=(False,),
        condition_channels=(0,),
        give_pre_end=(False,),
        tanh_out=(False,),
        force_to_balance=(False,),
    )
    _refuse(params, where, is_conditional=(False,), dims=(3,), use_ema=(False,))
    if dd.get("attn_type", "vanilla") != "none":
        raise PastaError(f"{where_dd}: only attention-free VQ models (attn_type: none) are supported")
    depth = dd.get("sample_depth")
    spec = VQSpec(
        ch=int(_need(dd, "ch", where_dd)),
        ch_mult=tuple(int(v) for v in _need(dd, "ch_mult", where_dd)),
        num_res_blocks=int(_need(dd, "num_res_blocks", where_dd)),
        z_channels=int(_need(dd, "z_channels", where_dd)),
        embed_dim=int(_need(params, "embed_dim", where)),
        n_embed=int(_need(params, "n_embed", where)),
        in_channels=int(dd.get("in_channels", 1)),
        out_ch=int(dd.get("out_ch", 1)),
        sample_depth=None if depth is None else tuple(int(v) for v in depth),
    )
    for width in {spec.ch * m for m in spec.ch_mult}:
        if width % 16:
            raise PastaError(f"{where_dd}: width {width} must be divisible by 16 (GroupNorm of 16 groups)")
    return spec


def diffusion_spec(section: dict) -> DiffusionSpec:
    target, params = str(section["target"]), section["params"]
    name = target.rsplit(".", 1)[-1]
    if name.endswith("MaskDiffusion"):
        kind = MASK
    elif "InpaintingDiffusion" in name:
        kind = INPAINT
    else:
        raise PastaError(f"{target} is not a LesionDiffusion mask (MaskDiffusion) or inpainting (InpaintingDiffusion) model")
    if params.get("parameterization", "eps") != "eps":
        raise PastaError(f"{target}: only eps-prediction models are supported")
    unet = unet_spec(_need(_need(params, "unet_config", target), "params", f"{target}.unet_config"))
    first = None
    if kind == INPAINT:
        first = vq_spec(_need(_need(params, "first_stage_config", target), "params", f"{target}.first_stage_config"))
        if float(params.get("scale_factor", 1.0)) != 1.0 or params.get("scale_by_std", False):
            raise PastaError(f"{target}: latent scale factors other than 1 are not supported")
    size = params.get("image_size", ())
    size = tuple(int(v) for v in (size if isinstance(size, (list, tuple)) else [size] * 3))
    spec = DiffusionSpec(
        kind=kind,
        target=target,
        unet=unet,
        timesteps=int(params.get("timesteps", 1000)),
        linear_start=float(params.get("linear_start", 1e-4)),
        linear_end=float(params.get("linear_end", 2e-2)),
        beta_schedule=str(params.get("beta_schedule", "linear")),
        channels=int(params.get("channels", 1)),
        image_size=size,
        first_stage=first,
        context_length=int(((params.get("cond_stage_config") or {}).get("params") or {}).get("context_length", 256)),
        fp16_schedule=name.endswith(_FP16_SCHEDULE_TARGETS),
    )
    if spec.beta_schedule != "linear":
        raise PastaError(f"{target}: only the linear beta schedule is supported")
    if spec.cond_channels < 0:
        raise PastaError(f"{target}: in_channels ({unet.in_channels}) is smaller than the diffused channels ({spec.channels})")
    if kind == INPAINT and spec.channels != first.embed_dim:
        raise PastaError(f"{target}: channels ({spec.channels}) must equal the VQ embed_dim ({first.embed_dim})")
    return spec


def load_config(source: str | Path | dict) -> DiffusionSpec | VQSpec:
    """A :class:`DiffusionSpec` or :class:`VQSpec` from a YAML path, a document or a model section."""
    section = model_section(source)
    if "VQModel" in str(section["target"]).rsplit(".", 1)[-1]:
        return vq_spec(section["params"], str(section["target"]))
    return diffusion_spec(section)
