import logging
from typing import Annotated

import vtk
import qt

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import *
from slicer.util import VTKObservationMixin
from slicer.parameterNodeWrapper import parameterNodeWrapper, Choice

from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode

DEVICE_CHOICES = ["auto", "cuda", "mps", "cpu"]
DEVICE_SETTINGS_KEY = "PASTA/Device"


#
# PastaSlicer
#


class PastaSlicer(ScriptedLoadableModule):
    """The PASTA hub: dependencies, compute device and installed models."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("PASTA")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["PASTA for 3D Slicer contributors"]
        self.parent.helpText = _("""
PASTA hub: install the Python packages PASTA needs, choose the compute device and manage
the installed models used by PASTA Segment and PASTA Synth.
For research use only, not for diagnosis.
See <a href="https://github.com/pasta-slicer/SlicerPASTA">the project page</a> for documentation.
""")
        self.parent.acknowledgementText = _("""
PASTA for 3D Slicer is developed by its contributors as an open-source 3D Slicer extension.
""")


#
# PastaSlicerParameterNode
#


@parameterNodeWrapper
class PastaSlicerParameterNode:
    """
    device - default compute device for PASTA ("auto" picks CUDA, then MPS, then CPU).
    classificationVolume, classificationSegmentation - inputs of the classification section.
    reportVolume, reportSegmentation - inputs of the report section.
    """

    device: Annotated[str, Choice(DEVICE_CHOICES)] = "auto"
    classificationVolume: vtkMRMLScalarVolumeNode
    classificationSegmentation: vtkMRMLSegmentationNode
    reportVolume: vtkMRMLScalarVolumeNode
    reportSegmentation: vtkMRMLSegmentationNode


#
# PastaSlicerWidget
#


class PastaSlicerWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Shows dependency, device and model status; all actions go through PastaSlicerLogic."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._statusShown = False

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)

        uiWidget = slicer.util.loadUI(self.resourcePath("UI/PastaSlicer.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = PastaSlicerLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.installDependenciesButton.connect("clicked(bool)", self.onInstallDependencies)
        self.ui.refreshButton.connect("clicked(bool)", self.refreshStatus)
        self.ui.importModelButton.connect("clicked(bool)", self.onImportModel)
        self.ui.verifyModelButton.connect("clicked(bool)", self.onVerifyModel)
        self.ui.removeModelButton.connect("clicked(bool)", self.onRemoveModel)
        self.ui.modelsTable.connect("itemSelectionChanged()", self._updateModelButtons)
        self.ui.modelsFolderLabel.setOpenExternalLinks(True)

        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()
        if not self._statusShown:
            # Done on first show, not in setup: the device check may import torch (seconds).
            self._statusShown = True
            self.refreshStatus()

    def exit(self) -> None:
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        if self._parameterNode and self._parameterNode.device != self.logic.defaultDevice():
            self.logic.setDefaultDevice(self._parameterNode.device)
            if self._statusShown:
                self._showDevice()

    # -- status ------------------------------------------------------------------------

    def refreshStatus(self) -> None:
        with slicer.util.WaitCursor():
            self._showDependencies()
            self._showDevice()
            self._showModels()

    def _showDependencies(self) -> None:
        table = self.ui.dependenciesTable
        try:
            rows = self.logic.dependencyRows()
        except Exception as exc:
            logging.exception("PASTA: dependency check failed")
            rows = [(_("(dependency check failed)"), "", str(exc), False)]
        table.setRowCount(len(rows))
        for row, (name, required, installed, ok) in enumerate(rows):
            for column, text in enumerate((name, required, installed)):
                item = qt.QTableWidgetItem(text)
                item.setFlags(qt.Qt.ItemIsEnabled | qt.Qt.ItemIsSelectable)
                if not ok:
                    item.setForeground(qt.QBrush(qt.QColor("#d03a2b")))
                table.setItem(row, column, item)
        table.resizeColumnsToContents()
        self.ui.installDependenciesButton.enabled = any(not ok for (_name, _req, _inst, ok) in rows)

    def _showDevice(self) -> None:
        from pastacore.errors import PastaError

        preference = self._parameterNode.device if self._parameterNode else "auto"
        try:
            text = self.logic.deviceDescription(preference)
        except PastaError as exc:
            text = str(exc)
        except Exception as exc:
            logging.exception("PASTA: device check failed")
            text = _("Device check failed: {error}").format(error=exc)
        self.ui.deviceLabel.text = text

    def _showModels(self) -> None:
        table = self.ui.modelsTable
        try:
            models = self.logic.listModels()
            folder = self.logic.modelsFolder()
        except Exception as exc:
            logging.exception("PASTA: listing models failed")
            models, folder = [], None
            self.ui.modelsFolderLabel.text = _("Model store unavailable: {error}").format(error=exc)
        table.setRowCount(len(models))
        for row, model in enumerate(models):
            status = {True: _("verified"), False: _("check failed"), None: _("not checked")}[model.verified]
            for column, text in enumerate((model.name, str(model.version), str(model.task), status)):
                item = qt.QTableWidgetItem(text)
                item.setFlags(qt.Qt.ItemIsEnabled | qt.Qt.ItemIsSelectable)
                item.setToolTip(str(model.path))
                table.setItem(row, column, item)
        table.resizeColumnsToContents()
        if folder is not None:
            url = qt.QUrl.fromLocalFile(folder).toString()
            self.ui.modelsFolderLabel.text = f'<a href="{url}">{folder}</a>'
        self._updateModelButtons()

    def _selectedModelName(self):
        rows = {index.row() for index in self.ui.modelsTable.selectedIndexes()}
        if len(rows) != 1:
            return None
        return self.ui.modelsTable.item(rows.pop(), 0).text()

    def _updateModelButtons(self) -> None:
        selected = self._selectedModelName() is not None
        self.ui.verifyModelButton.enabled = selected
        self.ui.removeModelButton.enabled = selected

    # -- actions -----------------------------------------------------------------------

    def onInstallDependencies(self) -> None:
        from PastaSlicerLib import callWithErrorDisplay

        ok, installed = callWithErrorDisplay(_("Installing Python packages failed."), self.logic.installDependencies)
        self.refreshStatus()
        if ok and installed:
            slicer.util.infoDisplay(_("All Python packages PASTA needs are installed."))

    def onImportModel(self) -> None:
        from PastaSlicerLib import callWithErrorDisplay

        path = qt.QFileDialog.getOpenFileName(
            slicer.util.mainWindow(), _("Import PASTA model weights"), "",
            _("Model files (*.pt *.pth *.ckpt *.safetensors *.zip);;All files (*)"))
        if not path:
            return
        ok, _model = callWithErrorDisplay(_("Importing the model failed."), self.logic.importModel, path)
        self._showModels()

    def onVerifyModel(self) -> None:
        from PastaSlicerLib import callWithErrorDisplay

        name = self._selectedModelName()
        if name is None:
            return
        ok, outcome = callWithErrorDisplay(_("Verifying the model failed."), self.logic.verifyModel, name)
        self._showModels()
        if not ok:
            return
        passed, problems = outcome
        if passed:
            slicer.util.infoDisplay(_("Model '{name}' passed all checks.").format(name=name))
        else:
            slicer.util.warningDisplay(_("Model '{name}' failed its checks.").format(name=name), detailedText="\n".join(problems))

    def onRemoveModel(self) -> None:
        from PastaSlicerLib import callWithErrorDisplay

        name = self._selectedModelName()
        if name is None or not slicer.util.confirmOkCancelDisplay(
                _("Remove model '{name}' and its files from the model store?").format(name=name)):
            return
        callWithErrorDisplay(_("Removing the model failed."), self.logic.removeModel, name)
        self._showModels()


#
# PastaSlicerLogic
#


class PastaSlicerLogic(ScriptedLoadableModuleLogic):
    """Dependency, device and model-store queries for the hub; usable without the widget."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        parameterNode = PastaSlicerParameterNode(super().getParameterNode())
        self.initializeDevice(parameterNode)
        return parameterNode

    @classmethod
    def initializeDevice(cls, parameterNode) -> None:
        """Start a new scene's parameter node from the device saved in the application settings."""
        if not parameterNode.parameterNode.GetParameter("PastaDeviceInitialized"):
            parameterNode.device = cls.defaultDevice()
            parameterNode.parameterNode.SetParameter("PastaDeviceInitialized", "1")

    # -- device ------------------------------------------------------------------------

    @staticmethod
    def defaultDevice() -> str:
        """The device chosen in the hub, the default of the other PASTA modules."""
        value = str(qt.QSettings().value(DEVICE_SETTINGS_KEY, "auto"))
        return value if value in DEVICE_CHOICES else "auto"

    @staticmethod
    def setDefaultDevice(device: str) -> None:
        if device in DEVICE_CHOICES and device != PastaSlicerLogic.defaultDevice():
            qt.QSettings().setValue(DEVICE_SETTINGS_KEY, device)

    def deviceDescription(self, preference: str = "auto") -> str:
        """The device a run with ``preference`` would use; PastaError when it is unavailable."""
        from pastacore import deps

        return deps.torch_device_info(preference).describe()

    # -- inputs shared by PASTA Segment and PASTA Synth ---------------------------------

    @staticmethod
    def regionInputs(volumeNode, volume, organSegmentationNode=None, roiNode=None) -> dict:
        """Where to look, as core arguments read from the scene (GUI thread).

        ``organ_labels``: the organ segments on ``volume``'s grid (values 1..N) or None;
        ``organ_names``: {value: segment name}; ``roi_box``: the ROI's VoxelBox or None.
        """
        from pastacore.mrml.roi import box_from_roi
        from pastacore.mrml.segmentations import labels_from_segmentation

        organLabels, organNames = None, {}
        if organSegmentationNode:
            organLabels, segmentIds = labels_from_segmentation(slicer.mrmlScene, organSegmentationNode, volumeNode)
            segmentation = organSegmentationNode.GetSegmentation()
            organNames = {n + 1: segmentation.GetSegment(sid).GetName() for n, sid in enumerate(segmentIds)}
        roiBox = box_from_roi(roiNode, volume.grid) if roiNode else None
        return dict(organ_labels=organLabels, organ_names=organNames, roi_box=roiBox)

    # -- dependencies ------------------------------------------------------------------

    def dependencyRows(self):
        """``[(name, required, installed or "missing", ok)]`` for every required package."""
        from pastacore import deps

        return [(d.name, d.required, d.installed or _("missing"), bool(d.ok)) for d in deps.dependency_status()]

    def installDependencies(self) -> bool:
        from PastaSlicerLib import dependencies

        return dependencies.ensureDependencies()

    # -- models ------------------------------------------------------------------------

    def modelStore(self):
        from pastacore.models.store import ModelStore

        return ModelStore()

    def modelsFolder(self) -> str:
        from pastacore.models.store import default_store_dir

        return str(default_store_dir())

    def listModels(self):
        return self.modelStore().list()

    def importModel(self, path, name=None):
        return self.modelStore().import_file(path, name=name)

    def verifyModel(self, name):
        return self.modelStore().verify(name)

    def removeModel(self, name) -> None:
        self.modelStore().remove(name)


#
# PastaSlicerTest
#


class PastaSlicerTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (Reload and Test, or ctest ``py_PastaSlicer``)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_dependencyStatus()
        self.setUp()
        self.test_volumeRoundTrip()
        self.setUp()
        self.test_backgroundTask()

    def test_dependencyStatus(self):
        self.delayDisplay("Dependency status")
        rows = PastaSlicerLogic().dependencyRows()
        self.assertTrue(rows)
        for name, required, installed, ok in rows:
            self.assertTrue(name)
            self.assertIsInstance(ok, bool)
        self.assertIn(PastaSlicerLogic.defaultDevice(), DEVICE_CHOICES)

    def test_volumeRoundTrip(self):
        self.delayDisplay("Volume node to pastacore volume and back")
        import numpy as np
        from pastacore.mrml import volumes

        array = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
        node = slicer.util.addVolumeFromArray(array, ijkToRAS=np.array([[-2.0, 0, 0, 10], [0, -2, 0, 20], [0, 0, 3, 30], [0, 0, 0, 1]]))
        volume = volumes.volume_from_node(node)
        self.assertEqual(volume.array.shape, (4, 5, 6))
        np.testing.assert_array_equal(volume.array, array)
        back = volumes.node_from_volume(slicer.mrmlScene, volume, "PASTA round trip")
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(back), array)
        np.testing.assert_allclose(back.GetSpacing(), node.GetSpacing(), atol=1e-6)
        np.testing.assert_allclose(back.GetOrigin(), node.GetOrigin(), atol=1e-6)

    def test_backgroundTask(self):
        self.delayDisplay("Work on a background thread")
        from PastaSlicerLib.worker import BackgroundTask

        seen = {}

        def work(progress, isCancelled):
            progress(0.5, "half")
            return 42

        task = BackgroundTask(work, onProgress=lambda f, m: seen.update(progress=(f, m)),
                              onFinished=lambda result, error: seen.update(result=result, error=error))
        task.start()
        self.assertTrue(task.wait(30))
        self.assertEqual(seen["result"], 42)
        self.assertIsNone(seen["error"])
        self.assertEqual(seen["progress"], (0.5, "half"))
        self.assertFalse(task.running)
        self.delayDisplay("Test passed")
