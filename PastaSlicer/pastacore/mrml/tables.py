"""Lesion measurements as a ``vtkMRMLTableNode`` (one row per lesion), for the Slicer hub.

:func:`measurements_to_table` fills a new table node or refills a given one in place (same node,
same ID), so views showing it update. :func:`update_table_from_segmentation` re-measures a
segmentation node on its CT node; the hub calls it when the Segment Editor changes a segment.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..report.measure import LesionMeasurement
    from ..report.model import LesionReport


# (column name, unit, description, getter)
COLUMNS = (
    ("Lesion", "", "lesion number", lambda m: m.index),
    ("Name", "", "segment or label name", lambda m: m.name),
    ("Organ", "", "organ holding the lesion", lambda m: m.organ),
    ("Side", "", "left, right or midline", lambda m: m.side),
    ("Volume", "mL", "voxel volume (pyradiomics VoxelVolume)", lambda m: m.volume_ml),
    ("Max 3D diameter", "mm", "pyradiomics Maximum3DDiameter", lambda m: m.max_diameter_3d_mm),
    ("Long axis", "mm", "RECIST longest in-slice diameter", lambda m: m.long_axis_mm),
    ("Short axis", "mm", "longest diameter perpendicular to the long axis, same slice", lambda m: m.short_axis_mm),
    ("Axis slice", "", "slice (k) of the long and short axes", lambda m: m.axis_slice),
    ("Major axis", "mm", "pyradiomics MajorAxisLength", lambda m: m.principal_axes_mm[0]),
    ("Minor axis", "mm", "pyradiomics MinorAxisLength", lambda m: m.principal_axes_mm[1]),
    ("Least axis", "mm", "pyradiomics LeastAxisLength", lambda m: m.principal_axes_mm[2]),
    ("Mean", "HU", "mean attenuation", lambda m: m.mean_hu),
    ("SD", "HU", "standard deviation of attenuation", lambda m: m.std_hu),
    ("Min", "HU", "minimum attenuation", lambda m: m.min_hu),
    ("Max", "HU", "maximum attenuation", lambda m: m.max_hu),
    ("Median", "HU", "median attenuation", lambda m: m.median_hu),
    ("Centroid R", "mm", "centroid, RAS", lambda m: m.centroid_ras_mm[0]),
    ("Centroid A", "mm", "centroid, RAS", lambda m: m.centroid_ras_mm[1]),
    ("Centroid S", "mm", "centroid, RAS", lambda m: m.centroid_ras_mm[2]),
    ("First slice", "", "first slice holding the lesion", lambda m: m.slice_range[0]),
    ("Last slice", "", "last slice holding the lesion", lambda m: m.slice_range[1]),
    ("Touches border", "", "1 when the lesion reaches the volume edge (may be cut)", lambda m: int(m.touches_border)),
)


# what the report adds to each row (from a LesionReport): shown after the lesion's name
REVIEW_COLUMNS = (
    (
        "Confidence",
        "",
        "the model's mean lesion probability over the lesion as it proposed it (blank: none)",
        lambda lesion: "" if lesion.mean_probability is None else f"{lesion.mean_probability:.2f}",
    ),
    (
        "Max confidence",
        "",
        "the model's maximum lesion probability over the lesion",
        lambda lesion: "" if lesion.max_probability is None else f"{lesion.max_probability:.2f}",
    ),
    (
        "Status",
        "",
        "proposed by the model, edited or confirmed by a person, drawn by a person, or origin unknown",
        lambda lesion: lesion.status,
    ),
    (
        "RECIST",
        "",
        "RECIST 1.1 role: target N, non-target, or blank",
        lambda lesion: f"target {lesion.recist.get('target_number')}" if lesion.role == "target" else lesion.role,
    ),
)


def lesions_to_table(
    scene: object, lesions: Sequence[LesionReport], table_node: object | None = None, name: str = "PASTA lesion measurements"
) -> object:
    """Write a report's lesions (LesionReport list: measurements with confidence, status and
    RECIST role) into ``table_node`` (created when None), in the report's order and numbers."""
    measurements = [lesion.measurement for lesion in lesions]
    return measurements_to_table(scene, measurements, table_node, name, reviews=lesions)


def measurements_to_table(
    scene: object,
    measurements: Sequence[LesionMeasurement],
    table_node: object | None = None,
    name: str = "PASTA lesion measurements",
    reviews: Sequence[LesionReport] | None = None,
) -> object:
    """Write ``measurements`` (LesionMeasurement list) into ``table_node`` (created when None);
    ``reviews`` (LesionReport list, same order) adds :data:`REVIEW_COLUMNS` after the name."""
    import vtk

    columns = [(title, unit, text, [get(m) for m in measurements], None) for title, unit, text, get in COLUMNS]
    if reviews is not None:
        review = [(title, unit, text, [get(lesion) for lesion in reviews], "") for title, unit, text, get in REVIEW_COLUMNS]
        columns = columns[:2] + review + columns[2:]
    if table_node is None:
        table_node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    was_modifying = table_node.StartModify()
    try:
        table = table_node.GetTable()
        while table.GetNumberOfColumns():
            table.RemoveColumn(table.GetNumberOfColumns() - 1)
        for title, unit, description, values, empty in columns:
            sample = values[0] if values else (0.0 if empty is None else empty)
            if isinstance(sample, str):
                column = vtk.vtkStringArray()
            elif isinstance(sample, int):
                column = vtk.vtkIntArray()
            else:
                column = vtk.vtkDoubleArray()
            column.SetName(title)
            for value in values:
                column.InsertNextValue(value)
            table.AddColumn(column)
            if unit:
                table_node.SetColumnUnitLabel(title, unit)
            table_node.SetColumnDescription(title, description)
        table.Modified()
        table_node.SetUseColumnTitleAsColumnHeader(True)
        table_node.SetLocked(True)  # results, not user input
    finally:
        table_node.EndModify(was_modifying)
    table_node.Modified()
    return table_node


def update_table_from_segmentation(
    scene: object,
    segmentation_node: object,
    image_node: object,
    table_node: object | None = None,
    segment_ids: Sequence[str] | None = None,
    split_components: bool = True,
    name: str = "PASTA lesion measurements",
) -> tuple[object, list]:
    """Re-measure ``segmentation_node`` (its segments = lesion labels) on ``image_node``.

    Returns (table node, measurements). Segment names become lesion names.
    """
    from ..report.measure import measure_lesions
    from .segmentations import labels_from_segmentation
    from .volumes import volume_from_node

    image = volume_from_node(image_node)
    labels, ids = labels_from_segmentation(scene, segmentation_node, image_node, segment_ids)
    segmentation = segmentation_node.GetSegmentation()
    names = {n: segmentation.GetSegment(sid).GetName() for n, sid in enumerate(ids, start=1)}
    measurements = measure_lesions(image, labels, label_names=names, split_components=split_components)
    return measurements_to_table(scene, measurements, table_node, name=name), measurements
