"""The Pathology panel: classify a loaded 2-D image (PNG/TIFF, a one-slice volume) tile by tile
with an installed PatchTCGA encoder and a head of the data folder; the heat map of one class is
overlaid in the slice views."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pastacore.errors import PastaError

from .session import WebSession, typed_state

HEAT_OPACITY = 0.5  # the heat map over the pathology image


@dataclass
class PathologyState:
    encoders: list[str] = field(default_factory=list)  # installed PatchTCGA encoders
    encoder: str | None = None
    heads: list[str] = field(default_factory=list)  # the heads (.pt) of the data folder
    head: str | None = None
    classes: list[str] = field(default_factory=list)  # the chosen head's classes
    class_name: str | None = None  # the class whose heat map is shown
    tile: int = 224  # tile side in pixels
    result: str = ""  # the image's class and the heat map, in words


class PathologyLogic:
    def __init__(self, session: WebSession) -> None:
        from PastaSlicerLib.controllers import PatchController

        self.session = session
        self.patches = PatchController(session.scene, session.runner)
        self.heatmap = None
        self.typed = typed_state(session.server, PathologyState)
        self.data, self.name = self.typed.data, self.typed.name
        self.typed.bind_changes({self.name.head: self.on_head})
        session.volume_shown.connect(lambda *_: self.refresh())
        session.cleared.connect(self.forget)
        self.refresh()

    def refresh(self) -> None:
        """The installed PatchTCGA encoders and the heads in the data folder."""
        from pastaweb.files import heads

        encoders = self.patches.encoders()
        self.data.encoders = encoders
        if self.data.encoder not in encoders:
            self.data.encoder = encoders[0] if encoders else None
        self.data.heads = heads(self.session.folder) if self.session.folder else []

    def forget(self) -> None:
        self.heatmap = None
        self.data.result = ""

    def on_head(self, head: str | None = None) -> None:
        classes = []
        if head and self.session.folder:
            try:
                classes = self.patches.head_classes(self.session.folder.resolve(head))
            except PastaError:
                classes = []
        self.data.classes = classes
        self.data.class_name = classes[1] if len(classes) == 2 else None

    def classify(self) -> None:
        """Classify the loaded 2-D image tile by tile; overlay the heat map in the slice views."""
        session = self.session

        def start(progress: Any, done: Any) -> Any:
            if not self.data.head or not session.folder:
                raise PastaError("choose a head (a .pt file of the data folder)")
            head = session.folder.resolve(self.data.head)
            tile = int(self.data.tile or 224)
            return self.patches.classify(
                session.volume,
                self.data.encoder,
                head,
                tile,
                self.data.class_name or None,
                on_progress=progress,
                on_finished=done,
            )

        def finished(outcome: Any) -> Any:
            if outcome.ok:
                self.heatmap = outcome.value.heatmap
                session.app.display_manager.show_volume_in_slice_foreground(self.heatmap)
                for view in session.app.view_manager.get_slice_views():
                    view.set_foreground_opacity(HEAT_OPACITY)
                self.data.result = outcome.value.describe()
            return outcome

        session.start("classify", "Classifying", start, finished)
