"""The segments and measurements panel, and the segment editor's segmentation: which
segmentation the editor edits, its measurement table (measured again after each edit), and the
list of segments in the scene."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from pastacore.errors import PastaError
from pastacore.mrml.segmentations import segment_tag
from pastacore.synthetic import SYNTHETIC_TAG

from .session import WebSession, typed_state

MEASURE_DELAY_SECONDS = 0.5  # measure again this long after the last edit


@dataclass
class EditState:
    segments: list[str] = field(default_factory=list)  # "segmentation: segment" of every segment in the scene
    measurements: list[dict] = field(default_factory=list)  # one row per lesion of the current segmentation


class EditLogic:
    def __init__(self, session: WebSession) -> None:
        self.session = session
        self.typed = typed_state(session.server, EditState)
        self.data, self.name = self.typed.data, self.typed.name
        self._watch = None
        self._timer = None
        session.cleared.connect(self.forget)
        session.volume_shown.connect(lambda _node: self.list_segments())

    def use(self, node: Any, volume: Any = None) -> None:
        """Make ``node`` the segmentation the editor edits (on ``volume``, default the current CT),
        measure it and follow its edits."""
        session = self.session
        session.segmentation = node
        session.volume = volume or session.volume
        editor = session.app.segmentation_editor
        editor.set_active_segmentation(node, session.volume)
        lesions = session.reports.lesion_segments(node)
        synthetic = [sid for sid in lesions if segment_tag(node, sid, SYNTHETIC_TAG)]
        if lesions:  # edits usually go to a lesion, not the organ; in a synthetic case to the new lesion
            editor.set_active_segment_id((synthetic or lesions)[0])
        self.list_segments()
        self.measure()
        self.stop_watch()
        self._watch = session.reports.follow_edits(session.volume, node, on_measured=self.show_rows, defer=self._later)
        session.segmentation_used.emit(node)

    def forget(self) -> None:
        """No current segmentation: stop following edits, empty the table."""
        self.session.segmentation = None
        self.stop_watch()
        self.list_segments()
        self.data.measurements = []
        self.session.segmentation_used.emit(None)

    def stop_watch(self) -> None:
        if self._watch is not None:
            self._watch.stop()
            self._watch = None

    def _later(self, measure) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_event_loop().call_later(MEASURE_DELAY_SECONDS, self._now, measure)

    def _now(self, measure) -> None:
        with self.session.state:
            measure()
            self.list_segments()

    def measure(self) -> None:
        session = self.session
        try:
            table, measurements = session.reports.measure(session.volume, session.segmentation)
        except PastaError as exc:
            self.show_rows(None, [], str(exc))
            return
        self.show_rows(table, measurements, None)

    def show_rows(self, table: Any, measurements: list, error: str | None) -> None:
        """The measurement table's rows (lesion number, name, status: synthetic, proposed..., volume, axes, HU)."""
        if error:
            self.data.measurements = []
            self.session.say(f"Measurement not updated: {error}")
            return
        review = getattr(self.session.reports, "last_review", None)
        status = {lesion.number: lesion.status for lesion in (review.lesions if review is not None else [])}
        self.data.measurements = [
            {
                "lesion": m.index,
                "name": m.name,
                "status": status.get(m.index, ""),
                "volume_ml": round(m.volume_ml, 2),
                "long_mm": round(m.long_axis_mm, 1),
                "short_mm": round(m.short_axis_mm, 1),
                "mean_hu": round(m.mean_hu),
            }
            for m in measurements
        ]

    def list_segments(self) -> None:
        names = []
        for node in self.session.scene.GetNodesByClass("vtkMRMLSegmentationNode"):
            content = node.GetSegmentation()
            names += [f"{node.GetName()}: {content.GetNthSegment(i).GetName()}" for i in range(content.GetNumberOfSegments())]
        self.data.segments = names
