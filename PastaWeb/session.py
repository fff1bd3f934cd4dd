"""What the panels of the page share: the scene and its controllers, the current volume,
segmentation and box, the one job that may run at a time, and the status line.

Each panel (:mod:`.load`, :mod:`.segment`, :mod:`.synth`, :mod:`.edit`, :mod:`.export`,
:mod:`.pathology`) keeps its
own typed state (a dataclass behind trame's ``TypedState``); this session holds the state every
panel reads or shows (:class:`SessionState`) and tells the panels when the volume or the
segmentation changes (:class:`Signal`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trame_server.utils.typed_state import TypedState

from pastacore.errors import PastaError

POLL_SECONDS = 0.1
NAMESPACE = "pasta"
PANELS = [0, 1, 2, 3, 4, 5, 6]  # every panel of the drawer open at start


@dataclass
class SessionState:
    status: str = "Load a CT to start."  # the status line at the bottom of the page
    busy: bool = False  # a job runs (buttons that start one are disabled)
    running: str = ""  # which job: segment, synthesize, export
    progress: int = 0  # 0..100 of the running job
    volume_loaded: bool = False
    panels: list[int] = field(default_factory=lambda: list(PANELS))  # the drawer's open panels


def typed_state(server: Any, kind: type) -> TypedState:
    """A panel's typed state on ``server``'s trame state (ids ``pasta__<Dataclass>__<field>``)."""
    return TypedState(server.state, kind, namespace=NAMESPACE)


class Signal:
    """Callbacks called with the same arguments when something happens (a volume is shown...)."""

    def __init__(self) -> None:
        self._callbacks: list[Callable] = []

    def connect(self, callback: Callable) -> None:
        self._callbacks.append(callback)

    def emit(self, *args: Any) -> None:
        for callback in list(self._callbacks):
            callback(*args)


class WebSession:
    """One server's scene and what the panels share (one server holds one scene)."""

    def __init__(self, server: Any, slicer_app: Any, data_folder: Any, out_dir: str | Path, downloads: Any, runner: Any) -> None:
        from PastaSlicerLib.controllers import HubController, ReportController, SegmentController, SynthController

        self.server, self.state, self.app = server, server.state, slicer_app
        self.scene = slicer_app.scene
        self.folder, self.out_dir, self.downloads = data_folder, Path(out_dir), downloads
        self.hub = HubController()
        self.segmenter = SegmentController(self.scene, runner)
        self.synthesizer = SynthController(self.scene, runner)
        self.reports = ReportController(self.scene, runner)
        self.runner = runner
        self.volume = self.segmentation = self.roi = None  # the nodes the page works on
        self.typed = typed_state(server, SessionState)
        self.data, self.name = self.typed.data, self.typed.name  # typed values, and their state ids for the page
        self.cleared = Signal()  # (): another CT or scene is being loaded; panels forget the last one
        self.volume_shown = Signal()  # (volume node): a CT became the current volume
        self.segmentation_used = Signal()  # (segmentation node or None): the segmentation the editor edits now
        self.roi_changed = Signal()  # (): the box was drawn, moved or typed
        self._handle = None

    def say(self, text: str) -> None:
        self.data.status = text

    def roi_alive(self) -> bool:
        return self.roi is not None and self.roi.GetScene() is self.scene

    # -- the one job at a time -----------------------------------------------------------------
    def start(self, kind: str, verb: str, start: Callable, finished: Callable) -> None:
        """Start a controller action ``start(progress, done)``; ``finished(outcome)`` adjusts the
        outcome before the status line shows it. Refused while another job runs."""
        data = self.data
        if data.busy:
            self.say("error: wait for the running job to end (or cancel it)")
            return
        if self.volume is None:
            self.say("error: load a CT first")
            return

        def progress(fraction, message):
            data.progress = int(round(100 * fraction))
            self.say(f"{verb}: {message}")

        def done(outcome):
            outcome = finished(outcome)
            data.busy, data.running, data.progress = False, "", 0
            self.say(outcome.message if outcome.ok or outcome.cancelled else f"error: {outcome.error}")

        try:
            handle = start(progress, done)
        except PastaError as exc:
            self.say(f"error: {exc}")
            return
        running = handle.outcome is None
        data.busy, data.running, data.progress = running, kind if running else "", 0
        if running:
            self.say(f"{verb}...")
            self._handle = handle
            asyncio.get_event_loop().create_task(self._poll(handle))

    async def _poll(self, handle: Any) -> None:
        while True:
            with self.state:
                running = handle.poll()
            if not running:
                break
            await asyncio.sleep(POLL_SECONDS)

    def cancel(self) -> None:
        if self._handle is not None and self._handle.outcome is None:
            self._handle.cancel()
            self.say("Cancelling...")


def safe_name(name: str) -> str:
    """A file-name-safe form of a node name."""
    return re.sub(r"[^\w.-]+", "_", name or "case").strip("_") or "case"
