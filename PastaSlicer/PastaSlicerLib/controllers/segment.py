"""Segment: a CT volume node (+ optional organ segments or ROI) -> a new segmentation node."""

from __future__ import annotations

from dataclasses import dataclass, field

from pastacore.actions.segment import SegmentOptions
from pastacore.errors import PastaError
from pastacore.mrml.segmentations import MODEL_ATTRIBUTE  # noqa: F401  (the node attribute naming the model)

from .jobs import require_alive, start_action


@dataclass
class SegmentRequest:
    volume: object  # vtkMRMLScalarVolumeNode
    options: SegmentOptions = field(default_factory=SegmentOptions)  # model, organ ("body": the whole body), device...
    organ_segmentation: object = None  # vtkMRMLSegmentationNode restricting the search
    organ_segments: tuple = ()  # its segment ids (empty: every segment)
    roi: object = None  # vtkMRMLMarkupsROINode restricting the search
    output: object = None  # add the segments to this segmentation instead of a new one


class SegmentController:
    def __init__(self, scene, runner, store=None):
        self.scene, self.runner, self.store = scene, runner, store

    def problem(self, request: SegmentRequest) -> str | None:
        """Why Segment cannot start, or None."""
        if request.volume is None:
            return "Select a CT volume"
        if request.volume.GetImageData() is None:
            return "The selected volume has no image data"
        if request.organ_segmentation is not None and request.organ_segmentation.GetSegmentation().GetNumberOfSegments() == 0:
            return "The organ segmentation has no segments"
        known = self.prompts(request.options.model)
        if known is not None and not request.options.prompt.strip():
            example = known[0] if known else "liver tumor"
            return f"Type what to segment for this model (a prompt, e.g. '{example}')"
        return None

    def prompts(self, model: str) -> list | None:
        """What the prompt field offers for ``model``: None when the model takes no text prompt,
        else its known prompts (others work once CLIP's text weights are imported)."""
        from pastacore.inference.segmentation_model import declared_prompts

        return declared_prompts(model or None, self.store)

    def region_text(self, request: SegmentRequest) -> str:
        """Where Segment will look, in words (the default follows the model's organ)."""
        from pastacore.anatomy.organs import classical_search_region
        from pastacore.inference.segmentation_model import declared_organ

        if request.roi is not None:
            return f"inside the box '{request.roi.GetName()}'"
        if request.organ_segmentation is not None:
            return f"in the organ segmentation '{request.organ_segmentation.GetName()}' (+ 20 mm)"
        options = request.options
        if options.organ == "body":
            return "in the whole body"
        if options.organ == "lungs":
            return "in the lungs (found automatically)"
        region = classical_search_region(declared_organ(options.model or None, self.store))
        return f"in the {region} (the model's organ, found automatically)" if region else "in the whole body"

    def start(self, request: SegmentRequest, on_progress=None, on_finished=None):
        """Start segmenting; ``on_finished(Outcome)`` carries the segmentation node."""
        from pastacore.actions.segment import SegmentInputs
        from pastacore.mrml.roi import box_from_roi
        from pastacore.mrml.segmentations import labels_from_segmentation
        from pastacore.mrml.volumes import volume_from_node

        problem = self.problem(request)
        if problem:
            raise PastaError(problem)
        request.options.check()
        inputs = SegmentInputs(volume_from_node(request.volume))
        if request.organ_segmentation is not None:
            inputs.organ_mask, _ids = labels_from_segmentation(
                self.scene, request.organ_segmentation, request.volume, list(request.organ_segments) or None
            )
        if request.roi is not None:
            inputs.roi_box = box_from_roi(request.roi, inputs.image.grid)
        return start_action(
            self.runner,
            "segment",
            request.options,
            inputs,
            lambda result, folder: self._add(request, result, folder),
            on_progress,
            on_finished,
            describe=self._describe,
        )

    def _add(self, request, result, folder):
        from pastacore.mrml.segmentations import add_labels_to_segmentation, record_origin
        from pastacore.tasks.exchange import load_volume
        from pastacore.terminology import segments_from_dict

        require_alive(self.scene, request.volume, "input volume")
        output = self.output_for(request)
        labels = load_volume(folder, result["volumes"]["labels"])
        node, added = add_labels_to_segmentation(
            self.scene,
            labels,
            segments_from_dict(result["segments"]),
            request.volume,
            output,
            name=f"{request.volume.GetName()} PASTA",
        )
        record_origin(node, result.get("model") or {}, result.get("candidates") or {}, added)
        segmentation = node.GetSegmentation()
        self.last_added = [segmentation.GetSegment(sid).GetName() for sid in added.values()]
        self.last_result = result
        return node

    def output_for(self, request: SegmentRequest):
        """The segmentation the result goes into: the request's output when it belongs to the input
        volume (made on it), else None (a new one, so a second volume never fills the first's)."""
        output = request.output
        if output is None or output.GetScene() is not self.scene:
            return None
        reference = output.GetNodeReference(output.GetReferenceImageGeometryReferenceRole())
        return output if reference is request.volume else None

    def _describe(self, node) -> str:
        found = ", ".join(self.last_added) or "nothing (no organ or lesion found)"
        return f"Added to '{node.GetName()}': {found}."
