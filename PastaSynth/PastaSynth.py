import logging
import pathlib
from typing import Annotated

import vtk

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import *
from slicer.util import VTKObservationMixin
from slicer.parameterNodeWrapper import parameterNodeWrapper, Choice, WithinRange

from slicer import vtkMRMLMarkupsROINode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode


#
# PastaSynth
#


class PastaSynth(ScriptedLoadableModule):
    """Insert synthetic lesions into CT volumes, one at a time or as a training dataset."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("PASTA Synth")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = ["PastaSlicer"]
        self.parent.contributors = ["PASTA for 3D Slicer contributors"]
        self.parent.helpText = _("""
Insert a synthetic lesion of a chosen type and description into an organ of a CT volume:
preview it, then keep it as a new volume with its lesion segment or discard it. The batch
section writes a whole synthetic dataset from a folder of background scans.
Synthetic images are for research use only, not for diagnosis.
""")
        self.parent.acknowledgementText = _("""
PASTA for 3D Slicer is developed by its contributors as an open-source 3D Slicer extension.
""")


#
# PastaSynthParameterNode
#


@parameterNodeWrapper
class PastaSynthParameterNode:
    """
    inputVolume - the CT volume that receives the lesion.
    organSegmentation - organ segmentation; the lesion is placed inside it.
    roi - optional box restricting where the lesion is placed.
    lesionType - one of pastacore.synthesis.lesion_types().
    attributes - free-text description of the lesion (size, shape, enhancement...).
    seed - random seed; the same inputs and seed give the same lesion.
    previewVolume, previewLesion - nodes of the current preview (empty when none).
    backgroundsFolder, caseCount, outputFolder, datasetFormat - batch dataset generation.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    organSegmentation: vtkMRMLSegmentationNode
    roi: vtkMRMLMarkupsROINode
    lesionType: str = ""
    attributes: str = ""
    seed: Annotated[int, WithinRange(0, 2**31 - 1)] = 0
    previewVolume: vtkMRMLScalarVolumeNode
    previewLesion: vtkMRMLSegmentationNode
    backgroundsFolder: pathlib.Path
    caseCount: Annotated[int, WithinRange(1, 100000)] = 100
    outputFolder: pathlib.Path
    datasetFormat: Annotated[str, Choice(["pasta-gen", "nnunet"])] = "pasta-gen"


#
# PastaSynthWidget
#


class PastaSynthWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Collects the inputs and drives PastaSynthLogic: preview / apply / discard, and batch."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._previewTask = None
        self._batchTask = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)

        uiWidget = slicer.util.loadUI(self.resourcePath("UI/PastaSynth.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = PastaSynthLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.previewButton.connect("clicked(bool)", self.onPreviewButton)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.discardButton.connect("clicked(bool)", self.onDiscardButton)
        self.ui.generateButton.connect("clicked(bool)", self.onGenerateButton)
        self.ui.lesionTypeComboBox.connect("currentIndexChanged(int)", self._onLesionTypeChosen)
        self.ui.progressBar.setVisible(False)
        self.ui.batchProgressBar.setVisible(False)

        self._fillLesionTypes()
        self.initializeParameterNode()

    def cleanup(self) -> None:
        for task in (self._previewTask, self._batchTask):
            if task is not None:
                task.cancel()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        if self._previewTask is not None:
            self._previewTask.cancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        from PastaSlicerLib.widgets import selectFirstVolume

        parameterNode = self.logic.getParameterNode()
        selectFirstVolume(parameterNode)
        if not parameterNode.lesionType and self.ui.lesionTypeComboBox.count > 0:
            parameterNode.lesionType = self.ui.lesionTypeComboBox.currentData or ""
        self.setParameterNode(parameterNode)

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGUI)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGUI)
        self._updateGUI()

    # -- GUI state ---------------------------------------------------------------------

    def _fillLesionTypes(self) -> None:
        """Lesion types come from pastacore (data in Resources/), so the combo box is filled
        here instead of through a parameterNodeWrapper Choice."""
        from PastaSlicerLib.widgets import fillComboBox

        try:
            lesionTypes = self.logic.lesionTypes()
        except Exception as exc:
            logging.warning(f"PASTA: cannot list lesion types: {exc}")
            lesionTypes = []
        fillComboBox(self.ui.lesionTypeComboBox, [(t, t, None) for t in lesionTypes],
                     _("(synthesis engine not installed yet)"))

    def _onLesionTypeChosen(self, index) -> None:
        if self._parameterNode:
            self._parameterNode.lesionType = self.ui.lesionTypeComboBox.itemData(index) or ""

    def _updateGUI(self, caller=None, event=None) -> None:
        from PastaSlicerLib.widgets import showComboData

        parameterNode = self._parameterNode
        previewRunning = self._previewTask is not None
        batchRunning = self._batchTask is not None
        if parameterNode:
            showComboData(self.ui.lesionTypeComboBox, parameterNode.lesionType)
        hasPreview = bool(parameterNode and parameterNode.previewVolume)
        self.ui.inputsCollapsibleButton.enabled = not previewRunning

        if previewRunning:
            self.ui.previewButton.text = _("Cancel")
            self.ui.previewButton.enabled = True
        else:
            self.ui.previewButton.text = _("Preview")
            problem = self.logic.previewProblem(parameterNode) if parameterNode else _("No parameter node")
            self.ui.previewButton.toolTip = problem or _("Insert a lesion and show the result without keeping it")
            self.ui.previewButton.enabled = problem is None
        self.ui.applyButton.enabled = hasPreview and not previewRunning
        self.ui.discardButton.enabled = hasPreview and not previewRunning

        if batchRunning:
            self.ui.generateButton.text = _("Cancel")
            self.ui.generateButton.enabled = True
        else:
            self.ui.generateButton.text = _("Generate")
            problem = self.logic.batchProblem(parameterNode) if parameterNode else _("No parameter node")
            self.ui.generateButton.toolTip = problem or _("Write a synthetic dataset to the output folder")
            self.ui.generateButton.enabled = problem is None

    # -- preview / apply / discard -----------------------------------------------------

    def onPreviewButton(self) -> None:
        if self._previewTask is not None:
            self._previewTask.cancel()
            self.ui.previewButton.enabled = False
            self.ui.statusLabel.text = _("Cancelling...")
            return
        from PastaSlicerLib import callWithErrorDisplay

        ok, task = callWithErrorDisplay(
            _("Starting the lesion synthesis failed."), self.logic.startPreview, self._parameterNode,
            onProgress=lambda fraction, message: self._showProgress(self.ui.progressBar, fraction, message),
            onFinished=self._onPreviewFinished)
        if not ok:
            return
        self._previewTask = task
        self.ui.progressBar.value = 0
        self.ui.progressBar.setVisible(True)
        self.ui.statusLabel.text = _("Synthesising...")
        self._updateGUI()

    def _showProgress(self, progressBar, fraction, message) -> None:
        progressBar.value = int(round(100 * fraction))
        if message:
            self.ui.statusLabel.text = message

    def _onPreviewFinished(self, error) -> None:
        from PastaSlicerLib.widgets import showTaskOutcome

        self._previewTask = None
        self.ui.progressBar.setVisible(False)
        showTaskOutcome(self.ui.statusLabel, error, _("Preview ready: Apply keeps it, Discard removes it."),
                        _("Lesion synthesis failed."))
        self._updateGUI()

    def onApplyButton(self) -> None:
        from PastaSlicerLib import callWithErrorDisplay

        ok, volumeNode = callWithErrorDisplay(_("Keeping the preview failed."), self.logic.applyPreview, self._parameterNode)
        if ok and volumeNode is not None:
            self.ui.statusLabel.text = _("Kept as '{name}'.").format(name=volumeNode.GetName())
        self._updateGUI()

    def onDiscardButton(self) -> None:
        self.logic.discardPreview(self._parameterNode)
        self.ui.statusLabel.text = _("Preview discarded.")
        self._updateGUI()

    # -- batch -------------------------------------------------------------------------

    def onGenerateButton(self) -> None:
        if self._batchTask is not None:
            self._batchTask.cancel()
            self.ui.generateButton.enabled = False
            self.ui.batchStatusLabel.text = _("Cancelling...")
            return
        from PastaSlicerLib import callWithErrorDisplay

        ok, task = callWithErrorDisplay(
            _("Starting the dataset generation failed."), self.logic.startBatch, self._parameterNode,
            onProgress=self._onBatchProgress, onFinished=self._onBatchFinished)
        if not ok:
            return
        self._batchTask = task
        self.ui.batchProgressBar.value = 0
        self.ui.batchProgressBar.setVisible(True)
        self.ui.batchStatusLabel.text = _("Generating...")
        self._updateGUI()

    def _onBatchProgress(self, fraction, message) -> None:
        self.ui.batchProgressBar.value = int(round(100 * fraction))
        if message:
            self.ui.batchStatusLabel.text = message

    def _onBatchFinished(self, result, error) -> None:
        from PastaSlicerLib.widgets import showTaskOutcome

        self._batchTask = None
        self.ui.batchProgressBar.setVisible(False)
        showTaskOutcome(self.ui.batchStatusLabel, error,
                        _("Dataset written to {folder}").format(folder=self._parameterNode.outputFolder),
                        _("Dataset generation failed."), cancelledText=_("Cancelled."))
        self._updateGUI()


#
# PastaSynthLogic
#


class PastaSynthLogic(ScriptedLoadableModuleLogic):
    """Reads the inputs from the scene, runs pastacore's lesion synthesis on a worker thread
    and manages the preview nodes. Usable without the widget."""

    ENGINE_MISSING = "synthesis engine not installed yet"

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return PastaSynthParameterNode(super().getParameterNode())

    @classmethod
    def synthesisEngine(cls):
        """The ``pastacore.synthesis`` module; raises PastaError when it is not available."""
        from PastaSlicerLib import importEngine

        return importEngine("pastacore.synthesis", cls.ENGINE_MISSING)

    def lesionTypes(self):
        synthesis = self.synthesisEngine()
        if not hasattr(synthesis, "lesion_types"):
            return []
        return list(synthesis.lesion_types())

    def _function(self, name):
        from pastacore.errors import PastaError

        function = getattr(self.synthesisEngine(), name, None)
        if function is None:
            raise PastaError(self.ENGINE_MISSING)
        return function

    @staticmethod
    def previewProblem(parameterNode):
        """Why a preview cannot start with these inputs, or None."""
        if not parameterNode.inputVolume:
            return _("Select an input volume")
        if not parameterNode.organSegmentation:
            return _("Select the organ segmentation the lesion goes into")
        if not parameterNode.lesionType:
            return _("Select a lesion type")
        return None

    @staticmethod
    def _isSet(path):
        return path is not None and str(path) not in ("", ".")

    @classmethod
    def batchProblem(cls, parameterNode):
        """Why batch generation cannot start with these settings, or None."""
        if not cls._isSet(parameterNode.backgroundsFolder):
            return _("Choose the folder of background scans")
        if not cls._isSet(parameterNode.outputFolder):
            return _("Choose the output folder")
        if not parameterNode.lesionType:
            return _("Select a lesion type")
        return None

    # -- preview -----------------------------------------------------------------------

    def startPreview(self, parameterNode, onProgress=None, onFinished=None):
        """Synthesise a lesion on a worker thread; ``onFinished(error)`` comes after the
        preview nodes were created (GUI thread). Returns the running BackgroundTask."""
        from pastacore.errors import PastaError
        from pastacore.mrml import volumes
        from PastaSlicer import PastaSlicerLogic
        from PastaSlicerLib.worker import BackgroundTask

        synthesize = self._function("synthesize_lesion")
        problem = self.previewProblem(parameterNode)
        if problem:
            raise PastaError(problem)
        volume = volumes.volume_from_node(parameterNode.inputVolume)
        inputs = dict(
            volume=volume,
            lesion_type=parameterNode.lesionType,
            attributes=parameterNode.attributes,
            seed=parameterNode.seed,
            **PastaSlicerLogic.regionInputs(parameterNode.inputVolume, volume, parameterNode.organSegmentation, parameterNode.roi),
        )

        def work(progress, isCancelled):
            return synthesize(**inputs, progress=progress, is_cancelled=isCancelled)

        def finished(result, error):
            if error is None:
                try:
                    self.showPreview(parameterNode, result)
                except Exception as exc:
                    error = exc
            if onFinished is not None:
                onFinished(error)

        task = BackgroundTask(work, onProgress=onProgress, onFinished=finished)
        task.start()
        return task

    def showPreview(self, parameterNode, result) -> None:
        """Replace the preview with ``result``: ``.image`` (volume with the lesion), ``.labels``
        (label volume of the lesion) and ``.segments`` ({value: SegmentInfo})."""
        from pastacore.mrml import volumes
        from pastacore.mrml.segmentations import add_labels_to_segmentation

        self.discardPreview(parameterNode)
        inputVolume = parameterNode.inputVolume
        previewVolume = volumes.node_from_volume(slicer.mrmlScene, result.image, f"{inputVolume.GetName()} PASTA preview")
        previewVolume.CreateDefaultDisplayNodes()
        inputDisplay = inputVolume.GetDisplayNode()
        if inputDisplay is not None and previewVolume.GetDisplayNode() is not None:
            previewVolume.GetDisplayNode().CopyContent(inputDisplay)
        parameterNode.previewVolume = previewVolume
        lesion, _added = add_labels_to_segmentation(
            slicer.mrmlScene, result.labels, result.segments, previewVolume, name=f"{inputVolume.GetName()} PASTA preview lesion")
        parameterNode.previewLesion = lesion
        slicer.util.setSliceViewerLayers(background=previewVolume, fit=False)

    def applyPreview(self, parameterNode):
        """Keep the preview as a regular volume and segmentation; returns the volume node."""
        from pastacore.errors import PastaError

        volumeNode, lesion = parameterNode.previewVolume, parameterNode.previewLesion
        if not volumeNode:
            raise PastaError("there is no preview to keep; press Preview first")
        base = parameterNode.inputVolume.GetName() if parameterNode.inputVolume else "PASTA"
        volumeNode.SetName(slicer.mrmlScene.GenerateUniqueName(f"{base} synthetic {parameterNode.lesionType}".strip()))
        if lesion:
            lesion.SetName(slicer.mrmlScene.GenerateUniqueName(f"{volumeNode.GetName()} lesion"))
        parameterNode.previewVolume = None
        parameterNode.previewLesion = None
        return volumeNode

    def discardPreview(self, parameterNode) -> None:
        """Remove the preview nodes and show the input volume again."""
        for node in (parameterNode.previewVolume, parameterNode.previewLesion):
            if node:
                slicer.mrmlScene.RemoveNode(node)
        parameterNode.previewVolume = None
        parameterNode.previewLesion = None
        if parameterNode.inputVolume:
            slicer.util.setSliceViewerLayers(background=parameterNode.inputVolume, fit=False)

    # -- batch -------------------------------------------------------------------------

    def startBatch(self, parameterNode, onProgress=None, onFinished=None):
        """Write a synthetic dataset on a worker thread; returns the running BackgroundTask.
        ``onFinished(result, error)`` is called on the GUI thread."""
        from pastacore.errors import PastaError
        from PastaSlicerLib.worker import BackgroundTask

        generate = self._function("generate_dataset")
        problem = self.batchProblem(parameterNode)
        if problem:
            raise PastaError(problem)
        inputs = dict(
            backgrounds_dir=str(parameterNode.backgroundsFolder),
            output_dir=str(parameterNode.outputFolder),
            count=parameterNode.caseCount,
            format=parameterNode.datasetFormat,
            lesion_type=parameterNode.lesionType,
            attributes=parameterNode.attributes,
            seed=parameterNode.seed,
        )

        def work(progress, isCancelled):
            return generate(**inputs, progress=progress, is_cancelled=isCancelled)

        task = BackgroundTask(work, onProgress=onProgress, onFinished=onFinished)
        task.start()
        return task


#
# PastaSynthTest
#


class PastaSynthTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer; checks the preview life cycle without the synthesis engine."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_problems()
        self.setUp()
        self.test_previewApplyDiscard()

    def test_problems(self):
        self.delayDisplay("Missing inputs are explained")
        logic = PastaSynthLogic()
        parameterNode = logic.getParameterNode()
        self.assertIsNotNone(logic.previewProblem(parameterNode))
        self.assertIsNotNone(logic.batchProblem(parameterNode))

    def test_previewApplyDiscard(self):
        self.delayDisplay("Preview, discard, preview again, apply")
        import numpy as np
        from pastacore.mrml import volumes
        from pastacore.terminology import SegmentInfo

        inputNode = slicer.util.addVolumeFromArray(np.zeros((8, 16, 16), dtype=np.int16), name="CT")
        logic = PastaSynthLogic()
        parameterNode = logic.getParameterNode()
        parameterNode.inputVolume = inputNode
        parameterNode.lesionType = "cyst"
        volume = volumes.volume_from_node(inputNode)
        mask = np.zeros(volume.array.shape, dtype=np.uint8)
        mask[3:5, 6:9, 6:9] = 1
        result = type("Result", (), {
            "image": volume.with_array(volume.array + 40 * mask.astype(np.int16)),
            "labels": volume.with_array(mask, is_label=True),
            "segments": {1: SegmentInfo("cyst", "Cyst", (0.2, 0.4, 1.0), "")},
        })()

        logic.showPreview(parameterNode, result)
        preview = parameterNode.previewVolume
        self.assertIsNotNone(preview)
        self.assertEqual(int(slicer.util.arrayFromVolume(preview).max()), 40)
        logic.discardPreview(parameterNode)
        self.assertIsNone(parameterNode.previewVolume)
        self.assertIsNone(slicer.mrmlScene.GetNodeByID(preview.GetID()))
        self.assertIsNone(parameterNode.previewLesion)

        logic.showPreview(parameterNode, result)
        kept = logic.applyPreview(parameterNode)
        self.assertIsNone(parameterNode.previewVolume)
        self.assertIsNotNone(slicer.mrmlScene.GetNodeByID(kept.GetID()))
        self.assertIn("synthetic", kept.GetName())
        self.delayDisplay("Test passed")
