"""What each control of the page does: one logic class per panel, each with its own typed state,
sharing one :class:`~.session.WebSession`.

Every action goes through ``PastaSlicerLib.controllers`` (as the Slicer modules do); a long one
runs in the task process and is polled from the server's event loop, so slice views keep
answering while it runs. One action runs at a time.

- :mod:`.load`: load a CT or a scene, upload, window presets
- :mod:`.segment`: model, search region, Segment
- :mod:`.synth`: the box, the lesion's description, Synthesize, Apply, Discard
- :mod:`.edit`: the segmentation the editor edits, its measurements, the scene's segments
- :mod:`.export`: the report, the scene, downloads
- :mod:`.pathology`: classify a 2-D pathology image with a PatchTCGA encoder, the heat map overlaid
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .edit import EditLogic
from .export import ExportLogic
from .load import LoadLogic
from .pathology import PathologyLogic
from .segment import SegmentLogic
from .session import WebSession
from .synth import SynthLogic


class PastaWebLogic:
    def __init__(
        self,
        server: Any,
        slicer_app: Any,
        data_folder: Any,
        out_dir: str | Path,
        downloads: Any,
        runner: Any,
        max_upload_mb: float,
    ) -> None:
        self.session = WebSession(server, slicer_app, data_folder, out_dir, downloads, runner)
        self.edit = EditLogic(self.session)
        self.segment = SegmentLogic(self.session, self.edit)
        self.load = LoadLogic(self.session, self.edit, max_upload_mb)
        self.synth = SynthLogic(self.session, self.load, self.segment, self.edit)
        self.export = ExportLogic(self.session)
        self.pathology = PathologyLogic(self.session)

    @property
    def server(self) -> Any:
        return self.session.server
