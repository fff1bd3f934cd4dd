"""Installed models: a per-user folder the hub and ``pasta models`` list, import into, verify
and remove from.

Layout: ``<store>/<model name>/model.json`` (the model's description plus the SHA256 of
every file, recorded at import) next to the files themselves. Models shipped with the
extension live in ``Resources/models/<name>/`` with the same layout and are read-only.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import PastaError
from ..io.atomic import atomic_directory
from ..resources import resources_dir
from ..samples import cache_dir
from .manifest import ModelSpec, spec_for_file, spec_from_dict

WEIGHT_SUFFIXES = (".pth", ".pt", ".safetensors", ".ckpt")
DESCRIPTION = "model.json"
OPEN_CLIP_FILES = ("open_clip_config.json", "open_clip_pytorch_model.bin")  # a BiomedCLIP-style folder
OPEN_CLIP_MODEL = "biomedclip"


def default_store_dir() -> Path:
    return cache_dir() / "models"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class InstalledModel:
    name: str
    version: str
    task: str
    path: Path
    files: list
    builtin: bool = False
    verified: bool | None = None

    @property
    def spec(self) -> ModelSpec:
        return spec_from_dict(json.loads((self.path / DESCRIPTION).read_text()))


class ModelStore:
    """The models installed for this user (``root``) plus those shipped with the extension."""

    def __init__(self, root=None):
        self.root = Path(root) if root is not None else default_store_dir()

    # --- reading -------------------------------------------------------------------------
    def _folders(self):
        builtin = resources_dir() / "models"
        for folder, is_builtin in [(p, True) for p in sorted(builtin.iterdir()) if p.is_dir()] + (
            [(p, False) for p in sorted(self.root.iterdir()) if p.is_dir()] if self.root.is_dir() else []
        ):
            if (folder / DESCRIPTION).is_file():
                yield folder, is_builtin

    def list(self) -> list:
        out = []
        for folder, builtin in self._folders():
            try:
                data = json.loads((folder / DESCRIPTION).read_text())
            except ValueError:
                continue  # a damaged description shows up in verify(), not as a crash here
            out.append(InstalledModel(data["name"], str(data.get("version", "")), data.get("task", ""), folder,
                                      [f["name"] for f in data.get("files", [])], builtin))
        return out

    def get(self, name: str) -> InstalledModel:
        for model in self.list():
            if model.name == name:
                return model
        names = ", ".join(m.name for m in self.list()) or "none"
        raise PastaError(f"no installed model named {name!r} (installed: {names})")

    # --- changing ------------------------------------------------------------------------
    def import_file(self, path, name: str | None = None, overwrite: bool = False) -> InstalledModel:
        """Copy a weight file or an nnU-Net result folder into the store, after checking it."""
        path = Path(path)
        if not path.exists():
            raise PastaError(f"{path} does not exist")
        spec = spec_for_file(path.name) if path.is_file() else None
        if spec is not None and (resources_dir() / "models" / spec.name).is_dir():
            spec = None  # a built-in model's generic file name ("model.pth") says nothing about the user's file
        if path.is_dir():
            open_clip = all((path / name).is_file() for name in OPEN_CLIP_FILES)
            if open_clip:
                from .manifest import known_models

                spec = known_models().get(OPEN_CLIP_MODEL)
            elif not (path / "plans.json").is_file() or not (path / "dataset.json").is_file():
                raise PastaError(f"{path} is a folder but not an nnU-Net result folder (plans.json and dataset.json are "
                                 f"missing) nor an open_clip text encoder folder ({' and '.join(OPEN_CLIP_FILES)})")
            hidden = (lambda p: any(part.startswith(".") for part in p.relative_to(path).parts)) if open_clip else (
                lambda p: False)  # a Hugging Face download's .gitattributes and .cache/
            files = sorted(p for p in path.rglob("*") if p.is_file() and not hidden(p))
        else:
            if not path.name.lower().endswith(WEIGHT_SUFFIXES):
                raise PastaError(f"{path.name}: not a weight file (expected {', '.join(WEIGHT_SUFFIXES)})")
            files = [path]
        name = name or (spec.name if spec else re.sub(r"[^A-Za-z0-9_.-]+", "-", path.stem).strip("-").lower())
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name or ""):
            raise PastaError(f"invalid model name {name!r}: use letters, digits, '.', '_' and '-'")
        if any(m.builtin and m.name == name for m in self.list()):
            raise PastaError(f"{name!r} is a model shipped with the extension; import under another name")
        records = []
        for file in files:
            relative = file.name if path.is_file() else str(file.relative_to(path))
            digest = sha256_of(file)
            expected = spec.expected_sha256(relative) if spec else None
            if expected and expected != digest:
                raise PastaError(f"{relative} does not match the published checksum of {spec.name} (damaged or a different file)")
            records.append({"name": relative, "sha256": digest, "size": file.stat().st_size})
        for file in files:
            if file.name.lower().endswith(WEIGHT_SUFFIXES) or file.name == OPEN_CLIP_FILES[1]:
                from .checkpoints import load_checkpoint

                # refuses pickles that would run code, and corrupt files; Lightning metadata stays inert
                load_checkpoint(file, metadata_globals=file.suffix == ".ckpt")
        description = asdict(spec) if spec else {"name": name, "version": "user", "task": "unknown", "labels": [],
                                                 "description": f"imported from {path.name}"}
        description.update(name=name, files=records, imported_from=path.name, imported_at=time.strftime("%Y-%m-%d %H:%M:%S"))
        self.root.mkdir(parents=True, exist_ok=True)
        with atomic_directory(self.root / name, overwrite=overwrite) as folder:
            for file, record in zip(files, records):
                target = folder / record["name"]
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, target)
            (folder / DESCRIPTION).write_text(json.dumps(description, indent=2, default=list))
        return self.get(name)

    def verify(self, name: str) -> tuple:
        """(ok, problems): every file present with the SHA256 recorded at import."""
        model = self.get(name)
        problems = []
        try:
            data = json.loads((model.path / DESCRIPTION).read_text())
        except ValueError:
            return False, [f"{DESCRIPTION} is damaged"]
        for record in data.get("files", []):
            file = model.path / record["name"]
            if not file.is_file():
                problems.append(f"{record['name']} is missing")
            elif record.get("sha256") and sha256_of(file) != record["sha256"]:
                problems.append(f"{record['name']} has changed since import (checksum mismatch)")
        return not problems, problems

    def remove(self, name: str) -> None:
        model = self.get(name)
        if model.builtin:
            raise PastaError(f"{name!r} ships with the extension and cannot be removed")
        if self.root.resolve() not in model.path.resolve().parents:
            raise PastaError(f"{model.path} is outside the model store; not removing it")
        shutil.rmtree(model.path)
