"""Synthesise: Preview a lesion (a new volume and its lesion segment), then Apply or Discard;
and batch datasets."""

from __future__ import annotations

from dataclasses import dataclass, field

from pastacore.actions.dataset import DatasetOptions
from pastacore.actions.synth import SynthOptions
from pastacore.errors import PastaError

from .jobs import alive, require_alive, start_action


@dataclass
class SynthRequest:
    volume: object  # vtkMRMLScalarVolumeNode receiving the lesion (never modified)
    options: SynthOptions = field(default_factory=SynthOptions)  # lesion type, description, seed, engine
    roi: object = None  # vtkMRMLMarkupsROINode: where the lesion goes
    organ_segmentation: object = None  # segments of the organs (the lesion type's organ is found by name)
    organ_segments: tuple = ()


@dataclass
class DatasetRequest:
    backgrounds: str  # folder of background CTs
    output: str  # dataset folder (resumable: finished cases are kept)
    options: DatasetOptions = field(default_factory=lambda: DatasetOptions(count=100))


class SynthController:
    """Holds the current preview (a volume node and its lesion segmentation node)."""

    def __init__(self, scene, runner):
        self.scene, self.runner = scene, runner
        self.preview_volume = None
        self.preview_lesion = None
        self.source_volume = None

    # -- choices ----------------------------------------------------------------------------
    @staticmethod
    def lesion_types() -> list:
        from pastacore.synthesis import lesion_types

        return list(lesion_types())

    @staticmethod
    def backends(**options) -> list:
        """[{name, description, available, reason}] of every synthesis engine (procedural first)."""
        from pastacore.synthesis.backends import backend_choices

        return backend_choices(**options)

    def problem(self, request: SynthRequest) -> str | None:
        if request.volume is None:
            return "Select a CT volume"
        options = request.options
        if not options.lesion_type and not str(options.attributes).strip():
            return "Choose a lesion type or describe the lesion"
        return None

    @staticmethod
    def parsed_attributes(text: str, lesion_type: str = "") -> dict:
        """What the text means (type, attributes, words not understood), shown before running."""
        from pastacore.synthesis.engine import read_attributes

        kind, merged, unknown = read_attributes(text or None, lesion_type or None)
        return {"lesion_type": kind.key, "attributes": {k: v for k, v in merged.items()}, "not_understood": unknown}

    # -- preview / apply / discard ----------------------------------------------------------
    @property
    def has_preview(self) -> bool:
        return alive(self.scene, self.preview_volume)

    def preview(self, request: SynthRequest, on_progress=None, on_finished=None):
        """Synthesise into a new preview volume (replacing an earlier preview)."""
        from pastacore.actions.synth import SynthInputs
        from pastacore.mrml.roi import box_from_roi
        from pastacore.mrml.segmentations import labels_from_segmentation
        from pastacore.mrml.volumes import volume_from_node

        problem = self.problem(request)
        if problem:
            raise PastaError(problem)
        inputs = SynthInputs(volume_from_node(request.volume))
        if request.organ_segmentation is not None:
            inputs.organ_mask, ids = labels_from_segmentation(
                self.scene, request.organ_segmentation, request.volume, list(request.organ_segments) or None
            )
            segmentation = request.organ_segmentation.GetSegmentation()
            inputs.organ_names = {str(n): segmentation.GetSegment(sid).GetName() for n, sid in enumerate(ids, start=1)}
        if request.roi is not None:
            inputs.roi_box = box_from_roi(request.roi, inputs.image.grid)
        return start_action(
            self.runner,
            "synth",
            request.options,
            inputs,
            lambda r, f: self._show(request, r, f),
            on_progress,
            on_finished,
            describe=lambda node: f"Preview ready ({self._summary()}): Apply keeps it, Discard removes it.",
        )

    def _show(self, request, result, folder):
        from pastacore.mrml import volumes
        from pastacore.mrml.segmentations import add_labels_to_segmentation
        from pastacore.tasks.exchange import load_volume
        from pastacore.terminology import segments_from_dict

        require_alive(self.scene, request.volume, "input volume")
        self.discard()
        source = request.volume
        preview = volumes.node_from_volume(
            self.scene, load_volume(folder, result["volumes"]["image"]), f"{source.GetName()} PASTA preview"
        )
        if source.GetDisplayNode() is not None and preview.GetDisplayNode() is not None:
            preview.GetDisplayNode().CopyContent(source.GetDisplayNode())
        lesion, _added = add_labels_to_segmentation(
            self.scene,
            load_volume(folder, result["volumes"]["labels"]),
            segments_from_dict(result["segments"]),
            preview,
            name=f"{source.GetName()} PASTA preview lesion",
        )
        self.preview_volume, self.preview_lesion, self.source_volume = preview, lesion, source
        self.last_plan, self.last_result = result.get("plan", ""), result
        return preview

    def _summary(self) -> str:
        report = (self.last_result or {}).get("report", {})
        measured = report.get("measured", {})
        size = " x ".join(f"{v:.0f}" for v in measured.get("size_mm", [])) or "?"
        mean = measured.get("mean_hu")
        return f"{report.get('lesion_name', 'lesion')}, {size} mm" + (f", mean {mean:.0f} HU" if mean is not None else "")

    def apply(self):
        """Keep the preview as an ordinary volume and segmentation; returns the volume node."""
        if not self.has_preview:
            raise PastaError("there is no preview to keep; press Preview first")
        volume, lesion = self.preview_volume, self.preview_lesion
        kind = (self.last_result or {}).get("report", {}).get("lesion_type") or "lesion"
        base = self.source_volume.GetName() if alive(self.scene, self.source_volume) else "PASTA"
        volume.SetName(self.scene.GenerateUniqueName(f"{base} synthetic {kind}"))
        if alive(self.scene, lesion):
            lesion.SetName(self.scene.GenerateUniqueName(f"{volume.GetName()} lesion"))
        self.preview_volume = self.preview_lesion = None
        return volume

    def discard(self) -> None:
        """Remove the preview nodes (and what Slicer made for them)."""
        for node in (self.preview_lesion, self.preview_volume):
            if alive(self.scene, node):
                for i in reversed(range(node.GetNumberOfDisplayNodes())):
                    display = node.GetNthDisplayNode(i)
                    if display is not None:
                        self.scene.RemoveNode(display)
                if node.GetStorageNode() is not None:
                    self.scene.RemoveNode(node.GetStorageNode())
                self.scene.RemoveNode(node)
        self.preview_volume = self.preview_lesion = None

    # -- batch ------------------------------------------------------------------------------
    def start_dataset(self, request: DatasetRequest, on_progress=None, on_finished=None):
        from pastacore.actions.dataset import DatasetInputs

        if not str(request.backgrounds or "").strip():
            raise PastaError("choose the folder of background CTs")
        if not str(request.output or "").strip():
            raise PastaError("choose the output folder")
        request.options.check()
        return start_action(
            self.runner,
            "dataset",
            request.options,
            DatasetInputs(str(request.backgrounds), str(request.output)),
            lambda result, folder: result,
            on_progress,
            on_finished,
            describe=lambda summary: (
                f"{summary['written']} case(s) written to {summary['output']}, "
                f"{summary['skipped']} already there, {len(summary['failed'])} failed"
            ),
        )
