from typing import Annotated

import qt
import slicer
from slicer import vtkMRMLMarkupsROINode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import *

from PastaSlicerLib.gui.module_base import PastaModule, PastaModuleWidget

FOLDER_SETTINGS = {"backgrounds": "PASTA/SynthBackgroundsFolder", "output": "PASTA/SynthOutputFolder"}


class PastaSynth(PastaModule):
    """Insert synthetic lesions into CT volumes, one at a time or as a training dataset."""

    def __init__(self, parent):
        PastaModule.__init__(self, parent, _("PASTA Synth"), ["PastaSlicer"])
        self.parent.helpText = _("""
Draw a box (ROI), choose or describe a lesion ("3 cm irregular hypodense liver lesion,
ill-defined margin") and press Preview: a synthetic case appears, a new volume with the lesion
and a segmentation holding a copy of the volume's last segmentation plus the lesion (tagged as
synthetic, with its attributes and seed); Apply keeps it, Discard removes all of it. The input
volume is never changed, and nothing outside the box changes. Lung lesions find the
lungs by themselves; other organs need an organ segmentation. The batch section writes a whole
synthetic dataset. Synthetic images are for research use only, not for diagnosis.
""")


@parameterNodeWrapper
class PastaSynthParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    organSegmentation: vtkMRMLSegmentationNode
    roi: vtkMRMLMarkupsROINode
    lesionType: str = ""
    attributes: str = ""
    seed: Annotated[int, WithinRange(0, 2**31 - 1)] = 0
    diffusionSteps: Annotated[int, WithinRange(1, 1000)] = 200
    allowSlow: bool = False
    caseCount: Annotated[int, WithinRange(1, 100000)] = 100
    datasetFormat: Annotated[str, Choice(["pasta-gen", "nnunet"])] = "pasta-gen"


class PastaSynthWidget(PastaModuleWidget):
    """Widget wiring only: the work is PastaSlicerLib.controllers.SynthController's."""

    def setup(self) -> None:
        from PastaSlicerLib.controllers import SynthController
        from PastaSlicerLib.gui.jobs import ActionButton
        from PastaSlicerLib.gui.tasks import taskRunner
        from PastaSlicerLib.gui.widgets import fillComboBox

        self.setupModule("UI/PastaSynth.ui", PastaSynthLogic)
        self.controller = SynthController(slicer.mrmlScene, taskRunner())

        self.ui.previewButton.connect("clicked(bool)", self.onPreviewButton)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.discardButton.connect("clicked(bool)", self.onDiscardButton)
        self.ui.generateButton.connect("clicked(bool)", self.onGenerateButton)
        self.ui.lesionTypeComboBox.connect("currentIndexChanged(int)", self._onLesionTypeChosen)
        settings = qt.QSettings()
        self.ui.backgroundsFolderPathLineEdit.currentPath = str(settings.value(FOLDER_SETTINGS["backgrounds"], ""))
        self.ui.outputFolderPathLineEdit.currentPath = str(settings.value(FOLDER_SETTINGS["output"], ""))
        for edit in (self.ui.backgroundsFolderPathLineEdit, self.ui.outputFolderPathLineEdit):
            edit.connect("currentPathChanged(QString)", self._updateGUI)
        self.previewAction = ActionButton(self.ui.previewButton, self.ui.statusLabel, self.ui.progressBar, _("Preview"))
        self.batchAction = ActionButton(self.ui.generateButton, self.ui.batchStatusLabel, self.ui.batchProgressBar, _("Generate"))
        fillComboBox(
            self.ui.lesionTypeComboBox,
            [(_("(from the description)"), "", None)] + [(t, t, None) for t in self.controller.lesion_types()],
            "",
        )
        fillComboBox(
            self.ui.backendComboBox,
            [
                (
                    b["name"] if b["available"] else _("{name} (unavailable)").format(name=b["name"]),
                    b["name"],
                    b["description"] + ("" if b["available"] else "\n" + (b["reason"] or "")),
                )
                for b in self.controller.backends(allow_slow=True)
            ],
            "procedural",
        )
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.previewAction.cancel()
        self.batchAction.cancel()
        self.removeObservers()

    def onSceneStartClose(self, caller, event) -> None:
        self.previewAction.cancel()
        self.setParameterNode(None)

    def _completeParameterNode(self, parameterNode) -> None:
        from PastaSlicerLib.gui.widgets import selectFirstVolume

        selectFirstVolume(parameterNode)

    def _onLesionTypeChosen(self, index) -> None:
        if self._parameterNode:
            self._parameterNode.lesionType = self.ui.lesionTypeComboBox.itemData(index) or ""

    def _options(self):
        from pastacore.actions.synth import SynthOptions

        p = self._parameterNode
        backend = self.ui.backendComboBox.currentData or "procedural"
        diffusion = {} if backend == "procedural" else {"steps": p.diffusionSteps, "allow_slow": p.allowSlow}
        return SynthOptions(lesion_type=p.lesionType, attributes=p.attributes, seed=p.seed, backend=backend, **diffusion)

    def _request(self):
        from PastaSlicerLib.controllers import SynthRequest

        p = self._parameterNode
        return SynthRequest(p.inputVolume, self._options(), roi=p.roi, organ_segmentation=p.organSegmentation)

    def _datasetRequest(self):
        from pastacore.actions.dataset import dataset_options
        from PastaSlicerLib.controllers import DatasetRequest

        p = self._parameterNode
        options = dataset_options(
            self._options(), count=p.caseCount, format=p.datasetFormat, lesion_types=(p.lesionType,) if p.lesionType else ()
        )
        return DatasetRequest(
            self.ui.backgroundsFolderPathLineEdit.currentPath, self.ui.outputFolderPathLineEdit.currentPath, options
        )

    def _updateGUI(self, caller=None, event=None) -> None:
        from pastacore.errors import PastaError
        from PastaSlicerLib.gui.widgets import showComboData

        p = self._parameterNode
        previewing = self.previewAction.running
        batching = self.batchAction.running
        if p:
            showComboData(self.ui.lesionTypeComboBox, p.lesionType)
        problem = self.controller.problem(self._request()) if p else _("No parameter node")
        if p and (p.attributes or p.lesionType):
            try:
                parsed = self.controller.parsed_attributes(p.attributes, p.lesionType)
                text = f"{parsed['lesion_type']}: " + ", ".join(f"{k} {v}" for k, v in parsed["attributes"].items())
                if parsed["not_understood"]:
                    text += " " + _("(not understood: {words})").format(words=", ".join(parsed["not_understood"]))
            except PastaError as exc:
                text, problem = str(exc), str(exc)
            self.ui.parsedLabel.text = text
        self.ui.inputsCollapsibleButton.enabled = not previewing
        self.previewAction.showReadiness(problem, _("Insert a lesion into a new volume, without keeping it yet"))
        self.ui.applyButton.enabled = self.ui.discardButton.enabled = self.controller.has_preview and not previewing
        self.ui.generateButton.text = _("Cancel") if batching else _("Generate")
        folders = self.ui.backgroundsFolderPathLineEdit.currentPath and self.ui.outputFolderPathLineEdit.currentPath
        self.ui.generateButton.enabled = batching or bool(p and folders)

    # -- preview / apply / discard ------------------------------------------------------
    def onPreviewButton(self) -> None:
        request = self._request()
        choices = {"backend": request.options.backend}
        self.previewAction.runRequest(
            "synth",
            self.controller.preview,
            request,
            _("Lesion synthesis failed."),
            _("Synthesising..."),
            self._onPreviewFinished,
            choices,
        )

    def _onPreviewFinished(self, outcome) -> None:
        if outcome.ok:
            slicer.util.setSliceViewerLayers(background=outcome.value, fit=False)
        self._updateGUI()

    def onApplyButton(self) -> None:
        from PastaSlicerLib.gui import callWithErrorDisplay

        ok, volume = callWithErrorDisplay(_("Keeping the preview failed."), self.controller.apply)
        if ok:
            self.ui.statusLabel.text = _("Kept as '{name}'.").format(name=volume.GetName())
        self._updateGUI()

    def onDiscardButton(self) -> None:
        source = self.controller.source_volume
        self.controller.discard()
        if source is not None and source.GetScene() is slicer.mrmlScene:
            slicer.util.setSliceViewerLayers(background=source, fit=False)
        self.ui.statusLabel.text = _("Preview discarded.")
        self._updateGUI()

    # -- batch ----------------------------------------------------------------------------
    def onGenerateButton(self) -> None:
        if self.batchAction.running:
            self.batchAction.cancel()
            return
        request = self._datasetRequest()
        settings = qt.QSettings()
        settings.setValue(FOLDER_SETTINGS["backgrounds"], request.backgrounds)
        settings.setValue(FOLDER_SETTINGS["output"], request.output)
        choices = {"backend": request.options.synth.backend, "workers": request.options.workers}
        self.batchAction.runRequest(
            "dataset",
            self.controller.start_dataset,
            request,
            _("Dataset generation failed."),
            _("Generating..."),
            done=lambda outcome: self._updateGUI(),
            choices=choices,
        )


class PastaSynthLogic(ScriptedLoadableModuleLogic):
    """The module's parameter node; the work is the SynthController's."""

    def getParameterNode(self):
        return PastaSynthParameterNode(super().getParameterNode())


class PastaSynthTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer: Preview, Discard and Apply on the application's scene (the pytest
    suite runs the same controller on slicer-core, Testing/test_controllers.py)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_previewApplyDiscard()

    def test_previewApplyDiscard(self):
        import numpy as np

        from pastacore.actions.synth import SynthOptions
        from pastacore.tasks import InlineRunner
        from PastaSlicerLib.controllers import SynthController, SynthRequest

        array = np.full((24, 80, 80), -1000, np.int16)
        k, j, i = np.meshgrid(*[np.arange(n) for n in array.shape], indexing="ij")
        array[((i - 40) / 36.0) ** 2 + ((j - 40) / 30.0) ** 2 <= 1] = 40
        for centre in (24, 56):
            array[((i - centre) / 8.0) ** 2 + ((j - 40) / 11.0) ** 2 + ((k - 12) / 8.0) ** 2 <= 1] = -850
        volume = slicer.util.addVolumeFromArray(array, ijkToRAS=np.diag([-3.0, -3.0, 4.0, 1.0]))
        roi = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode")
        roi.SetCenter(-72.0, -120.0, 48.0)  # voxel (24, 40, 12): the centre of the lung at i = 24
        roi.SetSize(36.0, 36.0, 36.0)
        nodes = slicer.mrmlScene.GetNumberOfNodes()
        controller = SynthController(slicer.mrmlScene, InlineRunner())
        request = SynthRequest(volume, SynthOptions(lesion_type="lung_tumor", attributes="12 mm round nodule", seed=3), roi=roi)
        outcomes = []
        controller.preview(request, on_finished=outcomes.append)
        self.assertTrue(outcomes[0].ok, outcomes[0].error)
        controller.discard()
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodes)
        controller.preview(request, on_finished=outcomes.append)
        kept = controller.apply()
        self.assertIn("synthetic", kept.GetName())
        self.delayDisplay("Test passed")
