"""Measure the lesions of a segmentation into its one measurement table (kept up to date while
the user edits; with each lesion's confidence, status and RECIST role), confirm lesions, predict
report attributes, export the report in every format (baseline, or follow-up of an earlier
report), and compare two time points (RECIST 1.1 response)."""

from __future__ import annotations

from dataclasses import asdict

from pastacore.errors import PastaError

from .jobs import alive, require_alive, start_action

TABLE_ROLE = "PASTA.MeasurementTable"  # segmentation node -> its measurement table node


class ReportController:
    def __init__(self, scene, runner):
        self.scene, self.runner = scene, runner
        self._measuring = False
        self._cache_key, self._cache = None, {}  # lesion measurements kept while the CT is unchanged

    # -- measurements -----------------------------------------------------------------------
    def table_of(self, segmentation):
        """The measurement table of ``segmentation`` (None until it was first measured)."""
        table = segmentation.GetNodeReference(TABLE_ROLE) if segmentation is not None else None
        return table if alive(self.scene, table) else None

    def review(self, volume, segmentation, segment_ids=None, attributes=None, floor=None, targets=None, quick=True):
        """The report of the lesions as they are now, without writing anything: measurements,
        each lesion's confidence and status, the floor, numbers (most confident first) and the
        RECIST 1.1 targets. ``floor``: the user's limits (``{"min_long_axis_mm", "min_volume_ml",
        "min_confidence"}``, each optional; the model's own floor fills the rest)."""
        from pastacore.report.export import make_report
        from pastacore.report.model import CaseInfo

        self._measuring = True  # exporting the segments is not an edit
        try:
            image, labels, names = self.inputs(volume, segmentation, segment_ids, quick=quick)
        finally:
            self._measuring = False
        return make_report(
            image,
            labels,
            case=CaseInfo(**self.case(volume, segmentation)),
            lesion_labels=sorted(names),
            label_names=names,
            attributes=attributes or None,
            models=self.segmentation_models(segmentation),
            targets=targets,
            measure_cache=self._measurements_of(volume) if quick else None,
            **self._review_arguments(segmentation, segment_ids, floor),
        )

    def _measurements_of(self, volume) -> dict:
        """The lesion measurements kept for ``volume`` (emptied when the CT changes or another CT
        is measured): after an edit only the changed lesions are measured again."""
        image = volume.GetImageData()
        key = (volume.GetID(), image.GetMTime() if image is not None else 0)
        if key != self._cache_key:
            self._cache_key, self._cache = key, {}
        return self._cache

    def measure(self, volume, segmentation, segment_ids=None, attributes=None, floor=None, targets=None, quick=True):
        """Measure every lesion (a connected piece of each chosen segment; by default of the lesion
        segments) into the segmentation's one table, created on first use, in the report's order
        with confidence, status and RECIST role; returns ``(table node, measurements)``."""
        from pastacore.mrml.tables import lesions_to_table

        if volume is None or segmentation is None:
            raise PastaError("choose a CT volume and a segmentation")
        report = self.review(volume, segmentation, segment_ids, attributes, floor, targets, quick)
        table = lesions_to_table(
            self.scene, report.lesions, self.table_of(segmentation), name=f"{segmentation.GetName()} measurements"
        )
        segmentation.SetNodeReferenceID(TABLE_ROLE, table.GetID())
        if attributes:
            add_attribute_columns(table, report.lesions)
        self.last_review = report
        return table, [lesion.measurement for lesion in report.lesions]

    def confirm(self, volume, segmentation, numbers, segment_ids=None, floor=None):
        """Mark lesions (numbers of the current review) as confirmed by a person: a segment tag
        on their segment, kept with the scene; an edit of a lesion afterwards undoes it."""
        from pastacore.mrml.segmentations import confirm_lesions

        return self._mark(volume, segmentation, numbers, segment_ids, floor, confirm_lesions)

    def reject(self, volume, segmentation, numbers, segment_ids=None, floor=None):
        """Mark lesions (numbers of the current review) as rejected by a person (not lesions):
        reported apart, never RECIST targets; confirming one again, or editing it, undoes it."""
        from pastacore.mrml.segmentations import reject_lesions

        return self._mark(volume, segmentation, numbers, segment_ids, floor, reject_lesions)

    def _mark(self, volume, segmentation, numbers, segment_ids, floor, mark):
        from pastacore.candidates import fingerprint

        report = self.review(volume, segmentation, segment_ids, floor=floor)
        ids = self.chosen_segments(segmentation, segment_ids)
        by_number = {lesion.number: lesion for lesion in report.lesions}
        unknown = [n for n in numbers if n not in by_number]
        if unknown:
            raise PastaError(f"there is no lesion {', '.join(map(str, unknown))} (lesions 1 to {len(by_number)})")
        for n in numbers:
            m = by_number[n].measurement
            mark(segmentation, ids[m.label - 1], [fingerprint(m)])
        return self.review(volume, segmentation, segment_ids, floor=floor)

    def _review_arguments(self, segmentation, segment_ids, floor) -> dict:
        """make_report's candidates, confirmations, rejections, synthetic lesions and floor, from the
        segments' tags and the node's model."""
        from pastacore.candidates import choose_floor
        from pastacore.mrml.segmentations import recorded_model, recorded_rejections, recorded_review, recorded_synthetic

        ids = self.chosen_segments(segmentation, segment_ids)
        candidates, confirmed = recorded_review(segmentation, ids)
        return {
            "candidates": candidates,
            "confirmed": confirmed,
            "rejected": recorded_rejections(segmentation, ids),
            "floor": choose_floor(floor, recorded_model(segmentation)),
            "synthetic": recorded_synthetic(segmentation, ids),
        }

    def follow_edits(self, volume, segmentation, segment_ids=None, on_measured=None, defer=None, floor=None):
        """Measure again whenever the segments change (Segment Editor edits); returns a watch
        with ``stop()``. ``defer(function)`` lets a front end debounce (default: measure now).
        ``on_measured(table, measurements, error)`` follows each measurement."""
        return EditWatch(self, volume, segmentation, segment_ids, on_measured, defer, floor)

    # -- attributes -------------------------------------------------------------------------
    def predict_attributes(
        self, volume, segmentation, head, encoder=None, segment_ids=None, device="auto", on_progress=None, on_finished=None
    ):
        """Predict the five report attributes per lesion; the Outcome's value is
        ``({lesion number: {attribute: AttributeValue}}, [ModelProvenance])``."""
        from pastacore.actions.attributes import AttributesInputs, AttributesOptions
        from pastacore.report.model import AttributeValue, ModelProvenance

        options = AttributesOptions(head=str(head or ""), encoder=str(encoder or ""), device=device)
        options.check()
        image, labels, names = self.inputs(volume, segmentation, segment_ids)

        def read(result, folder):
            predicted = {
                int(n): {a: AttributeValue(**v) for a, v in values.items()} for n, values in result["attributes"].items()
            }
            return predicted, [ModelProvenance(**m) for m in result["models"]]

        return start_action(
            self.runner,
            "attributes",
            options,
            AttributesInputs(image, labels, {str(k): v for k, v in names.items()}),
            read,
            on_progress,
            on_finished,
            describe=lambda value: f"Attributes predicted for {len(value[0])} lesion(s).",
        )

    # -- export -----------------------------------------------------------------------------
    @staticmethod
    def formats() -> tuple:
        """The names of the report formats (all registered ones, :mod:`pastacore.report.formats`)."""
        from pastacore.report.formats import format_names

        return format_names()

    @staticmethod
    def format_choices() -> list:
        """``[{"name", "label", "description", "preselected"}]`` for a front end's format choice."""
        from pastacore.report.formats import report_formats

        return [
            {"name": f.name, "label": f.label, "description": f.description, "preselected": f.preselected}
            for f in report_formats()
        ]

    def export(
        self,
        volume,
        segmentation,
        out_dir,
        formats=None,
        segment_ids=None,
        attributes=None,
        models=(),
        overwrite=False,
        on_progress=None,
        on_finished=None,
        floor=None,
        targets=None,
        baseline_dir=None,
        baseline_volume=None,
    ):
        """Write the report folder in the task process; the Outcome's value is the written file list.

        ``floor``: the user's reporting floor (see :meth:`review`); ``targets``: RECIST target
        lesions the reader chose (numbers of :meth:`review`); ``baseline_dir``: an earlier report
        folder, making this the follow-up report (``baseline_volume``: the baseline CT node, to
        register this CT to it before pairing lesions)."""
        from pastacore.actions.report import ReportInputs, ReportOptions
        from pastacore.candidates import candidates_to_json
        from pastacore.mrml.segmentations import recorded_model, recorded_rejections, recorded_review, recorded_synthetic

        image, labels, names = self.inputs(volume, segmentation, segment_ids)
        floor = floor or {}
        options = ReportOptions(
            formats=tuple(formats or self.formats()),
            lesion_labels=tuple(sorted(names)) or None,
            min_long_axis_mm=floor.get("min_long_axis_mm"),
            min_volume_ml=floor.get("min_volume_ml"),
            min_confidence=floor.get("min_confidence"),
            targets=tuple(targets) if targets else None,
            baseline=str(baseline_dir) if baseline_dir else "",
        )
        options.check()
        options.format_names()
        chosen = self.chosen_segments(segmentation, segment_ids)
        candidates, confirmed = recorded_review(segmentation, chosen)
        inputs = ReportInputs(
            image,
            labels,
            case=self.case(volume, segmentation),
            label_names={str(k): v for k, v in names.items()},
            models=[asdict(m) for m in list(models or ()) + self.segmentation_models(segmentation)],
            candidates=None if candidates is None else candidates_to_json(candidates),
            confirmed={str(k): v for k, v in confirmed.items()},
            rejected={str(k): v for k, v in recorded_rejections(segmentation, chosen).items()},
            attributes={str(n): {a: asdict(v) for a, v in values.items()} for n, values in (attributes or {}).items()},
            model_record=recorded_model(segmentation),
            synthetic={str(n): record for n, record in recorded_synthetic(segmentation, chosen).items()},
        )
        if baseline_volume is not None:
            from pastacore.mrml.volumes import volume_from_node

            require_alive(self.scene, baseline_volume, "baseline CT volume")
            inputs.baseline_image = volume_from_node(baseline_volume)
        return start_action(
            self.runner,
            "report",
            options,
            inputs,
            lambda result, folder: result["written"],
            on_progress,
            on_finished,
            describe=lambda written: f"Wrote {len(written)} file(s) to {out_dir}.",
            output={"out_dir": str(out_dir), "overwrite": bool(overwrite)},
        )

    def compare(self, baseline_dir, followup_dir, baseline_volume=None, followup_volume=None, on_progress=None, on_finished=None):
        """RECIST 1.1 response between two report folders (two time points); with both CT nodes, the
        follow-up CT is registered to the baseline CT first. The Outcome's value is the comparison
        (``report.followup.Comparison.to_dict()``: pairs, sums, response and the rule)."""
        from pastacore.actions.compare import CompareInputs, CompareOptions
        from pastacore.mrml.volumes import volume_from_node

        if not baseline_dir or not followup_dir:
            raise PastaError("choose the baseline and the follow-up report folders")
        if (baseline_volume is None) != (followup_volume is None):
            raise PastaError("choose both CT volumes to register them, or neither")
        inputs = CompareInputs(str(baseline_dir), str(followup_dir))
        if baseline_volume is not None:
            for node in (baseline_volume, followup_volume):
                require_alive(self.scene, node, "CT volume")
            inputs.baseline_image, inputs.followup_image = volume_from_node(baseline_volume), volume_from_node(followup_volume)
        return start_action(
            self.runner,
            "compare",
            CompareOptions(),
            inputs,
            lambda result, folder: result,
            on_progress,
            on_finished,
            describe=lambda value: f"RECIST 1.1 response: {value['rule']}",
        )

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

    def chosen_segments(self, segmentation, segment_ids=None) -> list:
        """The segment ids a report measures, in the order their labels are numbered (1..N)."""
        return list(segment_ids or ()) or self.lesion_segments(segmentation)

    def inputs(self, volume, segmentation, segment_ids=None, quick=False):
        """``(image, labels 1..N, {value: segment name})`` read from the scene; by default the
        lesion segments (:meth:`lesion_segments`), never an organ as a lesion. ``quick``: for a
        measurement on the GUI thread: the CT as a read-only view of the node's voxels, the labels
        straight from the segments' own labelmaps when they lie on the CT's grid."""
        from pastacore.mrml.segmentations import labels_from_segment_images, labels_from_segmentation
        from pastacore.mrml.volumes import volume_from_node

        if volume is None or segmentation is None:
            raise PastaError("choose a CT volume and a segmentation")
        require_alive(self.scene, volume, "CT volume")
        image = volume_from_node(volume, copy=not quick)
        ids = self.chosen_segments(segmentation, segment_ids)
        labels = labels_from_segment_images(segmentation, volume, ids) if quick else None
        if labels is None:
            labels, ids = labels_from_segmentation(self.scene, segmentation, volume, ids)
        content = segmentation.GetSegmentation()
        return image, labels, {n: content.GetSegment(sid).GetName() for n, sid in enumerate(ids, start=1)}

    @staticmethod
    def case(volume, segmentation) -> dict:
        return {"case_id": volume.GetName(), "image_name": volume.GetName(), "segmentation_name": segmentation.GetName()}

    @staticmethod
    def segmentation_models(segmentation) -> list:
        """The model that made ``segmentation`` (recorded by Segment), as report provenance."""
        from pastacore.mrml.segmentations import recorded_model
        from pastacore.report.model import ModelProvenance

        model = ModelProvenance.from_dict(recorded_model(segmentation))
        return [model] if model is not None else []


class EditWatch:
    """Observes a segmentation's segments and measures again after each change."""

    def __init__(self, controller, volume, segmentation, segment_ids, on_measured, defer, floor=None):
        import slicer

        self.floor = floor
        self.controller, self.volume, self.segmentation = controller, volume, segmentation
        self.segment_ids, self.on_measured = segment_ids, on_measured
        self.defer = defer or (lambda function: function())
        content = segmentation.GetSegmentation()
        events = (
            slicer.vtkSegmentation.SegmentModified,
            slicer.vtkSegmentation.RepresentationModified,
            slicer.vtkSegmentation.SegmentAdded,
            slicer.vtkSegmentation.SegmentRemoved,
        )
        self._observed = content
        self._tags = [content.AddObserver(event, self._changed) for event in events]

    def _changed(self, caller=None, event=None):
        if not self.controller._measuring:
            self.defer(self.measure_now)

    def measure_now(self):
        if not self._tags or not alive(self.controller.scene, self.segmentation):
            return
        try:
            table, measurements = self.controller.measure(self.volume, self.segmentation, self.segment_ids, floor=self.floor)
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


def add_attribute_columns(table, lesions) -> None:
    """One text column per attribute of a report's lesions: the predicted option and its probability."""
    import vtk

    names = []
    for lesion in lesions:
        names += [n for n in lesion.attributes if n not in names]
    content = table.GetTable()
    for name in names:
        column = vtk.vtkStringArray()
        column.SetName(name.capitalize())
        for lesion in lesions:
            value = lesion.attributes.get(name)
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
