"""Synthesise: Preview a synthetic case (a new volume with the lesion, and its segmentation: a copy
of the source's segments plus the lesion), then Apply (keep it) or Discard (remove all of it);
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
    # the source's segmentations copied into the synthetic case: None = the one last segmented or
    # edited on the source volume (if any), () = none
    source_segmentations: tuple | None = None


@dataclass
class DatasetRequest:
    backgrounds: str  # folder of background CTs
    output: str  # dataset folder (resumable: finished cases are kept)
    options: DatasetOptions = field(default_factory=lambda: DatasetOptions(count=100))


class SynthController:
    """Holds the current preview: the synthetic case's volume node and segmentation node."""

    def __init__(self, scene, runner):
        self.scene, self.runner = scene, runner
        self.preview_volume = None
        self.preview_segmentation = None  # the source's segments + the synthetic lesion (tag PASTA.Synthetic)
        self.source_volume = None
        self.last_result = None

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
        sources = self.sources(request)
        return start_action(
            self.runner,
            "synth",
            request.options,
            inputs,
            lambda r, f: self._show(request, sources, r, f),
            on_progress,
            on_finished,
            describe=lambda node: f"Preview ready ({self._summary()}): Apply keeps it, Discard removes it.",
        )

    def sources(self, request: SynthRequest) -> list:
        """The source's segmentations to copy into the synthetic case (see ``SynthRequest``)."""
        from pastacore.mrml.segmentations import source_segmentations

        if request.source_segmentations is not None:
            return [node for node in request.source_segmentations if node is not None]
        found = source_segmentations(self.scene, request.volume) if request.volume is not None else []
        return found[:1]

    def _show(self, request, sources, result, folder):
        from pastacore.mrml import volumes
        from pastacore.tasks.exchange import load_volume

        require_alive(self.scene, request.volume, "input volume")
        for node in sources:
            require_alive(self.scene, node, "source segmentation")
        self.discard()
        source = request.volume
        preview = volumes.node_from_volume(
            self.scene, load_volume(folder, result["volumes"]["image"]), f"{source.GetName()} PASTA preview"
        )
        if source.GetDisplayNode() is not None and preview.GetDisplayNode() is not None:
            preview.GetDisplayNode().CopyContent(source.GetDisplayNode())
        self.preview_volume, self.source_volume, self.last_result = preview, source, result
        self.last_plan = result.get("plan", "")
        self.preview_segmentation = self._case_segmentation(sources, load_volume(folder, result["volumes"]["labels"]), result)
        return preview

    def _case_segmentation(self, sources, labels, result):
        """A new segmentation of the preview volume: the sources' segments (the lesion's voxels taken
        out of them), then the lesion, named and tagged as synthetic; the synthesis's organ only
        when no source segmentation is copied."""
        import json
        from dataclasses import replace

        from pastacore.mrml.segmentations import MODEL_ATTRIBUTE, add_labels_to_segmentation, carve, copy_segments
        from pastacore.synthetic import SYNTHETIC_TAG, record_from_report, synthetic_name, tag_value
        from pastacore.terminology import segments_from_dict

        preview, name = self.preview_volume, f"{self.source_volume.GetName()} PASTA preview segmentation"
        segments = segments_from_dict(result["segments"])
        lesion = labels.with_array((labels.array == 2).astype(labels.array.dtype) * 2, is_label=True)
        node, _ = add_labels_to_segmentation(self.scene, lesion, {}, preview, name=name)  # empty, placed in the study
        copied = copy_segments(self.scene, sources, node)
        carve(self.scene, node, copied, lesion, preview)
        model = next((n.GetAttribute(MODEL_ATTRIBUTE) for n in sources if n.GetAttribute(MODEL_ATTRIBUTE)), None)
        if model:
            node.SetAttribute(MODEL_ATTRIBUTE, model)  # the copied segments keep their provenance
        wanted = {**segments, 2: replace(segments[2], name=synthetic_name(segments[2].name))}
        if sources:
            wanted.pop(1, None)
        _node, added = add_labels_to_segmentation(self.scene, labels, wanted, preview, segmentation_node=node)
        segment = node.GetSegmentation().GetSegment(added[2])
        record = record_from_report(result.get("report") or {})
        segment.SetTag(SYNTHETIC_TAG, tag_value(record))
        node.SetAttribute("PASTA.SyntheticCase", json.dumps({"source": self.source_volume.GetName(), **record}))
        return node

    def _summary(self) -> str:
        report = (self.last_result or {}).get("report", {})
        measured = report.get("measured", {})
        size = " x ".join(f"{v:.0f}" for v in measured.get("size_mm", [])) or "?"
        mean = measured.get("mean_hu")
        return f"{report.get('lesion_name', 'lesion')}, {size} mm" + (f", mean {mean:.0f} HU" if mean is not None else "")

    def apply(self):
        """Keep the synthetic case: the preview volume and its segmentation become ordinary nodes;
        returns the volume node."""
        if not self.has_preview:
            raise PastaError("there is no preview to keep; press Preview first")
        volume, segmentation = self.preview_volume, self.preview_segmentation
        kind = (self.last_result or {}).get("report", {}).get("lesion_type") or "lesion"
        base = self.source_volume.GetName() if alive(self.scene, self.source_volume) else "PASTA"
        volume.SetName(self.scene.GenerateUniqueName(f"{base} synthetic {kind}"))
        if alive(self.scene, segmentation):
            segmentation.SetName(self.scene.GenerateUniqueName(f"{volume.GetName()} segmentation"))
        self.preview_volume = self.preview_segmentation = None
        return volume

    def discard(self) -> None:
        """Remove the synthetic case: the preview volume, its segmentation, the measurement table
        made for it, and what Slicer made for them; the scene is as it was before Preview."""
        from .report import TABLE_ROLE

        nodes = [self.preview_segmentation, self.preview_volume]
        if alive(self.scene, self.preview_segmentation):
            nodes.insert(0, self.preview_segmentation.GetNodeReference(TABLE_ROLE))
        for node in nodes:
            if alive(self.scene, node):
                for i in reversed(range(node.GetNumberOfDisplayNodes() if node.IsA("vtkMRMLDisplayableNode") else 0)):
                    display = node.GetNthDisplayNode(i)
                    if display is not None:
                        self.scene.RemoveNode(display)
                if node.GetStorageNode() is not None:
                    self.scene.RemoveNode(node.GetStorageNode())
                self.scene.RemoveNode(node)
        self.preview_volume = self.preview_segmentation = None

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
