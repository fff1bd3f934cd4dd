"""The box and synthesis panel: draw a box (two clicks) or type it, describe the lesion (what was
understood is shown), Synthesize a preview, then Apply or Discard."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pastacore.errors import PastaError

from .session import WebSession, typed_state

if TYPE_CHECKING:
    from .edit import EditLogic
    from .load import LoadLogic
    from .segment import SegmentLogic


@dataclass
class SynthState:
    box: str = ""  # R1,A1,S1,R2,A2,S2 in mm, as typed or drawn
    placing: bool = False  # waiting for the box's corners to be clicked
    attributes: str = ""  # the lesion described in words
    parsed: str = ""  # what the description was understood as
    has_preview: bool = False


class SynthLogic:
    def __init__(self, session: WebSession, load: LoadLogic, segment: SegmentLogic, edit: EditLogic) -> None:
        self.session, self.load, self.segment, self.edit = session, load, segment, edit
        self.typed = typed_state(session.server, SynthState)
        self.data, self.name = self.typed.data, self.typed.name
        self._roi_tags: list = []
        self.typed.bind_changes({self.name.attributes: self.on_attributes})
        session.cleared.connect(self._forget)

    def _forget(self) -> None:
        self.data.box, self.data.has_preview = "", False

    # -- the box ---------------------------------------------------------------------------------
    def draw_box(self) -> None:
        """Place a box by two clicks in a slice view; its corners appear in the box field."""
        session = self.session
        if session.volume is None:
            session.say("error: load a CT first")
            return
        self._new_roi()
        session.app.markups_logic.place_node(session.roi)
        self.data.placing = True
        session.say("Click two opposite corners of the box in a slice view.")

    def _new_roi(self) -> Any:
        session = self.session
        if session.roi_alive():
            for tag in self._roi_tags:
                session.roi.RemoveObserver(tag)
            session.scene.RemoveNode(session.roi)
        roi = session.roi = session.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "PASTA box")
        roi.CreateDefaultDisplayNodes()
        self._roi_tags = [
            roi.AddObserver("ModifiedEvent", self._on_roi_changed),
            roi.AddObserver(roi.PointPositionDefinedEvent, self._on_roi_placed),
        ]
        return roi

    def _roi_bounds(self) -> list:
        bounds = [0.0] * 6
        self.session.roi.GetRASBounds(bounds)
        return [bounds[0], bounds[2], bounds[4], bounds[1], bounds[3], bounds[5]]

    def _on_roi_changed(self, caller=None, event=None) -> None:
        with self.session.state:
            self.data.box = ",".join(f"{v:.1f}" for v in self._roi_bounds())
            self.session.roi_changed.emit()

    def _on_roi_placed(self, caller=None, event=None) -> None:
        r1, a1, s1, r2, a2, s2 = self._roi_bounds()
        if min(r2 - r1, a2 - a1, s2 - s1) <= 0:
            return  # the first corner only
        self.session.app.markups_logic.disable_place_mode()
        with self.session.state:
            self.data.placing = False
            self.segment.use_box()
            self.session.say(f"Box drawn ({r2 - r1:.0f} x {a2 - a1:.0f} x {s2 - s1:.0f} mm).")

    def set_box(self, text: str | None = None) -> None:
        """The box from typed corners ``R1,A1,S1,R2,A2,S2`` (mm)."""
        session = self.session
        text = self.data.box if text is None else text
        try:
            values = [float(v) for v in str(text).replace(" ", "").split(",")]
            if len(values) != 6:
                raise ValueError
        except ValueError:
            session.say(f"error: a box is six comma-separated numbers R1,A1,S1,R2,A2,S2, got {text!r}")
            return
        low, high = [min(a, b) for a, b in zip(values[:3], values[3:])], [max(a, b) for a, b in zip(values[:3], values[3:])]
        if min(h - lo for lo, h in zip(low, high)) <= 0:
            session.say("error: the box must have a size in every direction")
            return
        roi = session.roi if session.roi_alive() else self._new_roi()
        centre = [(lo + h) / 2 for lo, h in zip(low, high)]
        roi.SetCenter(*centre)
        roi.SetSize(*[h - lo for lo, h in zip(low, high)])
        self.show_point(centre)
        self.segment.use_box()
        session.say("Box set.")

    def show_point(self, ras) -> None:
        """Move every slice view through the point ``ras`` (a typed box's centre), as Slicer's
        "jump slices" does."""
        scene = self.session.scene
        for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceNode")):
            scene.GetNthNodeByClass(index, "vtkMRMLSliceNode").JumpSliceByOffsetting(*ras)

    # -- the lesion ------------------------------------------------------------------------------
    def on_attributes(self, text: str | None = "") -> None:
        """Show what the description means (or why it is not understood)."""
        if not (text or "").strip():
            self.data.parsed = ""
            return
        try:
            parsed = self.session.synthesizer.parsed_attributes(text)
        except PastaError as exc:
            self.data.parsed = f"not understood: {exc}"
            return
        words = ", ".join(f"{k}: {'/'.join(map(str, v)) if isinstance(v, list) else v}" for k, v in parsed["attributes"].items())
        extra = f" (ignored: {', '.join(parsed['not_understood'])})" if parsed["not_understood"] else ""
        self.data.parsed = f"{parsed['lesion_type']}: {words}{extra}"

    def request(self) -> Any:
        from pastacore.actions.synth import SynthOptions
        from PastaSlicerLib.controllers import SynthRequest

        session = self.session
        options = SynthOptions(attributes=self.data.attributes or "", seed=int(time.time()) % 100000)
        works_on = session.segmentation is not None and session.segmentation.GetScene() is session.scene
        # the synthetic case keeps the segmentation the user works on (else the one last made on the CT)
        sources = (session.segmentation,) if works_on and self._made_on(session.segmentation, session.volume) else None
        return SynthRequest(session.volume, options, roi=session.roi, source_segmentations=sources)

    @staticmethod
    def _made_on(segmentation: Any, volume: Any) -> bool:
        return segmentation.GetNodeReference(segmentation.GetReferenceImageGeometryReferenceRole()) is volume

    def synthesize(self) -> None:
        session = self.session
        request = self.request()

        def finished(outcome):
            if outcome.ok:
                session.app.display_manager.show_volume_in_slice_background(outcome.value)
                self.edit.use(session.synthesizer.preview_segmentation, outcome.value)
                self.data.has_preview = True
            return outcome

        session.start("synthesize", "Synthesising", lambda p, f: session.synthesizer.preview(request, p, f), finished)

    def apply(self) -> None:
        session = self.session
        try:
            kept = session.synthesizer.apply()
        except PastaError as exc:
            session.say(f"error: {exc}")
            return
        session.volume = kept
        self.data.has_preview = False
        self.edit.list_segments()
        session.say(f"Kept as '{kept.GetName()}'.")

    def discard(self) -> None:
        session = self.session
        source = session.synthesizer.source_volume
        session.synthesizer.discard()
        self.data.has_preview = False
        if source is not None:
            self.load.show_volume(source)
        self.edit.forget()
        session.say("Preview discarded.")
