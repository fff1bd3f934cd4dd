"""What ``pasta finetune --start`` names: a MIS-FM / PyMIC checkpoint with its config, a
``pasta pretrain`` folder (``model.pt`` + ``config.json``), or a model folder that fine-tuning
wrote earlier (``model.json`` with ``"family": "pymic"``); read without loading weights (the
start itself is :func:`pastacore.training.start_model.start_from`)."""

from __future__ import annotations

import json
from pathlib import Path

from ...errors import PastaError, option
from . import config as cfg

PRETRAIN_WEIGHTS, PRETRAIN_CONFIG = "model.pt", "config.json"


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise PastaError(f"cannot read {path.name} ({exc})") from None
    if not isinstance(data, dict):
        raise PastaError(f"{path.name} should hold a JSON object")
    return data


def pymic_config(config: dict, where: str) -> dict:
    """``config`` checked as a PyMIC network's (its family must be pymic)."""
    from .. import checked_config

    checked = checked_config({"family": cfg.FAMILY, **config}, where)
    if checked.get("family") != cfg.FAMILY:
        raise PastaError(f"{where} names family {checked.get('family')!r}; a PyMIC start needs family {cfg.FAMILY!r}")
    return checked


def resolve_start(path: str | Path, start_config: str | Path | None = None) -> tuple:
    """``(weights, config, description or None, kind)`` of what ``--start`` names."""
    from .. import read_model_config

    path = Path(path)
    given = read_model_config(start_config) if start_config else None
    if given is not None and given.get("family") != cfg.FAMILY:
        raise PastaError(f"{option('start_config')} names family {given.get('family')!r}; a PyMIC start needs {cfg.FAMILY!r}")
    if path.is_dir():
        if (path / "model.json").is_file():
            description = _read_json(path / "model.json")
            if description.get("family") != cfg.FAMILY:
                raise PastaError(
                    f"{path.name} is a model folder but not of a PyMIC network; give it with {option('model')} instead"
                )
            weights = path / str(description.get("weights", ""))
            config = given or pymic_config(description.get("config") or {}, f"the config in {path.name}/model.json")
            return weights, config, description, "model folder"
        if (path / PRETRAIN_WEIGHTS).is_file() and (path / PRETRAIN_CONFIG).is_file():
            config = given or read_model_config(path / PRETRAIN_CONFIG)
            return path / PRETRAIN_WEIGHTS, config, None, "pasta pretrain folder"
        raise PastaError(f"{path} is neither a pasta pretrain folder ({PRETRAIN_WEIGHTS} + {PRETRAIN_CONFIG}) nor a model folder")
    if not path.is_file():
        raise PastaError(f"{path} does not exist")
    if given is None and (path.parent / PRETRAIN_CONFIG).is_file():
        given = read_model_config(path.parent / PRETRAIN_CONFIG)
    if given is None:
        raise PastaError(
            f"{path.name} needs its network config: give {option('start_config')} CFG.json "
            '({"family": "pymic", "net_type": "FMUNet" | "PCTNet", ...its [network] parameters})'
        )
    return path, given, None, "PyMIC checkpoint"
