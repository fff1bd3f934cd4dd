"""Installed models: a per-user folder the hub and ``pasta models`` list, import into, verify
and remove from.

Layout: ``<store>/<model name>/model.json`` (the model's description plus the SHA256 of
every file, recorded at import) next to the files themselves. Models shipped with the
extension live in ``Resources/models/<name>/`` with the same layout and are read-only.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..digests import sha256_of
from ..errors import PastaError, option
from ..fileio.atomic import atomic_directory
from ..fileio.jsonfile import read_json_object
from ..networks.checkpoints import weight_suffixes
from ..resources import resources_dir
from ..samples import cache_dir
from .manifest import ModelSpec, spec_for_file, spec_from_dict

DESCRIPTION = "model.json"
MAX_NAME = 100  # characters of a model name (a folder name in the store)
OPEN_CLIP_FILES = ("open_clip_config.json", "open_clip_pytorch_model.bin")  # a BiomedCLIP-style folder
OPEN_CLIP_MODEL = "biomedclip"


def default_store_dir() -> Path:
    return cache_dir() / "models"


@dataclass
class InstalledModel:
    name: str
    version: str
    task: str
    path: Path
    files: list
    builtin: bool = False
    verified: bool | None = None
    damaged: str = ""  # why the folder cannot be used ("" when it is fine)
    family: str = ""  # the model family (pastacore.families), "pasta" for PASTA's own networks

    @property
    def spec(self) -> ModelSpec:
        return spec_from_dict(json.loads((self.path / DESCRIPTION).read_text()))


class ModelStore:
    """The models installed for this user (``root``) plus those shipped with the extension."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_store_dir()

    # --- reading -------------------------------------------------------------------------
    def _folders(self):
        builtin = resources_dir() / "models"
        for folder, is_builtin in [(p, True) for p in sorted(builtin.iterdir()) if p.is_dir()] + (
            [(p, False) for p in sorted(self.root.iterdir()) if p.is_dir()] if self.root.is_dir() else []
        ):
            if not folder.name.startswith("."):  # staging folders of an import under way
                yield folder, is_builtin

    def list(self) -> list:
        """Every model folder; one that cannot be used is listed with ``damaged`` saying why."""
        return [_installed(folder, builtin) for folder, builtin in self._folders()]

    def find(self, name: str) -> InstalledModel:
        """The model called ``name``, damaged or not."""
        models = self.list()
        for model in models:
            if model.name == name:
                return model
        names = ", ".join(m.name for m in models if not m.damaged) or "none"
        raise PastaError(f"no installed model named {name!r} (installed: {names})")

    def get(self, name: str) -> InstalledModel:
        """The usable model called ``name``."""
        model = self.find(name)
        if model.damaged:
            raise PastaError(
                f"model {name!r} is damaged ({model.damaged}); remove it with 'pasta models remove {name}' and import it again"
            )
        return model

    # --- changing ------------------------------------------------------------------------
    def import_file(self, path: str | Path, name: str | None = None, overwrite: bool = False) -> InstalledModel:
        """Copy a weight file, an nnU-Net result folder or a model folder (``model.json`` naming its
        weights, as ``pasta train-default`` and ``pasta finetune`` write) into the store, after checking it."""
        path = Path(path)
        if not path.exists():
            raise PastaError(f"{path} does not exist")
        spec = spec_for_file(path.name) if path.is_file() else None
        if spec is not None and (resources_dir() / "models" / spec.name).is_dir():
            spec = None  # a built-in model's generic file name ("model.pth") says nothing about the user's file
        described = None
        if path.is_dir() and (path / DESCRIPTION).is_file() and not (path / "plans.json").is_file():
            described = _model_folder(path)  # what `pasta train-default` / `pasta finetune` write
            spec = spec_from_dict(described)
            files = [p for p in sorted(path.iterdir()) if p.is_file() and p.name != DESCRIPTION]
            _files_inside(path)  # a symbolic link out of the folder is refused
        elif path.is_dir():
            open_clip = all((path / name).is_file() for name in OPEN_CLIP_FILES)
            if open_clip:
                from .manifest import known_models

                spec = known_models().get(OPEN_CLIP_MODEL)
            elif not (path / "plans.json").is_file() or not (path / "dataset.json").is_file():
                raise PastaError(
                    f"{path} is a folder but not an nnU-Net result folder (plans.json and dataset.json are "
                    f"missing) nor an open_clip text encoder folder ({' and '.join(OPEN_CLIP_FILES)})"
                )
            hidden = (
                (lambda p: any(part.startswith(".") for part in p.relative_to(path).parts)) if open_clip else (lambda p: False)
            )  # a Hugging Face download's .gitattributes and .cache/
            files = [p for p in _files_inside(path) if not hidden(p)]
        else:
            if not path.name.lower().endswith(weight_suffixes()):
                raise PastaError(f"{path.name}: not a weight file (expected {', '.join(weight_suffixes())})")
            files = [path]
        name = self._check_name(name or (spec.name if spec else _name_from(path)))
        records = []
        for file in files:
            relative = file.name if path.is_file() else str(file.relative_to(path))
            digest = sha256_of(file)
            expected = spec.expected_sha256(relative) if spec else None
            if expected and expected != digest:
                whose = "the checksum its model.json records" if described else f"the published checksum of {spec.name}"
                raise PastaError(f"{relative} does not match {whose} (damaged or a different file)")
            records.append({"name": relative, "sha256": digest, "size": file.stat().st_size})
        from ..networks.checkpoints import load_checkpoint
        from ..networks.loading import inspect_checkpoint, require_fit

        if described and described.get("family"):  # a model family's folder: the family loads it strictly
            from ..families import checked_config, family_named

            config = checked_config({**(described.get("config") or {}), "family": described["family"]}, f"{path.name}/model.json")
            described["family_summary"] = (
                family_named(described["family"]).implementation().verify(path / described["weights"], config)
            )
        elif described or (spec.architecture.get("type") if spec else "pasta_generic_unet") == "pasta_generic_unet":
            # a PASTA network: every tensor must fit the network its shapes describe (no command could run it otherwise)
            require_fit(inspect_checkpoint(path / described["weights"] if described else path))
        for file in files:
            if file.name.lower().endswith(weight_suffixes()) or file.name == OPEN_CLIP_FILES[1]:
                # refuses pickles that would run code, and corrupt files; Lightning metadata stays inert
                load_checkpoint(file, metadata_globals=file.suffix == ".ckpt")  # Lightning's own suffix
        description = (
            dict(described)
            if described
            else asdict(spec)
            if spec
            else {"name": name, "version": "user", "task": "unknown", "labels": [], "description": f"imported from {path.name}"}
        )
        description.update(name=name, files=records, imported_from=path.name, imported_at=time.strftime("%Y-%m-%d %H:%M:%S"))
        self.root.mkdir(parents=True, exist_ok=True)
        with atomic_directory(self.root / name, overwrite=overwrite) as folder:
            for file, record in zip(files, records):
                target = folder / record["name"]
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, target)
            (folder / DESCRIPTION).write_text(json.dumps(description, indent=2, default=list))
        return self.get(name)

    def import_family_model(
        self, path: str | Path, config: dict, name: str | None = None, labels: list | None = None, overwrite: bool = False
    ) -> InstalledModel:
        """Store the weight file of a model family (``config`` names it; see :mod:`pastacore.families`)
        after the family has loaded it strictly into the configured network, with a ``model.json``
        holding the family, its config and the label names (``[{"value", "term"}]``)."""
        from ..families import family_of

        path = Path(path)
        if not path.is_file():
            raise PastaError(f"{path} is not a weight file" if path.exists() else f"{path} does not exist")
        family = family_of(config)
        name = self._check_name(name or _name_from(path))
        summary = family.implementation().verify(path, config)
        record = {"name": path.name, "sha256": sha256_of(path), "size": path.stat().st_size}
        description = {
            "name": name,
            "version": "user",
            "task": family.task,
            "family": family.name,
            "config": config,
            "weights": path.name,
            "labels": list(labels or []),
            "family_summary": summary,
            "description": f"{family.name} {family.task} imported from {path.name}",
            "files": [record],
            "imported_from": path.name,
            "imported_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        self.root.mkdir(parents=True, exist_ok=True)
        with atomic_directory(self.root / name, overwrite=overwrite) as folder:
            shutil.copy2(path, folder / path.name)
            (folder / DESCRIPTION).write_text(json.dumps(description, indent=2, default=list))
        return self.get(name)

    def _check_name(self, name: str) -> str:
        """A usable name for a new model: a folder name, not a built-in model's."""
        if len(name or "") > MAX_NAME:
            raise PastaError(
                f"model name {name[:20]}... is {len(name)} characters long; use at most {MAX_NAME} "
                f"(choose one with {option('name')})"
            )
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name or ""):
            raise PastaError(f"invalid model name {name!r}: use letters, digits, '.', '_' and '-'")
        if any(m.builtin and m.name == name for m in self.list()):
            raise PastaError(f"{name!r} is a model shipped with the extension; import under another name")
        return name

    def verify(self, name: str) -> tuple:
        """(ok, problems): every file present with the SHA256 recorded at import. Only files
        inside the model's folder are read: a recorded name that is absolute, climbs with '..'
        or leads through a symbolic link out of the folder is a problem, not a file to hash."""
        model = self.find(name)
        if model.damaged:
            return False, [model.damaged]
        data = _read_description(model.path)
        problems = []
        for record in data["files"]:
            relative = record["name"]
            file = model.path / relative
            if not inside(file, model.path):
                problems.append(f"{relative!r} lies outside the model folder (not read)")
            elif not file.is_file():
                problems.append(f"{relative} is missing")
            elif record.get("sha256") and sha256_of(file) != record["sha256"]:
                problems.append(f"{relative} has changed since import (checksum mismatch)")
        return not problems, problems

    def remove(self, name: str) -> None:
        model = self.find(name)
        if model.builtin:
            raise PastaError(f"{name!r} ships with the extension and cannot be removed")
        if self.root.resolve() not in model.path.resolve().parents:
            raise PastaError(f"{model.path} is outside the model store; not removing it")
        shutil.rmtree(model.path)


# --- model folders --------------------------------------------------------------------------


def _model_folder(folder: Path) -> dict:
    """The model.json of a model folder, checked: a segmentation model naming a weight file beside it."""
    try:
        description = json.loads((folder / DESCRIPTION).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise PastaError(f"{folder.name}/{DESCRIPTION} cannot be read ({str(exc).splitlines()[0][:80]})") from None
    if not isinstance(description, dict) or not all(isinstance(description.get(k), str) for k in ("name", "task")):
        raise PastaError(f"{folder.name}/{DESCRIPTION} is not a model description (it needs a name and a task)")
    weights = description.get("weights")
    if not isinstance(weights, str) or "/" in weights or "\\" in weights or not (folder / weights).is_file():
        raise PastaError(f'{folder.name}/{DESCRIPTION} names no weight file beside it ("weights": {weights!r})')
    description.setdefault("version", "user")
    return description


def _name_from(path: Path) -> str:
    """A model name made from a file's name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", path.stem).strip("-").lower()


def inside(path: Path, folder: Path) -> bool:
    """True when ``path`` (after resolving '..' and symbolic links) lies inside ``folder``."""
    return Path(folder).resolve() in Path(path).resolve().parents


def _files_inside(folder: Path) -> list:
    """The files of a folder to import; a symbolic link out of it is refused, not followed."""
    import os

    files = []
    for root, dirs, names in os.walk(folder):
        for entry in [Path(root, d) for d in dirs] + [Path(root, n) for n in names]:
            relative = entry.relative_to(folder)
            if entry.is_symlink() and not inside(entry, folder):
                raise PastaError(f"refusing {folder.name}: {relative} is a symbolic link to outside the folder")
            if entry.is_symlink() and entry.is_dir():
                raise PastaError(f"refusing {folder.name}: {relative} is a symbolic link to a folder")
        files += [Path(root, n) for n in names if Path(root, n).is_file()]
    return sorted(files)


def _read_description(folder: Path) -> dict:
    """model.json as a dict with a name and a list of file records; PastaError says what is wrong."""
    data = read_json_object(folder / DESCRIPTION, DESCRIPTION)
    missing = [key for key in ("name", "files") if key not in data]
    if missing:
        raise PastaError(f"{DESCRIPTION} lacks {', '.join(missing)}")
    if not isinstance(data["name"], str) or not data["name"]:
        raise PastaError(f"{DESCRIPTION} has no usable name")
    files = data["files"]
    if not isinstance(files, list) or not all(
        isinstance(f, dict) and isinstance(f.get("name"), str) and f["name"] for f in files
    ):
        raise PastaError(f"{DESCRIPTION} has a damaged file list")
    for key in ("version", "task"):
        if key in data and not isinstance(data[key], (str, int, float)):
            raise PastaError(f"{DESCRIPTION} has a damaged {key}")
    return data


def _installed(folder: Path, builtin: bool) -> InstalledModel:
    try:
        data = _read_description(folder)
    except PastaError as problem:
        return InstalledModel(folder.name, "", "", folder, [], builtin, damaged=str(problem))
    task = str(data.get("task", ""))
    family = data.get("family") if isinstance(data.get("family"), str) else ("pasta" if task == "segmentation" else "")
    return InstalledModel(
        data["name"], str(data.get("version", "")), task, folder, [f["name"] for f in data["files"]], builtin, family=family
    )
