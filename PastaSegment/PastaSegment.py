from typing import Annotated

import slicer
from slicer import vtkMRMLMarkupsROINode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import *

from PastaSlicerLib.gui.module_base import PastaModule, PastaModuleWidget


class PastaSegment(PastaModule):
    """One-click organ and lesion segmentation of a CT volume with an installed PASTA model."""

    def __init__(self, parent):
        PastaModule.__init__(self, parent, _("PASTA Segment"), ["PastaSlicer"])
        self.parent.helpText = _("""
Segment organs and lesions in a CT volume with an installed PASTA model. By default a model
searches its own organ (the built-in lung model: the lungs); an organ segmentation or a box
(ROI) restricts the search instead. The result is a new segmentation node, placed in the
volume's study, ready for the Segment Editor. A model that takes a text prompt (a multi-path gCIS
model) segments what the prompt beside it names ("liver tumor"): pick a known prompt or type one.
"Fine-tune" trains a new model from the chosen one
on the volumes whose segmentations you corrected. For research use only, not for diagnosis.
""")


@parameterNodeWrapper
class PastaSegmentParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    modelName: str = ""
    prompt: str = ""
    organSegmentation: vtkMRMLSegmentationNode
    roi: vtkMRMLMarkupsROINode
    wholeBody: bool = False
    device: Annotated[str, Choice(["auto", "cuda", "mps", "cpu"])] = "auto"
    quality: Annotated[str, Choice(["fast", "accurate"])] = "fast"
    outputSegmentation: vtkMRMLSegmentationNode


class PastaSegmentWidget(PastaModuleWidget):
    """Widget wiring only: the work is PastaSlicerLib.controllers.SegmentController's."""

    def setup(self) -> None:
        from PastaSegmentLib.finetune_panel import FinetunePanel
        from PastaSegmentLib.pretrain_panel import PretrainPanel
        from PastaSlicerLib.controllers import HubController, SegmentController
        from PastaSlicerLib.gui.jobs import ActionButton
        from PastaSlicerLib.gui.tasks import taskRunner

        self.setupModule("UI/PastaSegment.ui", PastaSegmentLogic)
        self.hub = HubController()
        self.controller = SegmentController(slicer.mrmlScene, taskRunner())

        self.ui.segmentButton.connect("clicked(bool)", self.onSegmentButton)
        self.ui.showInSegmentEditorButton.connect("clicked(bool)", self.onShowInSegmentEditor)
        self.ui.refreshModelsButton.connect("clicked(bool)", self.refreshModels)
        self.ui.modelComboBox.connect("currentIndexChanged(int)", self._onModelChosen)
        self.segmentAction = ActionButton(self.ui.segmentButton, self.ui.statusLabel, self.ui.progressBar, _("Segment"))
        self.ui.promptComboBox.connect("editTextChanged(QString)", self._onPromptTyped)
        self.refreshModels()
        self.initializeParameterNode()
        self.fineTune = FinetunePanel(
            self.ui,
            startModel=lambda: self._parameterNode.modelName if self._parameterNode else "",
            device=lambda: self._parameterNode.device if self._parameterNode else "auto",
            onModelAdded=lambda model: self.refreshModels(),
        )
        self.pretrain = PretrainPanel(
            self.ui,
            device=lambda: self._parameterNode.device if self._parameterNode else "auto",
            onStartAdded=lambda start: self.fineTune.refreshStarts(select=start.name),
        )

    def cleanup(self) -> None:
        self.segmentAction.cancel()
        self.fineTune.sceneClosing()
        self.pretrain.cancel()
        self.removeObservers()

    def onSceneStartClose(self, caller, event) -> None:
        self.segmentAction.cancel()
        self.fineTune.sceneClosing()
        self.setParameterNode(None)

    def _completeParameterNode(self, parameterNode) -> None:
        from PastaSlicerLib.gui.widgets import selectFirstVolume

        selectFirstVolume(parameterNode)
        self._checkModel(parameterNode)

    def _checkModel(self, parameterNode) -> None:
        """A model name that is not installed (removed in the hub, a scene from another machine)
        falls back to the default model, and the status line says so."""
        name, note = self.hub.usable_model(parameterNode.modelName)
        if name != parameterNode.modelName:
            parameterNode.modelName = name
        if note:
            self.ui.statusLabel.text = note

    def _parameterNodeShown(self) -> None:
        self._offerPrompts()
        self._updateGUI()

    def refreshModels(self) -> None:
        """The model choices come from the model store (the built-in model first)."""
        from PastaSlicerLib.gui.widgets import fillComboBox

        models = self.hub.models(task="segmentation")
        fillComboBox(
            self.ui.modelComboBox,
            [(f"{m.name} ({m.version})", m.name, f"{m.task}: {m.path}") for m in models],
            _("No model installed: import one in the PASTA module"),
        )
        if self._parameterNode:
            self._checkModel(self._parameterNode)
        self._offerPrompts()
        self._updateGUI()

    def _onModelChosen(self, index) -> None:
        if self._parameterNode:
            self._parameterNode.modelName = self.ui.modelComboBox.itemData(index) or ""
        self._offerPrompts()

    def _offerPrompts(self) -> None:
        """The prompt field: enabled for models that take a text prompt, offering their known prompts."""
        model = self._parameterNode.modelName if self._parameterNode else ""
        known = self.controller.prompts(model)
        combo = self.ui.promptComboBox
        typed = self._parameterNode.prompt if self._parameterNode else ""
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        for text in known or []:
            combo.addItem(text)
        combo.setEditText(typed if known is not None else "")
        combo.blockSignals(wasBlocked)
        combo.enabled = known is not None
        combo.lineEdit().placeholderText = (
            _("What to segment, e.g. liver tumor") if known is not None else _("No prompt: this model has one task")
        )

    def _onPromptTyped(self, text) -> None:
        if self._parameterNode and self._parameterNode.prompt != text:
            self._parameterNode.prompt = text

    def _request(self):
        from pastacore.actions.segment import SegmentOptions
        from PastaSlicerLib.controllers import SegmentRequest

        p = self._parameterNode
        takesPrompt = self.controller.prompts(p.modelName) is not None
        options = SegmentOptions(
            model=p.modelName,
            prompt=p.prompt.strip() if takesPrompt else "",
            organ="body" if p.wholeBody else "",
            device=p.device,
            tta=p.quality == "accurate",
        )
        return SegmentRequest(p.inputVolume, options, p.organSegmentation, roi=p.roi, output=p.outputSegmentation)

    def _updateGUI(self, caller=None, event=None) -> None:
        from PastaSlicerLib.gui.widgets import showComboData

        running = self.segmentAction.running
        p = self._parameterNode
        if p:
            showComboData(self.ui.modelComboBox, p.modelName)
        self.ui.inputsCollapsibleButton.enabled = not running
        problem = self.controller.problem(self._request()) if p else _("No parameter node")
        self.ui.regionLabel.text = self.controller.region_text(self._request()) if p and not problem else ""
        self.segmentAction.showReadiness(problem, _("Segment the volume"), runningTip=_("Stop; nothing is added"))
        self.ui.showInSegmentEditorButton.enabled = bool(p and p.outputSegmentation) and not running

    def onSegmentButton(self) -> None:
        request = self._request()
        choices = {"groups": self.hub.model_groups(request.options.model)}
        self.segmentAction.runRequest(
            "segment", self.controller.start, request, _("Segmentation failed."), _("Segmenting..."), self._onSegmented, choices
        )

    def _onSegmented(self, outcome) -> None:
        if outcome.ok and self._parameterNode:
            self._parameterNode.outputSegmentation = outcome.value
        self._updateGUI()

    def onShowInSegmentEditor(self) -> None:
        p = self._parameterNode
        if not p or not p.outputSegmentation:
            return
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
        editor.setSegmentationNode(p.outputSegmentation)
        if p.inputVolume:
            editor.setSourceVolumeNode(p.inputVolume)


class PastaSegmentLogic(ScriptedLoadableModuleLogic):
    """The module's parameter node; the work is the SegmentController's."""

    def getParameterNode(self):
        from PastaSlicer import PastaSlicerLogic

        parameterNode = PastaSegmentParameterNode(super().getParameterNode())
        PastaSlicerLogic.initializeDevice(parameterNode)  # start from the device chosen in the hub
        return parameterNode


class PastaSegmentTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer: the controller on the application's scene (the pytest suite runs the
    same controller on slicer-core, Testing/test_controllers.py)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_problemsAndRegion()

    def test_problemsAndRegion(self):
        import numpy as np

        from pastacore.actions.segment import SegmentOptions
        from pastacore.tasks import InlineRunner
        from PastaSlicerLib.controllers import SegmentController, SegmentRequest

        controller = SegmentController(slicer.mrmlScene, InlineRunner())
        self.assertEqual(controller.problem(SegmentRequest(None)), "Select a CT volume")
        volume = slicer.util.addVolumeFromArray(np.zeros((10, 20, 30), dtype=np.int16))
        self.assertIsNone(controller.problem(SegmentRequest(volume)))
        self.assertIn("lungs", controller.region_text(SegmentRequest(volume)))
        self.assertEqual(controller.region_text(SegmentRequest(volume, SegmentOptions(organ="body"))), "in the whole body")
        self.delayDisplay("Test passed")
