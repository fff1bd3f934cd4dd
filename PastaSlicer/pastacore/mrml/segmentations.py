"""Label map <-> segmentation node, with names, colours and terminology per segment.

Results always arrive as *new* segments: adding to an existing segmentation never
changes or removes the segments it already holds, and a new segment whose name is taken
gets a numbered name ("Lung tumor 2").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import PastaError
from ..geometry.volume import Volume
from ..terminology import SegmentInfo
from .scene import temporary_nodes
from .volumes import grid_from_node, node_from_volume, volume_from_node

if TYPE_CHECKING:
    from collections.abc import Sequence


TERMINOLOGY_TAG = "TerminologyEntry"


def _unique_name(name: str, taken: set) -> str:
    if name not in taken:
        return name
    n = 2
    while f"{name} {n}" in taken:
        n += 1
    return f"{name} {n}"


def segment_names(segmentation_node: object) -> list:
    segmentation = segmentation_node.GetSegmentation()
    return [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]


def add_labels_to_segmentation(
    scene: object,
    labels: Volume,
    segments: dict,
    reference_node: object,
    segmentation_node: object | None = None,
    name: str = "PASTA segmentation",
) -> tuple[object, dict]:
    """Import the label values in ``segments`` ({value: SegmentInfo}) as new segments.

    ``labels`` must lie on ``reference_node``'s grid. Returns (segmentation node, {value:
    segment id}). Values absent from ``labels`` produce no segment.
    """
    import slicer

    if not labels.is_label:
        raise PastaError("a segmentation is made from a label map, not an image")
    if not grid_from_node(reference_node).same_as(labels.grid, tol=1e-3):
        raise PastaError("the label map does not lie on the reference volume's grid")
    if segmentation_node is None:
        segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", scene.GenerateUniqueName(name))
        segmentation_node.CreateDefaultDisplayNodes()
        segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(reference_node)
        segmentation_node.SetNodeReferenceID(segmentation_node.GetReferenceImageGeometryReferenceRole(), reference_node.GetID())
        _place_in_study(scene, segmentation_node, reference_node)
    taken = set(segment_names(segmentation_node))
    present = set(np.unique(labels.array).tolist())
    added = {}
    segmentation = segmentation_node.GetSegmentation()
    for value, info in sorted(segments.items()):
        if value not in present:
            continue
        single = labels.with_array((labels.array == value).astype(np.uint8), is_label=True)
        before = set(segmentation.GetSegmentIDs())
        with temporary_nodes(scene):
            label_node = node_from_volume(scene, single, "__pasta_import")
            ok = slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(label_node, segmentation_node)
        new_ids = [sid for sid in segmentation.GetSegmentIDs() if sid not in before]
        if not ok or len(new_ids) != 1:
            raise PastaError(f"importing label {value} into the segmentation failed")
        segment = segmentation.GetSegment(new_ids[0])
        segment.SetName(_unique_name(info.name, taken))
        taken.add(segment.GetName())
        segment.SetColor(*info.color)
        segment.SetTag(TERMINOLOGY_TAG, info.terminology)
        added[value] = new_ids[0]
    return segmentation_node, added


def _place_in_study(scene, node, reference_node):
    """Put ``node`` next to ``reference_node`` in Subject Hierarchy (its study, when it has one)."""
    import slicer

    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    if sh is None:
        return
    item = sh.GetItemByDataNode(reference_node)
    parent = sh.GetItemParent(item) if item else 0
    if parent and parent != sh.GetSceneItemID():
        own = sh.GetItemByDataNode(node)
        if own:
            sh.SetItemParent(own, parent)
        else:  # headless scenes do not create items for new nodes by themselves
            sh.CreateItem(parent, node)


def labels_from_segmentation(
    scene: object, segmentation_node: object, reference_node: object, segment_ids: Sequence[str] | None = None
) -> tuple:
    """Export segments to a label map on ``reference_node``'s grid.

    Returns (Volume with values 1..N in the order of ``segment_ids``, list of segment ids).
    """
    import slicer
    import vtk

    segmentation = segmentation_node.GetSegmentation()
    ids = list(segment_ids) if segment_ids is not None else list(segmentation.GetSegmentIDs())
    if not ids:
        raise PastaError(f"segmentation '{segmentation_node.GetName()}' has no segments")
    for sid in ids:
        if segmentation.GetSegment(sid) is None:
            raise PastaError(f"segment {sid!r} is not in '{segmentation_node.GetName()}'")
    array = vtk.vtkStringArray()
    for sid in ids:
        array.InsertNextValue(sid)
    with temporary_nodes(scene):  # the label map, and the "<name>_ColorTable" node the export adds
        label_node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__pasta_export")
        if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            segmentation_node, array, label_node, reference_node
        ):
            raise PastaError("exporting the segments to a label map failed")
        volume = volume_from_node(label_node)
    volume.is_label = True
    return volume, ids


def labels_from_segment_images(segmentation_node: object, reference_node: object, segment_ids: Sequence[str]) -> Volume | None:
    """What :func:`labels_from_segmentation` gives, built straight from the segments' binary
    labelmaps (each holds only its own extent), when they lie on ``reference_node``'s voxel grid
    (the segmentation was made on that volume; no transform); None otherwise. No label map node
    is made: on a 512x512x300 CT this takes a fraction of the export's time."""
    import slicer
    import vtk
    from vtk.util.numpy_support import vtk_to_numpy

    if segmentation_node.GetParentTransformNode() is not None or reference_node.GetParentTransformNode() is not None:
        return None
    segmentation = segmentation_node.GetSegmentation()
    name = slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName()
    if not segmentation.ContainsRepresentation(name):
        return None
    reference = vtk.vtkMatrix4x4()
    reference_node.GetIJKToRASMatrix(reference)
    grid = grid_from_node(reference_node)
    shape = grid.shape
    from ..geometry.boxes import VoxelBox
    from ..report.measure import LABEL_BOXES

    labels = np.zeros(shape, np.uint8 if len(segment_ids) < 256 else np.uint16)
    boxes = {}
    for value, sid in enumerate(segment_ids, start=1):
        segment = segmentation.GetSegment(sid)
        image = segment.GetRepresentation(name) if segment is not None else None
        if image is None:
            return None
        matrix = vtk.vtkMatrix4x4()
        image.GetImageToWorldMatrix(matrix)
        if not all(abs(matrix.GetElement(r, c) - reference.GetElement(r, c)) < 1e-6 for r in range(3) for c in range(4)):
            return None
        i0, i1, j0, j1, k0, k1 = image.GetExtent()
        if i1 < i0 or j1 < j0 or k1 < k0 or image.GetPointData().GetScalars() is None:
            continue  # an empty segment
        data = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(k1 - k0 + 1, j1 - j0 + 1, i1 - i0 + 1)
        lo, hi = np.maximum([k0, j0, i0], 0), np.minimum([k1 + 1, j1 + 1, i1 + 1], shape)
        if np.any(hi <= lo):
            continue
        inside = data[lo[0] - k0 : hi[0] - k0, lo[1] - j0 : hi[1] - j0, lo[2] - i0 : hi[2] - i0] == segment.GetLabelValue()
        labels[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]][inside] = value
        boxes[value] = VoxelBox(tuple(int(v) for v in lo), tuple(int(v) for v in hi))
    # a later segment may cover an earlier one's voxels: the boxes still hold each label whole
    return Volume(labels, grid, is_label=True, meta={"node_name": segmentation_node.GetName(), LABEL_BOXES: boxes})


def segment_infos(segmentation_node: object) -> list:
    """(segment id, SegmentInfo-like record) for every segment, for reports and tests."""
    from vtkmodules.vtkCommonCore import reference

    segmentation = segmentation_node.GetSegmentation()
    out = []
    for sid in segmentation.GetSegmentIDs():
        segment = segmentation.GetSegment(sid)
        tag = reference("")
        segment.GetTag(TERMINOLOGY_TAG, tag)
        tag = str(tag)
        out.append((sid, SegmentInfo("", segment.GetName(), tuple(segment.GetColor()), tag)))
    return out


# --- where a segmentation came from ---------------------------------------------------------

MODEL_ATTRIBUTE = "PASTA.Model"  # node attribute: the model that made the segmentation (JSON provenance)


def segment_tag(segmentation_node: object, segment_id: str, tag: str) -> str:
    """A segment's tag value ("" when it has none)."""
    from vtkmodules.vtkCommonCore import reference

    value = reference("")
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    if segment is None or not segment.GetTag(tag, value):
        return ""
    return str(value)


def record_origin(segmentation_node: object, model: dict, candidates_json: dict, added: dict) -> None:
    """Record the model that made ``segmentation_node`` (its ``PASTA.Model`` attribute) and, on each
    lesion segment it added (``{label value: segment id}``), that segment's candidates with the
    model's confidence (the segment tag ``PASTA.Candidates``). Both are saved with the scene."""
    import json

    from ..candidates import CANDIDATES_TAG, tag_value

    segmentation_node.SetAttribute(MODEL_ATTRIBUTE, json.dumps(model or {}, default=str))
    segmentation = segmentation_node.GetSegmentation()
    for value, segment_id in added.items():
        records = (candidates_json or {}).get(str(value))
        if records is not None:
            segmentation.GetSegment(segment_id).SetTag(CANDIDATES_TAG, tag_value(records))


def recorded_model(segmentation_node: object) -> dict:
    """The model record of a segmentation node (``{}`` when none or damaged)."""
    import json

    try:
        model = json.loads(segmentation_node.GetAttribute(MODEL_ATTRIBUTE) or "{}")
    except ValueError:
        return {}
    return model if isinstance(model, dict) else {}


def recorded_review(segmentation_node: object, segment_ids: Sequence[str]) -> tuple:
    """``(candidates, confirmed)`` keyed by label value 1..N in the order of ``segment_ids`` (as
    :func:`labels_from_segmentation` numbers them). ``candidates`` is None when nothing records
    where the segmentation came from; a segment without candidates in a recorded one was drawn
    by a person."""
    import json

    from ..candidates import CANDIDATES_TAG, CONFIRMED_TAG, from_tag

    tags = [segment_tag(segmentation_node, sid, CANDIDATES_TAG) for sid in segment_ids]
    known = bool(recorded_model(segmentation_node)) or any(tags)
    candidates = {n: from_tag(tag) for n, tag in enumerate(tags, start=1)} if known else None
    confirmed = {}
    for n, sid in enumerate(segment_ids, start=1):
        try:
            marks = json.loads(segment_tag(segmentation_node, sid, CONFIRMED_TAG) or "[]")
        except ValueError:
            marks = []
        if isinstance(marks, list) and marks:
            confirmed[n] = [m for m in marks if isinstance(m, dict)]
    return candidates, confirmed


def _marks(segmentation_node: object, segment_id: str, tag: str) -> list:
    import json

    try:
        marks = json.loads(segment_tag(segmentation_node, segment_id, tag) or "[]")
    except ValueError:
        marks = []
    return [m for m in marks if isinstance(m, dict)] if isinstance(marks, list) else []


def _set_marks(segmentation_node: object, segment_id: str, tag: str, marks: list) -> None:
    import json

    segmentation_node.GetSegmentation().GetSegment(segment_id).SetTag(tag, json.dumps(marks, separators=(",", ":")))


def confirm_lesions(segmentation_node: object, segment_id: str, fingerprints: list) -> None:
    """Add lesions (their fingerprints, :func:`pastacore.candidates.fingerprint`) to those a
    person confirmed in a segment (the segment tag ``PASTA.Confirmed``); a rejection of them ends."""
    from ..candidates import CONFIRMED_TAG, REJECTED_TAG

    marks = _marks(segmentation_node, segment_id, CONFIRMED_TAG)
    _set_marks(segmentation_node, segment_id, CONFIRMED_TAG, marks + [f for f in fingerprints if f not in marks])
    rejected = _marks(segmentation_node, segment_id, REJECTED_TAG)
    _set_marks(segmentation_node, segment_id, REJECTED_TAG, [m for m in rejected if m not in fingerprints])


def reject_lesions(segmentation_node: object, segment_id: str, fingerprints: list) -> None:
    """Mark lesions a person rejected (not lesions: reported apart) in a segment (the segment tag
    ``PASTA.Rejected``); a confirmation of them ends. The voxels stay: undo is confirming again."""
    from ..candidates import CONFIRMED_TAG, REJECTED_TAG

    marks = _marks(segmentation_node, segment_id, REJECTED_TAG)
    _set_marks(segmentation_node, segment_id, REJECTED_TAG, marks + [f for f in fingerprints if f not in marks])
    confirmed = _marks(segmentation_node, segment_id, CONFIRMED_TAG)
    _set_marks(segmentation_node, segment_id, CONFIRMED_TAG, [m for m in confirmed if m not in fingerprints])


def recorded_rejections(segmentation_node: object, segment_ids: Sequence[str]) -> dict:
    """``{label value 1..N: [fingerprint]}`` of the lesions a person rejected, as :func:`recorded_review` numbers them."""
    from ..candidates import REJECTED_TAG

    out = {}
    for n, sid in enumerate(segment_ids, start=1):
        marks = _marks(segmentation_node, sid, REJECTED_TAG)
        if marks:
            out[n] = marks
    return out


# --- synthetic cases -------------------------------------------------------------------------


def recorded_synthetic(segmentation_node: object, segment_ids: Sequence[str]) -> dict:
    """``{label value: synthesis record}`` of the synthetic lesions among ``segment_ids`` (values
    1..N in their order, as :func:`labels_from_segmentation` numbers them)."""
    from ..synthetic import SYNTHETIC_TAG, clean_record

    out = {}
    for n, sid in enumerate(segment_ids, start=1):
        record = clean_record(segment_tag(segmentation_node, sid, SYNTHETIC_TAG))
        if record is not None:
            out[n] = record
    return out


def source_segmentations(scene: object, volume_node: object) -> list:
    """The segmentation nodes made on ``volume_node`` (their reference geometry is it), the one
    changed last (segmented, edited, a segment added) first."""
    role = None
    found = []
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLSegmentationNode")
        role = role or node.GetReferenceImageGeometryReferenceRole()
        if node.GetNodeReference(role) is volume_node:
            found.append(node)
    return sorted(found, key=last_changed, reverse=True)


def last_changed(segmentation_node: object) -> int:
    """VTK's modification time of the node, its segments and their label maps (one clock for all
    VTK objects: a later change has a larger time)."""
    content = segmentation_node.GetSegmentation()
    times = [segmentation_node.GetMTime(), content.GetMTime()]
    for sid in content.GetSegmentIDs():
        segment = content.GetSegment(sid)
        times.append(segment.GetMTime())
        representation = segment.GetRepresentation(content.GetSourceRepresentationName())
        if representation is not None:
            times.append(representation.GetMTime())
    return max(times)


def copy_segments(scene: object, sources: Sequence[object], target: object) -> list:
    """Copy every segment of the ``sources`` segmentation nodes into ``target`` with their tags
    (terminology, candidates, confirmations), names made unique; returns the new segment ids."""
    content = target.GetSegmentation()
    taken = set(segment_names(target))
    added = []
    for source in sources:
        from_content = source.GetSegmentation()
        for sid in from_content.GetSegmentIDs():
            before = set(content.GetSegmentIDs())
            if not content.CopySegmentFromSegmentation(from_content, sid):
                raise PastaError(f"copying segment '{from_content.GetSegment(sid).GetName()}' of '{source.GetName()}' failed")
            new_id = next(s for s in content.GetSegmentIDs() if s not in before)
            segment = content.GetSegment(new_id)
            segment.SetName(_unique_name(segment.GetName(), taken))
            taken.add(segment.GetName())
            added.append(new_id)
    return added


def carve(scene: object, segmentation_node: object, segment_ids: Sequence[str], mask: Volume, reference_node: object) -> list:
    """Take the voxels of ``mask`` (a label Volume on ``reference_node``'s grid) out of each of the
    segments ``segment_ids`` (what a synthetic lesion now occupies); returns the ids changed."""
    import slicer
    import vtk

    inside = np.asarray(mask.array) > 0
    changed = []
    for sid in segment_ids:
        labels, _ = labels_from_segmentation(scene, segmentation_node, reference_node, [sid])
        overlap = (labels.array > 0) & inside
        if not overlap.any():
            continue
        kept = labels.with_array(((labels.array > 0) & ~inside).astype(np.uint8), is_label=True)
        ids = vtk.vtkStringArray()
        ids.InsertNextValue(sid)
        with temporary_nodes(scene):
            label_node = node_from_volume(scene, kept, "__pasta_carve")
            if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(label_node, segmentation_node, ids):
                raise PastaError(f"updating segment '{segmentation_node.GetSegmentation().GetSegment(sid).GetName()}' failed")
        changed.append(sid)
    return changed
