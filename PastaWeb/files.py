"""The server-side file picker: what it lists and loads lies inside one data folder, never outside
it (no ``..``, no symbolic link leading out)."""

from __future__ import annotations

from pathlib import Path

from pastacore.errors import PastaError
from pastacore.fileio.readers import IMAGE_SUFFIXES

SCENE_SUFFIXES = (".mrb",)
PATHOLOGY_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")  # 2-D images for the pathology panel
HEAD_SUFFIXES = (".pt", ".pth")


class DataFolder:
    def __init__(self, root):
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise PastaError(f"the data folder {root} does not exist")

    def resolve(self, relative: str) -> Path:
        """The path ``relative`` names inside the data folder; refused when it leads outside."""
        if not relative or Path(relative).is_absolute():
            raise PastaError("choose a file of the data folder")
        candidate = (self.root / relative).resolve()
        if candidate != self.root and self.root not in candidate.parents:
            raise PastaError(f"{relative} is outside the data folder")
        if not candidate.exists():
            raise PastaError(f"{relative} does not exist in the data folder")
        return candidate

    def entries(self, limit: int = 500) -> list:
        """Relative paths of what can be loaded: CT files, scenes, 2-D pathology images, and folders
        holding DICOM files."""
        found = []
        for path in sorted(self.root.rglob("*")):
            if len(found) >= limit:
                break
            try:
                inside = self.resolve(str(path.relative_to(self.root)))
            except PastaError:
                continue  # a link leading out of the data folder
            name = path.name.lower()
            if any(part.startswith(".") for part in path.relative_to(self.root).parts):
                continue
            if inside.is_file() and name.endswith(IMAGE_SUFFIXES + SCENE_SUFFIXES + PATHOLOGY_SUFFIXES):
                found.append(str(path.relative_to(self.root)))
            elif inside.is_dir() and _holds_dicom(inside):
                found.append(str(path.relative_to(self.root)) + "/")
        return found


def _holds_dicom(folder: Path) -> bool:
    for child in list(folder.iterdir())[:20]:
        if child.is_file():
            try:
                with open(child, "rb") as handle:
                    if handle.read(132)[128:132] == b"DICM":
                        return True
            except OSError:
                continue
    return False


def heads(folder: DataFolder, limit: int = 200) -> list:
    """Relative paths of the classifier heads (``.pt``) in the data folder."""
    found = []
    for path in sorted(folder.root.rglob("*")):
        relative = path.relative_to(folder.root)
        if not path.name.lower().endswith(HEAD_SUFFIXES) or any(p.startswith(".") for p in relative.parts):
            continue
        try:
            if folder.resolve(str(relative)).is_file():  # not a link leading out of the data folder
                found.append(str(relative))
        except PastaError:
            continue
        if len(found) >= limit:
            break
    return found
