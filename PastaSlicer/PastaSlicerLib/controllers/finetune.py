"""Fine-tune: volumes with their edited segmentations -> a new model in the model list.

The start is the selected model, or a MIS-FM / PyMIC network (``options.start``: a PyMIC
checkpoint with its config, or a folder the Pretrain action wrote; see :mod:`.pretrain`).

The user picks volumes and the segmentations they corrected (lesion segments by terminology
or name; organ segments optional). Each pair is exported into the job folder as a CT and a
label map (1 = organ, 2 = lesion); the ``finetune`` job trains in the task process, writes
the model folder and imports it into the model store, where the Segment module finds it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pastacore.actions.finetune import FinetuneOptions
from pastacore.errors import PastaError

from .jobs import start_action

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}"


@dataclass
class FinetuneCase:
    volume: object  # vtkMRMLScalarVolumeNode
    segmentation: object  # vtkMRMLSegmentationNode edited by the user
    lesion_segments: tuple = ()  # segment ids of the lesions (empty: those named or coded as lesions)
    organ_segments: tuple = ()  # segment ids of the organ (empty: the model finds the organ itself)


@dataclass
class FinetuneRequest:
    cases: list  # FinetuneCase, trained on
    options: FinetuneOptions  # the new model's name, the start model, steps, device...
    validation: list = field(default_factory=list)  # FinetuneCase, held out: scored before and after
    overwrite: bool = False  # replace an installed model of that name


class FinetuneController:
    def __init__(self, scene, runner, store=None):
        from pastacore.modelstore.store import ModelStore

        self.scene, self.runner = scene, runner
        self.store = store if store is not None else ModelStore()
        self.last_result = None

    # -- choices ----------------------------------------------------------------------------
    @staticmethod
    def lesion_segments(segmentation) -> list:
        """Segment ids named or coded as lesions (only those: an organ is never taught as a lesion)."""
        from pastacore.mrml.segmentations import segment_infos
        from pastacore.terminology import is_lesion

        return [sid for sid, info in segment_infos(segmentation) if is_lesion(info.name, info.terminology)]

    def candidates(self) -> list:
        """``[(volume, segmentation)]``: every segmentation with a lesion segment and the volume it was made on."""
        pairs = []
        for i in range(self.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")):
            segmentation = self.scene.GetNthNodeByClass(i, "vtkMRMLSegmentationNode")
            volume = segmentation.GetNodeReference(segmentation.GetReferenceImageGeometryReferenceRole())
            if volume is not None and volume.IsA("vtkMRMLScalarVolumeNode") and self.lesion_segments(segmentation):
                pairs.append((volume, segmentation))
        return pairs

    def problem(self, request: FinetuneRequest) -> str | None:
        """Why fine-tuning cannot start, or None."""
        if not request.cases:
            return "Pick at least one volume with its edited segmentation"
        for case in list(request.cases) + list(request.validation):
            if case.volume is None or case.volume.GetImageData() is None:
                return "A picked volume has no image data"
            if case.segmentation is None:
                return f"Pick the segmentation of '{case.volume.GetName()}'"
            if not (case.lesion_segments or self.lesion_segments(case.segmentation)):
                return (
                    f"'{case.segmentation.GetName()}' has no lesion segment: name the lesions as lesions "
                    "(e.g. 'Lung tumor') or pick them"
                )
        options = request.options
        if not re.fullmatch(NAME_PATTERN, options.name or ""):
            return "Name the new model (letters, digits, '.', '_' and '-')"
        if not request.overwrite and any(m.name == options.name for m in self.store.list()):
            return f"A model named '{options.name}' is already installed; choose another name"
        if options.steps is not None and options.steps < 1:
            return "Train for at least one step"
        if options.start:
            from .pretrain import StartList

            return StartList.problem(options.start, options.start_config)
        return None

    # -- run --------------------------------------------------------------------------------
    def _export(self, case: FinetuneCase):
        """The case's CT and label map (1 = organ, 2 = lesion): ``(actions.finetune.FinetuneCase, has organ)``."""
        import numpy as np

        from pastacore.actions import finetune
        from pastacore.mrml.segmentations import labels_from_segmentation
        from pastacore.mrml.volumes import volume_from_node

        lesions = list(case.lesion_segments) or self.lesion_segments(case.segmentation)
        organs = [sid for sid in case.organ_segments if sid not in lesions]
        labels, ids = labels_from_segmentation(self.scene, case.segmentation, case.volume, organs + lesions)
        classes = np.zeros(labels.array.shape, np.uint8)
        classes[np.isin(labels.array, [n for n, sid in enumerate(ids, start=1) if sid in organs])] = 1
        classes[np.isin(labels.array, [n for n, sid in enumerate(ids, start=1) if sid in lesions])] = 2
        image = volume_from_node(case.volume)
        return finetune.FinetuneCase(image, labels.with_array(classes, is_label=True), case.volume.GetName()), bool(organs)

    def start(self, request: FinetuneRequest, on_progress=None, on_finished=None):
        """Start fine-tuning; ``on_finished(Outcome)`` carries the installed model."""
        problem = self.problem(request)
        if problem:
            raise PastaError(problem)
        from dataclasses import replace

        from pastacore.actions.finetune import FinetuneInputs
        from pastacore.tasks.exchange import in_job_folder

        cases = [self._export(c) for c in request.cases]
        val_cases = [self._export(c) for c in request.validation]
        with_organ = {has_organ for _, has_organ in cases + val_cases}
        if len(with_organ) > 1:
            raise PastaError("pick organ segments for every case or for none")
        options = replace(
            request.options,
            lesion_labels=(2,),
            organ_labels=(1,) if with_organ == {True} else None,
            checkpoint_every=0,
            # a PyMIC start knows no organ to draw: without organ segments the organ is trained as background
            organ_source="none" if request.options.start and with_organ != {True} else request.options.organ_source,
        )
        inputs = FinetuneInputs([c for c, _ in cases], in_job_folder("model"), [c for c, _ in val_cases])
        return start_action(
            self.runner,
            "finetune",
            options,
            inputs,
            self._installed,
            on_progress,
            on_finished,
            describe=self._describe,
            output={"store": str(self.store.root), "overwrite": bool(request.overwrite)},
        )

    def _installed(self, result, folder):
        self.last_result = result
        return self.store.get(result["written"]["model"])

    def _describe(self, model) -> str:
        rows = (self.last_result or {}).get("validation") or []
        scores = []
        for row in rows:
            before = "n/a" if not row["before"] or row["before"].get("dice") is None else f"{row['before']['dice']:.2f}"
            after = "n/a" if row["after"].get("dice") is None else f"{row['after']['dice']:.2f}"
            scores.append(f"{row['case']} Dice {before} -> {after}")
        return f"Model '{model.name}' is in the model list." + (f" Held out: {'; '.join(scores)}." if scores else "")
