"""Measure the lesions of a segmentation into its one measurement table (kept up to date while
the user edits), predict report attributes, and export the report in every format."""

from __future__ import annotations

import json
from dataclasses import asdict

from pastacore.errors import PastaError

from .jobs import alive, require_alive, start_job
from .segment import MODEL_ATTRIBUTE

TABLE_ROLE = "PASTA.MeasurementTable"   # segmentation node -> its measurement table node


class ReportController:
    def __init__(self, scene, runner):
        self.scene, self.runner = scene, runner
        self._measuring = False

    # -- measurements -----------------------------------------------------------------------
    def table_of(self, segmentation):
        """The measurement table of ``segmentation`` (None until it was first measured)."""
        table = segmentation.GetNodeReference(TABLE_ROLE) if segmentation is not None else None
        return table if alive(self.scene, table) else None

    def measure(self, volume, segmentation, segment_ids=None, attributes=None):
        """Measure every lesion (a connected piece of each chosen segment; by default of the lesion
        segments) into the segmentation's one table, created on first use; returns
        ``(table node, measurements)``."""
        from pastacore.mrml.tables import update_table_from_segmentation

        if volume is None or segmentation is None:
            raise PastaError("choose a CT volume and a segmentation")
        self._measuring = True  # exporting the segments is not an edit
        try:
            table, measurements = update_table_from_segmentation(
                self.scene, segmentation, volume, self.table_of(segmentation),
                segment_ids=list(segment_ids or ()) or self.lesion_segments(segmentation),
                name=f"{segmentation.GetName()} measurements")
        finally:
            self._measuring = False
        segmentation.SetNodeReferenceID(TABLE_ROLE, table.GetID())
        if attributes:
            add_attribute_columns(table, measurements, attributes)
        return table, measurements

    def follow_edits(self, volume, segmentation, segment_ids=None, on_measured=None, defer=None):
        """Measure again whenever the segments change (Segment Editor edits); returns a watch
        with ``stop()``. ``defer(function)`` lets a front end debounce (default: measure now).
        ``on_measured(table, measurements, error)`` follows each measurement."""
        return EditWatch(self, volume, segmentation, segment_ids, on_measured, defer)

    # -- attributes -------------------------------------------------------------------------
    def predict_attributes(self, volume, segmentation, head, encoder=None, segment_ids=None, device="auto",
                           on_progress=None, on_finished=None):
        """Predict the five report attributes per lesion; the Outcome's value is
        ``({lesion number: {attribute: AttributeValue}}, [ModelProvenance])``."""
        from pastacore.report.model import AttributeValue, ModelProvenance

        if not head:
            raise PastaError("choose the attribute head (a PASTA checkpoint or a head from 'pasta train-head')")
        image, labels, names = self.inputs(volume, segmentation, segment_ids)
        params = {"image": "image", "labels": "labels", "names": {str(k): v for k, v in names.items()},
                  "head": str(head), "encoder": str(encoder) if encoder else None, "device": device}

        def read(result, folder):
            predicted = {int(n): {a: AttributeValue(**v) for a, v in values.items()}
                         for n, values in result["attributes"].items()}
            return predicted, [ModelProvenance(**m) for m in result["models"]]

        return start_job(self.runner, "attributes", params, {"image": image, "labels": labels}, read, on_progress,
                         on_finished, describe=lambda value: f"Attributes predicted for {len(value[0])} lesion(s).")

    # -- export -----------------------------------------------------------------------------
    @staticmethod
    def formats() -> tuple:
        from pastacore.report.export import ALL_FORMATS

        return ALL_FORMATS

    def export(self, volume, segmentation, out_dir, formats=None, segment_ids=None, attributes=None, models=(),
               overwrite=False, on_progress=None, on_finished=None):
        """Write the report folder in the task process; the Outcome's value is the written file list."""
        from pastacore.report.export import parse_formats

        formats = parse_formats(",".join(formats or self.formats()))
        image, labels, names = self.inputs(volume, segmentation, segment_ids)
        params = {"image": "image", "labels": "labels", "names": {str(k): v for k, v in names.items()},
                  "lesion_labels": sorted(names), "case": self.case(volume, segmentation), "out_dir": str(out_dir),
                  "formats": list(formats), "overwrite": bool(overwrite),
                  "attributes": {str(n): {a: asdict(v) for a, v in values.items()} for n, values in (attributes or {}).items()},
                  "models": [asdict(m) for m in list(models or ()) + self.segmentation_models(segmentation)]}
        return start_job(self.runner, "report", params, {"image": image, "labels": labels},
                         lambda result, folder: result["written"], on_progress, on_finished,
                         describe=lambda written: f"Wrote {len(written)} file(s) to {out_dir}.")

    @staticmethod
    def report_folder(chosen, case_name):
        """``(folder, holds an earlier report)``: the chosen folder when empty, else a subfolder per case."""
        import re
        from pathlib import Path

        chosen = Path(chosen)
        if chosen.is_dir() and not any(chosen.iterdir()):
            return chosen, False
        safe = re.sub(r"[^\w.-]+", "_", case_name or "").strip("_") or "case"
        target = chosen / f"PASTA report {safe}"
        return target, target.is_dir() and any(target.iterdir())

    # -- shared -----------------------------------------------------------------------------
    @staticmethod
    def lesion_segments(segmentation) -> list:
        """The segments that are lesions (by terminology, else by name); all of them when none is
        recognised as a lesion, so a segmentation of unnamed segments is measured whole."""
        from pastacore.mrml.segmentations import segment_infos
        from pastacore.terminology import is_lesion

        infos = segment_infos(segmentation)
        lesions = [sid for sid, info in infos if is_lesion(info.name, info.terminology)]
        return lesions or [sid for sid, _ in infos]

    def inputs(self, volume, segmentation, segment_ids=None):
        """``(image, labels 1..N, {value: segment name})`` read from the scene; by default the
        lesion segments (:meth:`lesion_segments`), never an organ as a lesion."""
        from pastacore.mrml.segmentations import labels_from_segmentation
        from pastacore.mrml.volumes import volume_from_node

        if volume is None or segmentation is None:
            raise PastaError("choose a CT volume and a segmentation")
        require_alive(self.scene, volume, "CT volume")
        image = volume_from_node(volume)
        ids = list(segment_ids or ()) or self.lesion_segments(segmentation)
        labels, ids = labels_from_segmentation(self.scene, segmentation, volume, ids)
        content = segmentation.GetSegmentation()
        return image, labels, {n: content.GetSegment(sid).GetName() for n, sid in enumerate(ids, start=1)}

    @staticmethod
    def case(volume, segmentation) -> dict:
        return {"case_id": volume.GetName(), "image_name": volume.GetName(), "segmentation_name": segmentation.GetName()}

    @staticmethod
    def segmentation_models(segmentation) -> list:
        """The model that made ``segmentation`` (recorded by Segment), as report provenance."""
        from pastacore.report.model import ModelProvenance

        try:
            model = json.loads(segmentation.GetAttribute(MODEL_ATTRIBUTE) or "{}")
        except ValueError:
            return []
        if not isinstance(model, dict) or not model.get("name"):
            return []
        return [ModelProvenance(str(model["name"]), str(model.get("version") or ""), str(model.get("sha256") or ""),
                                "segmentation")]


class EditWatch:
    """Observes a segmentation's segments and measures again after each change."""

    def __init__(self, controller, volume, segmentation, segment_ids, on_measured, defer):
        import slicer

        self.controller, self.volume, self.segmentation = controller, volume, segmentation
        self.segment_ids, self.on_measured = segment_ids, on_measured
        self.defer = defer or (lambda function: function())
        content = segmentation.GetSegmentation()
        events = (slicer.vtkSegmentation.SegmentModified, slicer.vtkSegmentation.RepresentationModified,
                  slicer.vtkSegmentation.SegmentAdded, slicer.vtkSegmentation.SegmentRemoved)
        self._observed = content
        self._tags = [content.AddObserver(event, self._changed) for event in events]

    def _changed(self, caller=None, event=None):
        if not self.controller._measuring:
            self.defer(self.measure_now)

    def measure_now(self):
        if not self._tags or not alive(self.controller.scene, self.segmentation):
            return
        try:
            table, measurements = self.controller.measure(self.volume, self.segmentation, self.segment_ids)
        except PastaError as exc:
            if self.on_measured:
                self.on_measured(None, [], str(exc))
            return
        if self.on_measured:
            self.on_measured(table, measurements, None)

    def stop(self):
        for tag in self._tags:
            self._observed.RemoveObserver(tag)
        self._tags = []


def add_attribute_columns(table, measurements, attributes) -> None:
    """One text column per attribute: the predicted option and its probability."""
    import vtk

    names = []
    for values in attributes.values():
        names += [n for n in values if n not in names]
    content = table.GetTable()
    for name in names:
        column = vtk.vtkStringArray()
        column.SetName(name.capitalize())
        for m in measurements:
            value = attributes.get(m.index, {}).get(name)
            if value is None:
                text = ""
            elif value.probabilities:
                text = f"{value.value} ({100 * value.probabilities.get(value.value, 0.0):.0f}%)"
            else:
                text = value.value
            column.InsertNextValue(text)
        content.AddColumn(column)
        table.SetColumnDescription(column.GetName(), f"predicted {name} (probability); research use only")
    content.Modified()
    table.Modified()
