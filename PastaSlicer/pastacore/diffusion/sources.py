"""Where the LesionDiffusion files come from: the model store, or a folder the user names.

* Store (default): ``lesiondiffusion-lmnet`` (LMNet.ckpt), ``lesiondiffusion-linet``
  (LINet.ckpt), ``lesiondiffusion-vq`` (VQ.ckpt, needed only when LINet.ckpt lacks its own
  VQ) and ``biomedclip`` (the open_clip folder), as ``pasta models import`` installs them.
  Their configs are the released ones recorded in the model manifest, unless a ``*.yaml``
  was placed in the model's folder.
* Folder: ``LMNet.ckpt``, ``LINet.ckpt``, ``VQ.ckpt`` with configs named ``LMNet.yaml``,
  ``LINet.yaml``, ``VQ.yaml`` or the repository's names (``maskdiffusion_test.yaml``,
  ``lesiondiffusion_test.yaml``, ``lesiondiffusion_vq.yaml``), else the released configs;
  the text encoder in ``BiomedCLIP/``.

``text_encoder`` (a folder) overrides where the text tower is read from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PastaError
from ..modelstore.manifest import known_models

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..modelstore.store import ModelStore


ROLES = ("lmnet", "linet", "vq")
STORE_NAMES = {
    "lmnet": "lesiondiffusion-lmnet",
    "linet": "lesiondiffusion-linet",
    "vq": "lesiondiffusion-vq",
    "text": "biomedclip",
}
FILE_NAMES = {"lmnet": "LMNet.ckpt", "linet": "LINet.ckpt", "vq": "VQ.ckpt"}
CONFIG_NAMES = {
    "lmnet": ("LMNet.yaml", "maskdiffusion_test.yaml", "maskdiffusion.yaml"),
    "linet": ("LINet.yaml", "lesiondiffusion_test.yaml", "lesiondiffusion.yaml"),
    "vq": ("VQ.yaml", "lesiondiffusion_vq.yaml"),
}
TEXT_FOLDER = "BiomedCLIP"


def released_config(role: str) -> dict:
    """The released network's config (the manifest's record of the repository's YAML)."""
    return known_models()[STORE_NAMES[role]].architecture["config"]


@dataclass
class ModelFiles:
    checkpoints: dict = field(default_factory=dict)  # role -> Path or None
    configs: dict = field(default_factory=dict)  # role -> Path (YAML) or dict
    text: Path | None = None
    text_id: str = ""  # identifies the text tower for the embedding cache
    origin: str = ""

    def problems(self, roles: Sequence[str] = ("lmnet", "linet")) -> list:
        missing = [FILE_NAMES[r] for r in roles if self.checkpoints.get(r) is None]
        if self.text is None:
            missing.append("the BiomedCLIP text encoder")
        return missing


def _config_in(folder: Path, role: str):
    for name in CONFIG_NAMES[role]:
        if (folder / name).is_file():
            return folder / name
    return released_config(role)


def _file_id(path: Path) -> str:
    stat = path.stat()
    return f"{path.name}-{stat.st_size}-{stat.st_mtime_ns}"


def _text_id(folder: Path | None, recorded: str = "") -> str:
    if folder is None:
        return ""
    if recorded:
        return recorded[:16]
    weights = folder / "open_clip_pytorch_model.bin"
    return _file_id(weights) if weights.is_file() else folder.name


def from_folder(folder: str | Path, text_encoder: str | Path | None = None) -> ModelFiles:
    folder = Path(folder)
    if not folder.is_dir():
        raise PastaError(f"the LesionDiffusion model folder {folder} does not exist")
    files = ModelFiles(origin=str(folder))
    for role in ROLES:
        path = folder / FILE_NAMES[role]
        files.checkpoints[role] = path if path.is_file() else None
        files.configs[role] = _config_in(folder, role)
    text = Path(text_encoder) if text_encoder else folder / TEXT_FOLDER
    files.text = text if text.is_dir() else None
    files.text_id = _text_id(files.text)
    return files


def from_store(store: ModelStore | None = None, text_encoder: str | Path | None = None) -> ModelFiles:
    import json

    from ..modelstore.store import ModelStore

    store = store if store is not None else ModelStore()
    installed = {m.name: m for m in store.list()}
    files = ModelFiles(origin=f"model store {store.root}")
    for role in ROLES:
        model = installed.get(STORE_NAMES[role])
        path = model.path / FILE_NAMES[role] if model is not None else None
        if path is not None and not path.is_file():  # imported under its own file name
            found = sorted(model.path.glob("*.ckpt"))
            path = found[0] if found else None
        files.checkpoints[role] = path
        files.configs[role] = _config_in(model.path, role) if model is not None else released_config(role)
    recorded = ""
    if text_encoder:
        files.text = Path(text_encoder) if Path(text_encoder).is_dir() else None
    elif STORE_NAMES["text"] in installed:
        files.text = installed[STORE_NAMES["text"]].path
        description = json.loads((files.text / "model.json").read_text())
        recorded = next(
            (f.get("sha256") or "" for f in description.get("files", []) if f["name"] == "open_clip_pytorch_model.bin"), ""
        )
    files.text_id = _text_id(files.text, recorded)
    return files


def locate(
    models: str | Path | None = None, text_encoder: str | Path | None = None, store: ModelStore | None = None
) -> ModelFiles:
    """The files for the backend: from ``models`` (a folder) or the model store."""
    return from_folder(models, text_encoder) if models else from_store(store, text_encoder)
