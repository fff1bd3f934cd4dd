"""What each control of the page does: trame state in, controller calls, state out.

Every action goes through ``PastaSlicerLib.controllers`` (as the Slicer modules do); a long one
runs in the task process and is polled from the server's event loop, so slice views keep
answering while it runs. One action runs at a time.
"""

from __future__ import annotations

import asyncio
import time
import zipfile
from pathlib import Path

from pastacore.errors import PastaError
from pastaweb.files import PATHOLOGY_SUFFIXES

POLL_SECONDS = 0.1
HEAT_OPACITY = 0.5  # the heat map over the pathology image
MEASURE_DELAY_SECONDS = 0.5  # measure again this long after the last edit
WINDOWS = {"Auto": None, "Lung": (1500.0, -600.0), "Soft tissue": (400.0, 40.0), "Bone": (1800.0, 400.0)}
REGIONS = {
    "model": "Model default (its own organ)",
    "organ": "Organ: the current segmentation",
    "box": "The drawn box",
    "body": "Whole body",
}


class PastaWebLogic:
    def __init__(self, server, slicer_app, data_folder, out_dir, downloads, runner, max_upload_mb: float):
        from PastaSlicerLib.controllers import (
            HubController,
            PatchController,
            ReportController,
            SegmentController,
            SynthController,
        )

        self.server, self.state, self.app = server, server.state, slicer_app
        self.scene = slicer_app.scene
        self.data, self.out_dir, self.downloads = data_folder, Path(out_dir), downloads
        self.max_upload_bytes = int(max_upload_mb * 1e6)
        self.hub = HubController()
        self.segmenter = SegmentController(self.scene, runner)
        self.synth = SynthController(self.scene, runner)
        self.reports = ReportController(self.scene, runner)
        self.patches = PatchController(self.scene, runner)
        self.heatmap = None
        self.volume = self.segmentation = self.roi = None
        self._handle = None
        self._watch = None
        self._measure_timer = None
        self._roi_tags = []
        self._uploaded = []
        self._defaults()

    # -- state ------------------------------------------------------------------------------
    def _defaults(self):
        models = self.hub.models(task="segmentation")
        formats = self.reports.format_choices()  # every registered report format, all chosen
        self.state.update(
            {
                "pasta_status": "Load a CT to start.",
                "pasta_busy": False,
                "pasta_progress": 0,
                "pasta_running": "",
                "pasta_files": self.data.entries() if self.data else [],
                "pasta_file": None,
                "pasta_models": [{"title": f"{m.name} ({m.version})", "value": m.name} for m in models],
                "pasta_model": models[0].name if models else None,
                "pasta_regions": [{"title": t, "value": v} for v, t in REGIONS.items()],
                "pasta_region": "model",
                "pasta_region_text": "",
                "pasta_prompt": "",
                "pasta_prompts": [],
                "pasta_takes_prompt": False,
                "pasta_box": "",
                "pasta_placing": False,
                "pasta_attributes": "",
                "pasta_parsed": "",
                "pasta_has_preview": False,
                "pasta_segments": [],
                "pasta_measurements": [],
                "pasta_downloads": [],
                "pasta_download": None,
                "pasta_windows": list(WINDOWS),
                "pasta_window": "Auto",
                "pasta_volume_loaded": False,
                "pasta_max_upload_mb": self.max_upload_bytes / 1e6,
                "pasta_report_formats": [{"title": f"{c['label']}: {c['description']}", "value": c["name"]} for c in formats],
                "pasta_report_chosen": [c["name"] for c in formats],
                "pasta_patch_encoders": [],
                "pasta_patch_encoder": None,
                "pasta_patch_heads": [],
                "pasta_patch_head": None,
                "pasta_patch_classes": [],
                "pasta_patch_class": None,
                "pasta_patch_tile": 224,
                "pasta_patch_result": "",
            }
        )
        self.refresh_patch_choices()
        self.state.change("pasta_attributes")(self._on_attributes)
        self.state.change("pasta_window")(self._on_window)
        self.state.change("pasta_region", "pasta_model")(lambda **_: self._show_region())
        self.state.change("pasta_patch_head")(self._on_patch_head)
        self.state.change("pasta_model")(lambda **_: self._offer_prompts())
        self._offer_prompts()

    def _say(self, text: str):
        self.state.pasta_status = text

    def _flush(self):
        self.state.flush()

    # -- load -------------------------------------------------------------------------------
    def load_file(self, relative: str | None = None):
        """Load a CT (file or DICOM folder) or a scene from the data folder."""
        relative = relative or self.state.pasta_file
        try:
            path = self.data.resolve(relative) if self.data else None
            if path is None:
                raise PastaError("no data folder was given to the server")
            self.load_path(path)
        except PastaError as exc:
            self._say(f"error: {exc}")

    def load_path(self, path: Path):
        from pastacore.fileio import read_volume
        from pastacore.mrml import volumes

        self._forget_scene_nodes()
        if str(path).lower().endswith(".mrb"):
            if not self.app.io_manager.load_scene(str(path)):
                raise PastaError(f"cannot open {path.name}: not a valid Slicer scene bundle")
            nodes = [n for n in self.scene.GetNodesByClass("vtkMRMLScalarVolumeNode") if not n.IsA("vtkMRMLLabelMapVolumeNode")]
            if not nodes:
                raise PastaError(f"{path.name} holds no CT volume")
            segmentations = list(self.scene.GetNodesByClass("vtkMRMLSegmentationNode"))
            self._show_volume(nodes[0])
            if segmentations:
                self._use_segmentation(segmentations[-1])
        elif path.name.lower().endswith(PATHOLOGY_SUFFIXES):
            self._show_volume(self.patches.load_image(path))
        else:
            volume = read_volume(path)
            self._show_volume(volumes.node_from_volume(self.scene, volume, path.name.split(".")[0]))
        self._say(f"Loaded {path.name}.")

    def _forget_scene_nodes(self):
        self.synth.discard()
        self.heatmap = None
        self.state.pasta_patch_result = ""
        self._stop_watch()
        self.volume = self.segmentation = self.roi = None
        self.state.update({"pasta_segments": [], "pasta_measurements": [], "pasta_box": "", "pasta_has_preview": False})

    def _show_volume(self, node):
        self.volume = node
        display = self.app.display_manager
        display.show_volume_in_slice_background(node)
        display.show_volume_in_slice_foreground(None)
        self.refresh_patch_choices()
        display.reset_views()
        self.state.pasta_volume_loaded = True
        self._on_window(self.state.pasta_window)
        self._show_region()
        self._list_segments()

    def _on_window(self, pasta_window=None, **_):
        if self.volume is None or self.volume.GetDisplayNode() is None:
            return
        display = self.volume.GetDisplayNode()
        window = WINDOWS.get(pasta_window or "Auto")
        display.SetAutoWindowLevel(window is None)
        if window:
            display.SetWindowLevel(*window)

    async def upload_chunk(self, files: list):
        """Files from the browser, in chunks; an empty chunk ends the upload. Over the size limit
        nothing is kept."""
        if files:
            self._uploaded.extend(files)
            size = sum(len(f.get("content") or b"") for f in self._uploaded)
            if size > self.max_upload_bytes:
                self._uploaded = []
                self._say(
                    f"error: the upload is larger than {self.max_upload_bytes / 1e6:g} MB; "
                    "put the file in the server's data folder instead"
                )
            return
        uploaded, self._uploaded = self._uploaded, []
        if not uploaded:
            return
        folder = self.out_dir / "uploads" / time.strftime("%Y%m%d-%H%M%S")
        folder.mkdir(parents=True, exist_ok=True)
        for item in uploaded:
            (folder / Path(str(item["name"])).name).write_bytes(item["content"])
        files = sorted(folder.iterdir())
        try:
            self.load_path(files[0] if len(files) == 1 else folder)
        except PastaError as exc:
            self._say(f"error: {exc}")

    # -- segment ----------------------------------------------------------------------------
    def _segment_request(self):
        from pastacore.actions.segment import SegmentOptions
        from PastaSlicerLib.controllers import SegmentRequest

        region = self.state.pasta_region
        prompt = (self.state.pasta_prompt or "").strip() if self.state.pasta_takes_prompt else ""
        return SegmentRequest(
            self.volume,
            SegmentOptions(model=self.state.pasta_model or "", prompt=prompt, organ="body" if region == "body" else ""),
            organ_segmentation=self.segmentation if region == "organ" else None,
            roi=self.roi if region == "box" else None,
        )

    def _offer_prompts(self):
        """The prompt field: shown for models that take a text prompt, offering their known prompts."""
        known = self.segmenter.prompts(self.state.pasta_model or "")
        self.state.pasta_takes_prompt = known is not None
        self.state.pasta_prompts = list(known or [])
        if known is None:
            self.state.pasta_prompt = ""

    def _show_region(self):
        if self.volume is None:
            return
        region = self.state.pasta_region
        if region == "box" and self.roi is None:
            self.state.pasta_region_text = "draw a box first"
        elif region == "organ" and self.segmentation is None:
            self.state.pasta_region_text = "segment or load an organ segmentation first"
        else:
            self.state.pasta_region_text = self.segmenter.region_text(self._segment_request())

    def segment(self):
        def finished(outcome):
            if outcome.ok:
                self._use_segmentation(outcome.value)
            return outcome

        self._start("segment", "Segmenting", lambda p, f: self.segmenter.start(self._segment_request(), p, f), finished)

    # -- box and synthesis ------------------------------------------------------------------
    def draw_box(self):
        """Place a box by two clicks in a slice view; its corners appear in the box field."""
        if self.volume is None:
            self._say("error: load a CT first")
            return
        self._new_roi()
        self.app.markups_logic.place_node(self.roi)
        self.state.pasta_placing = True
        self._say("Click two opposite corners of the box in a slice view.")

    def _new_roi(self):
        if self.roi is not None and self.roi.GetScene() is self.scene:
            for tag in self._roi_tags:
                self.roi.RemoveObserver(tag)
            self.scene.RemoveNode(self.roi)
        self.roi = self.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "PASTA box")
        self.roi.CreateDefaultDisplayNodes()
        self._roi_tags = [
            self.roi.AddObserver("ModifiedEvent", self._on_roi_changed),
            self.roi.AddObserver(self.roi.PointPositionDefinedEvent, self._on_roi_placed),
        ]
        return self.roi

    def _roi_bounds(self):
        bounds = [0.0] * 6
        self.roi.GetRASBounds(bounds)
        return [bounds[0], bounds[2], bounds[4], bounds[1], bounds[3], bounds[5]]

    def _on_roi_changed(self, caller=None, event=None):
        with self.state:
            self.state.pasta_box = ",".join(f"{v:.1f}" for v in self._roi_bounds())
            self._show_region()

    def _on_roi_placed(self, caller=None, event=None):
        r1, a1, s1, r2, a2, s2 = self._roi_bounds()
        if min(r2 - r1, a2 - a1, s2 - s1) <= 0:
            return  # the first corner only
        self.app.markups_logic.disable_place_mode()
        with self.state:
            self.state.pasta_placing = False
            self.state.pasta_region = "box"
            self._say(f"Box drawn ({r2 - r1:.0f} x {a2 - a1:.0f} x {s2 - s1:.0f} mm).")

    def set_box(self, text: str | None = None):
        """The box from typed corners ``R1,A1,S1,R2,A2,S2`` (mm)."""
        text = self.state.pasta_box if text is None else text
        try:
            values = [float(v) for v in str(text).replace(" ", "").split(",")]
            if len(values) != 6:
                raise ValueError
        except ValueError:
            self._say(f"error: a box is six comma-separated numbers R1,A1,S1,R2,A2,S2, got {text!r}")
            return
        low, high = [min(a, b) for a, b in zip(values[:3], values[3:])], [max(a, b) for a, b in zip(values[:3], values[3:])]
        if min(h - lo for lo, h in zip(low, high)) <= 0:
            self._say("error: the box must have a size in every direction")
            return
        roi = self.roi if self.roi is not None and self.roi.GetScene() is self.scene else self._new_roi()
        centre = [(lo + h) / 2 for lo, h in zip(low, high)]
        roi.SetCenter(*centre)
        roi.SetSize(*[h - lo for lo, h in zip(low, high)])
        self.show_point(centre)
        self.state.pasta_region = "box"
        self._say("Box set.")

    def show_point(self, ras) -> None:
        """Move every slice view through the point ``ras`` (a typed box's centre), as Slicer's
        "jump slices" does."""
        for index in range(self.scene.GetNumberOfNodesByClass("vtkMRMLSliceNode")):
            self.scene.GetNthNodeByClass(index, "vtkMRMLSliceNode").JumpSliceByOffsetting(*ras)

    def _on_attributes(self, pasta_attributes="", **_):
        if not pasta_attributes.strip():
            self.state.pasta_parsed = ""
            return
        try:
            parsed = self.synth.parsed_attributes(pasta_attributes)
        except PastaError as exc:
            self.state.pasta_parsed = f"not understood: {exc}"
            return
        words = ", ".join(f"{k}: {'/'.join(map(str, v)) if isinstance(v, list) else v}" for k, v in parsed["attributes"].items())
        extra = f" (ignored: {', '.join(parsed['not_understood'])})" if parsed["not_understood"] else ""
        self.state.pasta_parsed = f"{parsed['lesion_type']}: {words}{extra}"

    def synthesize(self):
        from pastacore.actions.synth import SynthOptions
        from PastaSlicerLib.controllers import SynthRequest

        options = SynthOptions(attributes=self.state.pasta_attributes or "", seed=int(time.time()) % 100000)
        request = SynthRequest(self.volume, options, roi=self.roi)

        def finished(outcome):
            if outcome.ok:
                self.app.display_manager.show_volume_in_slice_background(outcome.value)
                self._use_segmentation(self.synth.preview_lesion, outcome.value)
                self.state.pasta_has_preview = True
            return outcome

        self._start("synthesize", "Synthesising", lambda p, f: self.synth.preview(request, p, f), finished)

    def apply(self):
        try:
            kept = self.synth.apply()
        except PastaError as exc:
            self._say(f"error: {exc}")
            return
        self.volume = kept
        self.state.pasta_has_preview = False
        self._list_segments()
        self._say(f"Kept as '{kept.GetName()}'.")

    def discard(self):
        source = self.synth.source_volume
        self.synth.discard()
        self.state.pasta_has_preview = False
        if source is not None:
            self._show_volume(source)
        self.segmentation = None
        self._stop_watch()
        self._list_segments()
        self.state.pasta_measurements = []
        self._say("Preview discarded.")

    # -- segments, measurements -------------------------------------------------------------
    def _use_segmentation(self, node, volume=None):
        """Make ``node`` the segmentation the editor edits, measure it and follow its edits."""
        self.segmentation = node
        self.volume = volume or self.volume
        editor = self.app.segmentation_editor
        editor.set_active_segmentation(node, self.volume)
        lesions = self.reports.lesion_segments(node)
        if lesions:
            editor.set_active_segment_id(lesions[0])  # edits usually go to a lesion, not the organ
        self._list_segments()
        self._measure()
        self._stop_watch()
        self._watch = self.reports.follow_edits(self.volume, node, on_measured=self._measured, defer=self._measure_later)
        self._show_region()

    def _stop_watch(self):
        if self._watch is not None:
            self._watch.stop()
            self._watch = None

    def _measure_later(self, measure):
        if self._measure_timer is not None:
            self._measure_timer.cancel()
        self._measure_timer = asyncio.get_event_loop().call_later(MEASURE_DELAY_SECONDS, self._measure_now, measure)

    def _measure_now(self, measure):
        with self.state:
            measure()
            self._list_segments()

    def _measure(self):
        try:
            table, measurements = self.reports.measure(self.volume, self.segmentation)
        except PastaError as exc:
            self._measured(None, [], str(exc))
            return
        self._measured(table, measurements, None)

    def _measured(self, table, measurements, error):
        if error:
            self.state.pasta_measurements = []
            self._say(f"Measurement not updated: {error}")
            return
        self.state.pasta_measurements = [
            {
                "lesion": m.index,
                "name": m.name,
                "volume_ml": round(m.volume_ml, 2),
                "long_mm": round(m.long_axis_mm, 1),
                "short_mm": round(m.short_axis_mm, 1),
                "mean_hu": round(m.mean_hu),
            }
            for m in measurements
        ]

    def _list_segments(self):
        names = []
        for node in self.scene.GetNodesByClass("vtkMRMLSegmentationNode"):
            content = node.GetSegmentation()
            names += [f"{node.GetName()}: {content.GetNthSegment(i).GetName()}" for i in range(content.GetNumberOfSegments())]
        self.state.pasta_segments = names

    # -- export -----------------------------------------------------------------------------
    def export(self):
        """The report of the current segmentation in the chosen formats, written on the server and
        offered as a zip download."""
        if self.segmentation is None:
            self._say("error: segment first (or load a scene with a segmentation)")
            return
        formats = list(self.state.pasta_report_chosen or ())
        if not formats:
            self._say("error: choose at least one report format")
            return
        stamp = time.strftime("%Y%m%d-%H%M%S")
        folder = self.out_dir / f"{_safe(self.volume.GetName())}-report-{stamp}"

        def finished(outcome):
            if outcome.ok:
                archive = _zip(folder, folder.with_suffix(".zip"))
                self._offer(archive)
                outcome.message = f"Report written to {folder} ({len(outcome.value)} files); downloading {archive.name}."
            return outcome

        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._start(
            "export",
            "Exporting the report",
            lambda p, f: self.reports.export(self.volume, self.segmentation, folder, formats, on_progress=p, on_finished=f),
            finished,
        )

    def save_scene(self):
        from pastacore.mrml.scene_io import save_mrb

        if self.volume is None:
            self._say("error: load a CT first")
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        try:
            path = save_mrb(self.scene, self.out_dir / f"{_safe(self.volume.GetName())}-{time.strftime('%Y%m%d-%H%M%S')}.mrb")
        except PastaError as exc:
            self._say(f"error: {exc}")
            return
        self._offer(path)
        self._say(f"Scene saved to {path}; downloading {path.name}.")

    def _offer(self, path):
        key, url = self.downloads.offer(path)
        link = {"name": Path(path).name, "url": url, "key": key}
        self.state.pasta_downloads = self.state.pasta_downloads + [link]
        self.state.pasta_download = link

    def fetch_download(self, key: str):
        """The bytes of an offered file, for the browser's download (``utils.download``)."""
        content = self.downloads.read(key)
        return self.server.protocol.addAttachment(content) if content is not None else None

    # -- pathology: classify a 2-D image, overlay the heat map -------------------------------
    def refresh_patch_choices(self):
        """The installed PatchTCGA encoders and the heads in the data folder."""
        from pastaweb.files import heads

        encoders = self.patches.encoders()
        self.state.pasta_patch_encoders = encoders
        if self.state.pasta_patch_encoder not in encoders:
            self.state.pasta_patch_encoder = encoders[0] if encoders else None
        self.state.pasta_patch_heads = heads(self.data) if self.data else []

    def _on_patch_head(self, pasta_patch_head=None, **_):
        classes = []
        if pasta_patch_head and self.data:
            try:
                classes = self.patches.head_classes(self.data.resolve(pasta_patch_head))
            except PastaError:
                classes = []
        self.state.pasta_patch_classes = classes
        self.state.pasta_patch_class = classes[1] if len(classes) == 2 else None

    def classify_patches(self):
        """Classify the loaded 2-D image tile by tile; overlay the heat map in the slice views."""

        def start(progress, done):
            if not self.state.pasta_patch_head or not self.data:
                raise PastaError("choose a head (a .pt file of the data folder)")
            head = self.data.resolve(self.state.pasta_patch_head)
            tile = int(self.state.pasta_patch_tile or 224)
            return self.patches.classify(
                self.volume, self.state.pasta_patch_encoder, head, tile, self.state.pasta_patch_class or None,
                on_progress=progress, on_finished=done,
            )  # fmt: skip

        def finished(outcome):
            if outcome.ok:
                self.heatmap = outcome.value.heatmap
                self.app.display_manager.show_volume_in_slice_foreground(self.heatmap)
                for view in self.app.view_manager.get_slice_views():
                    view.set_foreground_opacity(HEAT_OPACITY)
                self.state.pasta_patch_result = outcome.value.describe()
            return outcome

        self._start("classify", "Classifying", start, finished)

    # -- running jobs -----------------------------------------------------------------------
    def _start(self, kind, verb, start, finished):
        if self.state.pasta_busy:
            self._say("error: wait for the running job to end (or cancel it)")
            return
        if self.volume is None:
            self._say("error: load a CT first")
            return

        def progress(fraction, message):
            self.state.pasta_progress = int(round(100 * fraction))
            self._say(f"{verb}: {message}")

        def done(outcome):
            outcome = finished(outcome)
            self.state.update({"pasta_busy": False, "pasta_running": "", "pasta_progress": 0})
            self._say(outcome.message if outcome.ok or outcome.cancelled else f"error: {outcome.error}")

        try:
            handle = start(progress, done)
        except PastaError as exc:
            self._say(f"error: {exc}")
            return
        self.state.update(
            {"pasta_busy": handle.outcome is None, "pasta_running": kind if handle.outcome is None else "", "pasta_progress": 0}
        )
        if handle.outcome is None:
            self._say(f"{verb}...")
            self._handle = handle
            asyncio.get_event_loop().create_task(self._poll(handle))

    async def _poll(self, handle):
        while True:
            with self.state:
                running = handle.poll()
            if not running:
                break
            await asyncio.sleep(POLL_SECONDS)

    def cancel(self):
        if self._handle is not None and self._handle.outcome is None:
            self._handle.cancel()
            self._say("Cancelling...")


def _safe(name: str) -> str:
    import re

    return re.sub(r"[^\w.-]+", "_", name or "case").strip("_") or "case"


def _zip(folder: Path, archive: Path) -> Path:
    temp = archive.with_name(archive.name + ".part")
    with zipfile.ZipFile(temp, "w", zipfile.ZIP_DEFLATED) as handle:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                handle.write(path, path.relative_to(folder))
    temp.replace(archive)
    return archive
