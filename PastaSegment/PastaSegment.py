import logging
from typing import Annotated

import vtk

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import *
from slicer.util import VTKObservationMixin
from slicer.parameterNodeWrapper import parameterNodeWrapper, Choice

from slicer import vtkMRMLMarkupsROINode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode


#
# PastaSegment
#


class PastaSegment(ScriptedLoadableModule):
    """Tumour segmentation of a CT volume with an installed PASTA model."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("PASTA Segment")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = ["PastaSlicer"]
        self.parent.contributors = ["PASTA for 3D Slicer contributors"]
        self.parent.helpText = _("""
Segment tumours in a CT volume with an installed PASTA model. Optionally restrict the search
to an organ segmentation or a box (ROI). The result is added to a segmentation node that can
be refined in the Segment Editor.
For research use only, not for diagnosis.
""")
        self.parent.acknowledgementText = _("""
PASTA for 3D Slicer is developed by its contributors as an open-source 3D Slicer extension.
""")


#
# PastaSegmentParameterNode
#


@parameterNodeWrapper
class PastaSegmentParameterNode:
    """
    inputVolume - the CT volume to segment.
    modelName - name of an installed model (see the PASTA hub).
    organSegmentation - optional organ segmentation restricting where tumours are searched.
    roi - optional box restricting where tumours are searched.
    device - compute device ("auto" picks CUDA, then MPS, then CPU).
    quality - "fast" (fewer passes) or "accurate".
    outputSegmentation - segmentation that receives the result (created when empty).
    """

    inputVolume: vtkMRMLScalarVolumeNode
    modelName: str = ""
    organSegmentation: vtkMRMLSegmentationNode
    roi: vtkMRMLMarkupsROINode
    device: Annotated[str, Choice(["auto", "cuda", "mps", "cpu"])] = "auto"
    quality: Annotated[str, Choice(["fast", "accurate"])] = "fast"
    outputSegmentation: vtkMRMLSegmentationNode


#
# PastaSegmentWidget
#


class PastaSegmentWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Collects the inputs and starts or cancels PastaSegmentLogic.startSegmentation."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._task = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)

        uiWidget = slicer.util.loadUI(self.resourcePath("UI/PastaSegment.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = PastaSegmentLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.segmentButton.connect("clicked(bool)", self.onSegmentButton)
        self.ui.showInSegmentEditorButton.connect("clicked(bool)", self.onShowInSegmentEditor)
        self.ui.refreshModelsButton.connect("clicked(bool)", self.refreshModels)
        self.ui.modelComboBox.connect("currentIndexChanged(int)", self._onModelChosen)
        self.ui.progressBar.setVisible(False)

        self.refreshModels()
        self.initializeParameterNode()

    def cleanup(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        if self._task is not None:
            self._task.cancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        from PastaSlicerLib.widgets import selectFirstVolume

        parameterNode = self.logic.getParameterNode()
        selectFirstVolume(parameterNode)
        if not parameterNode.modelName and self.ui.modelComboBox.count > 0:
            parameterNode.modelName = self.ui.modelComboBox.currentData or ""
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

    def refreshModels(self) -> None:
        """Fill the model combo box from the model store (not a parameterNodeWrapper binding:
        the choices are only known at run time)."""
        from PastaSlicerLib.widgets import fillComboBox

        try:
            models = self.logic.availableModels()
        except Exception as exc:
            logging.warning(f"PASTA: cannot list models: {exc}")
            models = []
        fillComboBox(self.ui.modelComboBox,
                     [(f"{m.name} ({m.version})", m.name, f"{m.task}: {m.path}") for m in models],
                     _("No model installed: import one in the PASTA module"))
        self._updateGUI()

    def _onModelChosen(self, index) -> None:
        if self._parameterNode:
            self._parameterNode.modelName = self.ui.modelComboBox.itemData(index) or ""

    def _updateGUI(self, caller=None, event=None) -> None:
        from PastaSlicerLib.widgets import showComboData

        running = self._task is not None
        parameterNode = self._parameterNode
        if parameterNode:
            showComboData(self.ui.modelComboBox, parameterNode.modelName)
        self.ui.inputsCollapsibleButton.enabled = not running
        if running:
            self.ui.segmentButton.text = _("Cancel")
            self.ui.segmentButton.toolTip = _("Stop the segmentation; nothing is written")
            self.ui.segmentButton.enabled = True
        else:
            self.ui.segmentButton.text = _("Segment")
            problem = self.logic.inputProblem(parameterNode) if parameterNode else _("No parameter node")
            self.ui.segmentButton.toolTip = problem or _("Segment tumours in the input volume")
            self.ui.segmentButton.enabled = problem is None
        self.ui.showInSegmentEditorButton.enabled = bool(parameterNode and parameterNode.outputSegmentation) and not running

    # -- actions -----------------------------------------------------------------------

    def onSegmentButton(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self.ui.segmentButton.enabled = False
            self.ui.statusLabel.text = _("Cancelling...")
            return
        from PastaSlicerLib import callWithErrorDisplay

        ok, task = callWithErrorDisplay(
            _("Starting the segmentation failed."), self.logic.startSegmentation, self._parameterNode,
            onProgress=self._onProgress, onFinished=self._onFinished)
        if not ok:
            return
        self._task = task
        self.ui.progressBar.value = 0
        self.ui.progressBar.setVisible(True)
        self.ui.statusLabel.text = _("Segmenting...")
        self._updateGUI()

    def _onProgress(self, fraction, message) -> None:
        self.ui.progressBar.value = int(round(100 * fraction))
        if message:
            self.ui.statusLabel.text = message

    def _onFinished(self, segmentCount, error) -> None:
        from PastaSlicerLib.widgets import showTaskOutcome

        self._task = None
        self.ui.progressBar.setVisible(False)
        showTaskOutcome(self.ui.statusLabel, error, _("Done: {count} segment(s) added.").format(count=segmentCount),
                        _("Segmentation failed."))
        self._updateGUI()

    def onShowInSegmentEditor(self) -> None:
        parameterNode = self._parameterNode
        if not parameterNode or not parameterNode.outputSegmentation:
            return
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
        editor.setSegmentationNode(parameterNode.outputSegmentation)
        if parameterNode.inputVolume:
            editor.setSourceVolumeNode(parameterNode.inputVolume)


#
# PastaSegmentLogic
#


class PastaSegmentLogic(ScriptedLoadableModuleLogic):
    """Reads the inputs from the scene, runs pastacore's segmentation on a worker thread and
    writes the result into the output segmentation. Usable without the widget."""

    ENGINE_MISSING = "segmentation engine not installed yet"

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        from PastaSlicer import PastaSlicerLogic

        parameterNode = PastaSegmentParameterNode(super().getParameterNode())
        PastaSlicerLogic.initializeDevice(parameterNode)  # start from the device chosen in the hub
        return parameterNode

    def availableModels(self):
        """Models that can segment; the built-in default comes first, so it is preselected."""
        from pastacore.models.store import ModelStore

        models = [m for m in ModelStore().list() if m.task in ("segmentation", "unknown")]
        return sorted(models, key=lambda m: not m.builtin)

    @staticmethod
    def inputProblem(parameterNode):
        """Why segmentation cannot start with these inputs, or None."""
        if not parameterNode.inputVolume:
            return _("Select an input volume")
        if not parameterNode.modelName:
            return _("Select a model (import models in the PASTA module)")
        return None

    @classmethod
    def segmentationEngine(cls):
        """``pastacore.inference.segment_volume``; raises PastaError when it is not available."""
        from PastaSlicerLib import importEngine

        return importEngine("pastacore.inference", cls.ENGINE_MISSING).segment_volume

    def prepareInputs(self, parameterNode):
        """Read the input nodes (GUI thread) into keyword arguments for ``segment_volume``."""
        from pastacore.errors import PastaError
        from pastacore.mrml import volumes
        from PastaSlicer import PastaSlicerLogic

        problem = self.inputProblem(parameterNode)
        if problem:
            raise PastaError(problem)
        volume = volumes.volume_from_node(parameterNode.inputVolume)
        region = PastaSlicerLogic.regionInputs(parameterNode.inputVolume, volume, parameterNode.organSegmentation, parameterNode.roi)
        return dict(
            volume=volume,
            model=parameterNode.modelName,
            device=parameterNode.device,
            tta=parameterNode.quality == "accurate",
            organ_mask=region["organ_labels"],
            roi_box=region["roi_box"],
        )

    def startSegmentation(self, parameterNode, onProgress=None, onFinished=None):
        """Start segmenting; returns the running BackgroundTask (call ``cancel()`` to stop).

        ``onFinished(segmentCount, error)`` is called on the GUI thread after the result was
        written (or not, when ``error`` is set).
        """
        from PastaSlicerLib import dependencies
        from PastaSlicerLib.worker import BackgroundTask
        from pastacore.errors import PastaError

        segmentVolume = self.segmentationEngine()
        if not dependencies.ensureDependencies():
            raise PastaError("the Python packages PASTA needs are not installed; see the PASTA module")
        inputs = self.prepareInputs(parameterNode)

        def work(progress, isCancelled):
            return segmentVolume(**inputs, progress=progress, is_cancelled=isCancelled)

        def finished(result, error):
            count = 0
            if error is None:
                try:
                    count = self.writeResult(parameterNode, result)
                except Exception as exc:
                    error = exc
            if onFinished is not None:
                onFinished(count, error)

        task = BackgroundTask(work, onProgress=onProgress, onFinished=finished)
        task.start()
        return task

    def writeResult(self, parameterNode, result) -> int:
        """Add ``result.labels`` (label volume on the input grid) as new segments described by
        ``result.segments`` ({value: SegmentInfo}) to the output segmentation, created when
        none is selected. Existing segments are kept. Returns the number of segments added."""
        from pastacore.mrml.segmentations import add_labels_to_segmentation

        inputVolume = parameterNode.inputVolume
        segmentationNode, added = add_labels_to_segmentation(
            slicer.mrmlScene, result.labels, result.segments, inputVolume,
            parameterNode.outputSegmentation or None, name=f"{inputVolume.GetName()} PASTA")
        parameterNode.outputSegmentation = segmentationNode
        return len(added)


#
# PastaSegmentTest
#


class PastaSegmentTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer; checks input preparation and result writing without a model."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_inputProblems()
        self.setUp()
        self.test_inputsAndResult()

    def _volumeNode(self):
        import numpy as np

        array = np.zeros((10, 20, 30), dtype=np.int16)
        return slicer.util.addVolumeFromArray(array, ijkToRAS=np.diag([1.0, 1.0, 2.0, 1.0]))

    def test_inputProblems(self):
        self.delayDisplay("Missing inputs are explained")
        logic = PastaSegmentLogic()
        parameterNode = logic.getParameterNode()
        self.assertIsNotNone(logic.inputProblem(parameterNode))
        parameterNode.inputVolume = self._volumeNode()
        parameterNode.modelName = "any-model"
        self.assertIsNone(logic.inputProblem(parameterNode))

    def test_inputsAndResult(self):
        self.delayDisplay("ROI to index box, label volume to segments")
        import numpy as np
        from pastacore.mrml import volumes
        from pastacore.terminology import SegmentInfo

        volumeNode = self._volumeNode()  # i: 30 voxels of 1 mm, j: 20 of 1 mm, k: 10 of 2 mm
        roi = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode")
        roi.SetCenter(10.0, 5.0, 4.0)
        roi.SetSize(4.0, 2.0, 4.0)
        logic = PastaSegmentLogic()
        parameterNode = logic.getParameterNode()
        parameterNode.inputVolume = volumeNode
        parameterNode.modelName = "any-model"
        parameterNode.roi = roi
        inputs = logic.prepareInputs(parameterNode)
        self.assertEqual(inputs["volume"].array.shape, (10, 20, 30))
        self.assertEqual(tuple(inputs["roi_box"].start), (1, 4, 8))
        self.assertEqual(tuple(inputs["roi_box"].stop), (4, 7, 13))
        self.assertIsNone(inputs["organ_mask"])

        labels = np.zeros((10, 20, 30), dtype=np.uint8)
        labels[2:4, 5:8, 10:12] = 1
        labels[6:8, 10:12, 20:25] = 2
        labelVolume = volumes.volume_from_node(volumeNode).with_array(labels, is_label=True)
        segments = {1: SegmentInfo("tumor", "Tumor", (1.0, 0.0, 0.0), ""), 2: SegmentInfo("cyst", "Cyst", (0.0, 0.0, 1.0), "")}
        result = type("Result", (), {"labels": labelVolume, "segments": segments})()
        self.assertEqual(logic.writeResult(parameterNode, result), 2)
        outputNode = parameterNode.outputSegmentation
        segmentation = outputNode.GetSegmentation()
        self.assertEqual(segmentation.GetNumberOfSegments(), 2)
        tumor = slicer.util.arrayFromSegmentBinaryLabelmap(outputNode, segmentation.GetSegmentIdBySegmentName("Tumor"), volumeNode)
        self.assertEqual(int(tumor.sum()), 2 * 3 * 2)
        # A second run adds to the same segmentation and keeps what is there.
        logic.writeResult(parameterNode, result)
        self.assertIs(parameterNode.outputSegmentation, outputNode)
        self.assertEqual(segmentation.GetNumberOfSegments(), 4)
        self.delayDisplay("Test passed")
