"""The Segment panel: a model, where it searches (its own organ, the current segmentation, the
drawn box or the whole body, explained in words), Segment and Cancel."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .session import WebSession, typed_state

if TYPE_CHECKING:
    from .edit import EditLogic

REGIONS = {
    "model": "Model default (its own organ)",
    "organ": "Organ: the current segmentation",
    "box": "The drawn box",
    "body": "Whole body",
}


@dataclass
class SegmentState:
    models: list[dict] = field(default_factory=list)  # [{title, value}] of the installed segmentation models
    model: str | None = None
    regions: list[dict] = field(default_factory=lambda: [{"title": t, "value": v} for v, t in REGIONS.items()])
    region: str = "model"  # a key of REGIONS
    region_text: str = ""  # where the search goes, in words
    prompt: str = ""  # what to segment, for models that take a text prompt (gCIS)
    prompts: list[str] = field(default_factory=list)  # the chosen model's known prompts
    takes_prompt: bool = False  # the chosen model takes a prompt


class SegmentLogic:
    def __init__(self, session: WebSession, edit: EditLogic) -> None:
        self.session, self.edit = session, edit
        self.typed = typed_state(session.server, SegmentState)
        self.data, self.name = self.typed.data, self.typed.name
        models = session.hub.models(task="segmentation")
        self.data.models = [{"title": f"{m.name} ({m.version})", "value": m.name} for m in models]
        self.data.model = models[0].name if models else None
        self.typed.bind_changes(
            {(self.name.region, self.name.model): lambda *_: self.show_region(), self.name.model: lambda *_: self.offer_prompts()}
        )
        self.offer_prompts()
        for signal in (session.volume_shown, session.segmentation_used, session.roi_changed):
            signal.connect(lambda *_: self.show_region())

    def request(self) -> Any:
        from pastacore.actions.segment import SegmentOptions
        from PastaSlicerLib.controllers import SegmentRequest

        session, region = self.session, self.data.region
        prompt = (self.data.prompt or "").strip() if self.data.takes_prompt else ""
        return SegmentRequest(
            session.volume,
            SegmentOptions(model=self.data.model or "", prompt=prompt, organ="body" if region == "body" else ""),
            organ_segmentation=session.segmentation if region == "organ" else None,
            roi=session.roi if region == "box" else None,
        )

    def offer_prompts(self) -> None:
        """The prompt field: shown for models that take a text prompt, offering their known prompts."""
        known = self.session.segmenter.prompts(self.data.model or "")
        self.data.takes_prompt = known is not None
        self.data.prompts = list(known or [])
        if known is None:
            self.data.prompt = ""

    def show_region(self) -> None:
        """Say where Segment will search."""
        session = self.session
        if session.volume is None:
            return
        region = self.data.region
        if region == "box" and session.roi is None:
            self.data.region_text = "draw a box first"
        elif region == "organ" and session.segmentation is None:
            self.data.region_text = "segment or load an organ segmentation first"
        else:
            self.data.region_text = session.segmenter.region_text(self.request())

    def use_box(self) -> None:
        """Search the drawn box from now on."""
        self.data.region = "box"

    def segment(self) -> None:
        def finished(outcome):
            if outcome.ok:
                self.edit.use(outcome.value)
            return outcome

        self.session.start("segment", "Segmenting", lambda p, f: self.session.segmenter.start(self.request(), p, f), finished)
