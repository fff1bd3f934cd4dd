"""The Load panel: a CT or a scene from the server's data folder or an upload, and the window
preset of the slice views."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pastacore.errors import PastaError

from .files import PATHOLOGY_SUFFIXES
from .session import WebSession, typed_state

if TYPE_CHECKING:
    from .edit import EditLogic

WINDOWS = {"Auto": None, "Lung": (1500.0, -600.0), "Soft tissue": (400.0, 40.0), "Bone": (1800.0, 400.0)}


@dataclass
class LoadState:
    files: list[str] = field(default_factory=list)  # what the data folder offers
    file: str | None = None  # the one chosen
    windows: list[str] = field(default_factory=lambda: list(WINDOWS))
    window: str = "Auto"
    max_upload_mb: float = 0.0


class LoadLogic:
    def __init__(self, session: WebSession, edit: EditLogic, max_upload_mb: float) -> None:
        self.session, self.edit = session, edit
        self.max_upload_bytes = int(max_upload_mb * 1e6)
        self.typed = typed_state(session.server, LoadState)
        self.data, self.name = self.typed.data, self.typed.name
        self.data.files = session.folder.entries() if session.folder else []
        self.data.max_upload_mb = self.max_upload_bytes / 1e6
        self._uploaded: list = []
        self.typed.bind_changes({self.name.window: self.apply_window})

    def load_file(self, relative: str | None = None) -> None:
        """Load a CT (file or DICOM folder) or a scene from the data folder."""
        relative = relative or self.data.file
        try:
            path = self.session.folder.resolve(relative) if self.session.folder else None
            if path is None:
                raise PastaError("no data folder was given to the server")
            self.load_path(path)
        except PastaError as exc:
            self.session.say(f"error: {exc}")

    def load_path(self, path: Path) -> None:
        """Load ``path`` (a CT file, a DICOM folder or a ``.mrb``), forgetting the nodes of the last one."""
        from pastacore.fileio import read_volume
        from pastacore.mrml import volumes

        session = self.session
        session.synthesizer.discard()
        session.volume = session.segmentation = session.roi = None
        session.cleared.emit()
        if str(path).lower().endswith(".mrb"):
            if not session.app.io_manager.load_scene(str(path)):
                raise PastaError(f"cannot open {path.name}: not a valid Slicer scene bundle")
            scene = session.scene
            nodes = [n for n in scene.GetNodesByClass("vtkMRMLScalarVolumeNode") if not n.IsA("vtkMRMLLabelMapVolumeNode")]
            if not nodes:
                raise PastaError(f"{path.name} holds no CT volume")
            segmentations = list(scene.GetNodesByClass("vtkMRMLSegmentationNode"))
            self.show_volume(nodes[0])
            if segmentations:
                self.edit.use(segmentations[-1])
        elif path.name.lower().endswith(PATHOLOGY_SUFFIXES):  # a 2-D pathology image: a one-slice volume
            from PastaSlicerLib.controllers import PatchController

            self.show_volume(PatchController(session.scene, session.runner).load_image(path))
        else:
            volume = read_volume(path)
            self.show_volume(volumes.node_from_volume(session.scene, volume, path.name.split(".")[0]))
        session.say(f"Loaded {path.name}.")

    def show_volume(self, node: Any) -> None:
        """Make ``node`` the current CT: in the slice views, with the chosen window."""
        session = self.session
        session.volume = node
        display = session.app.display_manager
        display.show_volume_in_slice_background(node)
        display.show_volume_in_slice_foreground(None)
        display.reset_views()
        session.data.volume_loaded = True
        self.apply_window(self.data.window)
        session.volume_shown.emit(node)

    def apply_window(self, window: str | None = None) -> None:
        volume = self.session.volume
        if volume is None or volume.GetDisplayNode() is None:
            return
        display = volume.GetDisplayNode()
        levels = WINDOWS.get(window or "Auto")
        display.SetAutoWindowLevel(levels is None)
        if levels:
            display.SetWindowLevel(*levels)

    async def upload_chunk(self, files: list) -> None:
        """Files from the browser, in chunks; an empty chunk ends the upload. Over the size limit
        nothing is kept."""
        session = self.session
        if files:
            self._uploaded.extend(files)
            size = sum(len(f.get("content") or b"") for f in self._uploaded)
            if size > self.max_upload_bytes:
                self._uploaded = []
                session.say(
                    f"error: the upload is larger than {self.max_upload_bytes / 1e6:g} MB; "
                    "put the file in the server's data folder instead"
                )
            return
        uploaded, self._uploaded = self._uploaded, []
        if not uploaded:
            return
        folder = session.out_dir / "uploads" / time.strftime("%Y%m%d-%H%M%S")
        folder.mkdir(parents=True, exist_ok=True)
        for item in uploaded:
            (folder / Path(str(item["name"])).name).write_bytes(item["content"])
        files = sorted(folder.iterdir())
        try:
            self.load_path(files[0] if len(files) == 1 else folder)
        except PastaError as exc:
            session.say(f"error: {exc}")
