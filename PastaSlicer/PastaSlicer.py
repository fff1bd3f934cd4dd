import logging
from typing import Annotated

import qt
import slicer
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import *

from PastaSlicerLib.gui.module_base import PastaModule, PastaModuleWidget

DEVICE_CHOICES = ["auto", "cuda", "mps", "cpu"]  # pastacore.deps.DEVICES; a parameter-node Choice needs a literal
DEVICE_SETTINGS_KEY = "PASTA/Device"


class PastaSlicer(PastaModule):
    """The PASTA hub: dependencies, compute device, installed models, measurements and reports,
    pathology classification."""

    def __init__(self, parent):
        PastaModule.__init__(self, parent, _("PASTA"), [])
        self.parent.helpText = _("""
PASTA hub: install the Python packages PASTA needs, choose the compute device (or a PASTA server
on your network, with its URL and your token), manage the
installed models used by PASTA Segment and PASTA Synth, measure lesions (the table follows
Segment Editor edits) and export structured reports (JSON, HTML, PDF, DICOM SEG + SR);
classify a pathology image (PNG/TIFF) with PatchTCGA's encoders and overlay the heat map.
For research use only, not for diagnosis.
""")
        slicer.app.connect("startupCompleted()", registerTerminology)


_terminologyRegistered = []


def registerTerminology():
    """Load PASTA's terminology (lesion kinds, organs with laterality) into Slicer's, so the
    terminology widget resolves every segment PASTA makes (once per session)."""
    if _terminologyRegistered:
        return
    try:
        from pastacore.samples import cache_dir
        from pastacore.terminology import register_slicer_contexts

        register_slicer_contexts(slicer.modules.terminologies.logic(), cache_dir() / "terminology")
        _terminologyRegistered.append(True)
    except Exception:
        logging.exception("PASTA: registering the terminology failed")


@parameterNodeWrapper
class PastaSlicerParameterNode:
    device: Annotated[str, Choice(DEVICE_CHOICES)] = "auto"
    reportVolume: vtkMRMLScalarVolumeNode
    reportSegmentation: vtkMRMLSegmentationNode


class PastaSlicerWidget(PastaModuleWidget):
    """Widget wiring only: facts and actions come from PastaSlicerLib.controllers. Leaving the module
    unbinds the parameter node only: the report panel keeps following edits (its table is the segmentation's own)."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._statusShown = False

    def setup(self) -> None:
        from PastaSlicerLib.controllers import HubController
        from PastaSlicerLib.gui.patches_panel import PatchPanel
        from PastaSlicerLib.gui.report_panel import ReportPanel

        self.setupModule("UI/PastaSlicer.ui", PastaSlicerLogic)
        self.hub = HubController()
        self.reportPanel = ReportPanel(self.ui, lambda: self._parameterNode.device if self._parameterNode else "auto")
        self.patchPanel = PatchPanel(self.ui, lambda: self._parameterNode.device if self._parameterNode else "auto")

        self.ui.installDependenciesButton.connect("clicked(bool)", self.onInstallDependencies)
        self.ui.refreshButton.connect("clicked(bool)", self.refreshStatus)
        self.ui.importModelButton.connect("clicked(bool)", self.onImportModel)
        self.ui.verifyModelButton.connect("clicked(bool)", self.onVerifyModel)
        self.ui.removeModelButton.connect("clicked(bool)", self.onRemoveModel)
        self.ui.modelsTable.connect("itemSelectionChanged()", self._updateModelButtons)
        self.ui.modelsFolderLabel.setOpenExternalLinks(True)
        self._setupCompute()
        registerTerminology()  # also when the module was added after start-up
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.reportPanel.cleanup()
        self.patchPanel.sceneClosing()
        self.removeObservers()

    def enter(self) -> None:
        super().enter()
        if not self._statusShown:  # on first show, not in setup: the device check may import torch
            self._statusShown = True
            self.refreshStatus()

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)
        self.reportPanel.sceneClosing()
        self.patchPanel.sceneClosing()

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        if self._parameterNode and self._parameterNode.device != self.logic.defaultDevice():
            self.logic.setDefaultDevice(self._parameterNode.device)
            if self._statusShown:
                self._showDevice()

    # -- status -----------------------------------------------------------------------------
    def refreshStatus(self) -> None:
        with slicer.util.WaitCursor():
            self._showDependencies()
            self._showDevice()
            self._showModels()
            self.patchPanel.refreshEncoders()

    def _fillTable(self, table, rows, bad=lambda row: False, tooltip=lambda row: "") -> None:
        table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, text in enumerate(row.texts):
                item = qt.QTableWidgetItem(str(text))
                item.setFlags(qt.Qt.ItemIsEnabled | qt.Qt.ItemIsSelectable)
                item.setToolTip(tooltip(row))
                if bad(row):
                    item.setForeground(qt.QBrush(qt.QColor("#d03a2b")))
                table.setItem(r, c, item)
        table.resizeColumnsToContents()

    def _showDependencies(self) -> None:
        """The base packages (needed for everything) and each group's, installed when an action first needs them."""
        groups = {name: (purpose, actions) for name, purpose, actions in self.hub.requirement_groups()}
        rows = []
        for name, required, installed, ok, purpose, group in self.hub.dependency_rows():
            if group:
                what, actions = groups[group]
                needed = _("{group}: {actions} (installed when first used)").format(group=group, actions=", ".join(actions))
                note = f"{what} {purpose}".strip()
            else:
                needed, note = _("every action"), purpose
            rows.append(_Row((name, required, installed, needed), ok or bool(group), note))
        self._fillTable(self.ui.dependenciesTable, rows, bad=lambda row: not row.ok, tooltip=lambda row: row.note)
        self.ui.installDependenciesButton.enabled = any(not row.ok for row in rows)

    def _showDevice(self) -> None:
        from pastacore.errors import PastaError

        try:
            self.ui.deviceLabel.text = self.hub.device_text(self._parameterNode.device if self._parameterNode else "auto")
        except PastaError as exc:
            self.ui.deviceLabel.text = str(exc)

    def _showModels(self) -> None:
        status = {True: _("verified"), False: _("check failed"), None: _("not checked")}
        rows = [
            _Row(
                (m.name, m.version, m.task, _("damaged: {why}").format(why=m.damaged) if m.damaged else status[m.verified]),
                not m.damaged,
                str(m.path),
            )
            for m in self.hub.installed_models()
        ]
        self._fillTable(self.ui.modelsTable, rows, bad=lambda row: not row.ok, tooltip=lambda row: row.note)
        folder = self.hub.models_folder()
        self.ui.modelsFolderLabel.text = f'<a href="{qt.QUrl.fromLocalFile(folder).toString()}">{folder}</a>'
        self._updateModelButtons()

    def _selectedModelName(self):
        rows = {index.row() for index in self.ui.modelsTable.selectedIndexes()}
        return self.ui.modelsTable.item(rows.pop(), 0).text() if len(rows) == 1 else None

    def _updateModelButtons(self) -> None:
        self.ui.verifyModelButton.enabled = self.ui.removeModelButton.enabled = self._selectedModelName() is not None

    # -- where PASTA computes ---------------------------------------------------------------
    def _setupCompute(self) -> None:
        """This computer or a PASTA server: kept in the application settings (the token too), never in a scene."""
        from PastaSlicerLib.gui.tasks import computeSetting

        for value, label in self.hub.compute_choices():
            self.ui.computeComboBox.addItem(_(label), value)
        setting = computeSetting()
        self.ui.computeComboBox.setCurrentIndex(max(0, self.ui.computeComboBox.findData(setting.where)))
        self.ui.serverUrlLineEdit.text = setting.url
        self.ui.serverTokenLineEdit.text = setting.token
        self.ui.computeComboBox.connect("currentIndexChanged(int)", self._onComputeChanged)
        self.ui.serverUrlLineEdit.connect("editingFinished()", self._onComputeChanged)
        self.ui.serverTokenLineEdit.connect("editingFinished()", self._onComputeChanged)
        self.ui.testServerButton.connect("clicked(bool)", self.onTestServer)
        self._showComputeControls()

    def _computeFromGui(self):
        from PastaSlicerLib.controllers.compute import ComputeSetting

        return ComputeSetting(
            str(self.ui.computeComboBox.currentData or "local"),
            self.ui.serverUrlLineEdit.text.strip(),
            self.ui.serverTokenLineEdit.text.strip(),
        )

    def _onComputeChanged(self, *args) -> None:
        from PastaSlicerLib.gui.tasks import saveComputeSetting

        saveComputeSetting(self._computeFromGui())
        self._showComputeControls()

    def _showComputeControls(self) -> None:
        remote = self._computeFromGui().where == "server"
        for widget in (self.ui.serverUrlLineEdit, self.ui.serverTokenLineEdit, self.ui.testServerButton):
            widget.enabled = remote
        if not remote:
            self.ui.serverStatusLabel.text = ""

    def onTestServer(self) -> None:
        from pastacore.errors import PastaError

        self._onComputeChanged()
        setting = self._computeFromGui()
        with slicer.util.WaitCursor():
            try:
                self.ui.serverStatusLabel.text = self.hub.test_server(setting.url, setting.token)
            except PastaError as exc:
                self.ui.serverStatusLabel.text = str(exc)

    # -- actions ----------------------------------------------------------------------------
    def onInstallDependencies(self) -> None:
        from PastaSlicerLib.gui import callWithErrorDisplay
        from PastaSlicerLib.gui.dependencies import ensureDependencies

        ok, installed = callWithErrorDisplay(_("Installing Python packages failed."), ensureDependencies)
        self.refreshStatus()
        if ok and installed:
            slicer.util.infoDisplay(_("All Python packages PASTA needs are installed."))

    def onImportModel(self) -> None:
        from PastaSlicerLib.gui import callWithErrorDisplay

        patterns = " ".join(f"*{suffix}" for suffix in self.hub.weight_suffixes())
        path = qt.QFileDialog.getOpenFileName(
            slicer.util.mainWindow(),
            _("Import PASTA model weights"),
            "",
            _("Model files ({patterns});;All files (*)").format(patterns=patterns),
        )
        if path:
            callWithErrorDisplay(_("Importing the model failed."), self.hub.import_model, path)
            self._showModels()

    def onVerifyModel(self) -> None:
        from PastaSlicerLib.gui import callWithErrorDisplay

        name = self._selectedModelName()
        if name is None:
            return
        ok, outcome = callWithErrorDisplay(_("Verifying the model failed."), self.hub.verify_model, name)
        if ok and outcome[0]:
            slicer.util.infoDisplay(_("Model '{name}' passed all checks.").format(name=name))
        elif ok:
            slicer.util.warningDisplay(
                _("Model '{name}' failed its checks.").format(name=name), detailedText="\n".join(outcome[1])
            )

    def onRemoveModel(self) -> None:
        from PastaSlicerLib.gui import callWithErrorDisplay

        name = self._selectedModelName()
        if name is not None and slicer.util.confirmOkCancelDisplay(
            _("Remove model '{name}' and its files from the model store?").format(name=name)
        ):
            callWithErrorDisplay(_("Removing the model failed."), self.hub.remove_model, name)
            self._showModels()


class _Row:
    def __init__(self, texts, ok, note):
        self.texts, self.ok, self.note = texts, ok, note


class PastaSlicerLogic(ScriptedLoadableModuleLogic):
    """The hub's parameter node and the device chosen for all PASTA modules."""

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

    @staticmethod
    def defaultDevice() -> str:
        value = str(qt.QSettings().value(DEVICE_SETTINGS_KEY, "auto"))
        return value if value in DEVICE_CHOICES else "auto"

    @staticmethod
    def setDefaultDevice(device: str) -> None:
        if device in DEVICE_CHOICES and device != PastaSlicerLogic.defaultDevice():
            qt.QSettings().setValue(DEVICE_SETTINGS_KEY, device)


class PastaSlicerTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (Reload and Test, or ctest ``py_PastaSlicer``); the pytest suite runs the
    controllers on slicer-core (Testing/test_controllers.py)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_hubAndTerminology()
        self.setUp()
        self.test_measureFollowsEdits()

    def test_hubAndTerminology(self):
        from pastacore.terminology import segment_info
        from PastaSlicerLib.controllers import HubController

        rows = HubController().dependency_rows()
        self.assertTrue(rows and all(isinstance(row[3], bool) for row in rows))
        self.assertIn(PastaSlicerLogic.defaultDevice(), DEVICE_CHOICES)
        registerTerminology()
        entry = slicer.vtkSlicerTerminologyEntry()
        logic = slicer.modules.terminologies.logic()
        self.assertTrue(logic.DeserializeTerminologyEntry(segment_info("tumor@left lung").terminology, entry))
        self.delayDisplay("Test passed")

    def test_measureFollowsEdits(self):
        import numpy as np

        from pastacore.mrml.segmentations import add_labels_to_segmentation
        from pastacore.mrml.volumes import volume_from_node
        from pastacore.tasks import InlineRunner
        from pastacore.terminology import segment_info
        from PastaSlicerLib.controllers import ReportController

        array = np.full((20, 30, 30), -800, np.int16)
        array[5:12, 10:20, 10:20] = 40
        volume = slicer.util.addVolumeFromArray(array, ijkToRAS=np.diag([-1.0, -1.0, 2.0, 1.0]), name="CT")
        image = volume_from_node(volume)
        segmentation, _added = add_labels_to_segmentation(
            slicer.mrmlScene,
            image.with_array((array > 0).astype(np.uint8), is_label=True),
            {1: segment_info("tumor@lung")},
            volume,
        )
        controller = ReportController(slicer.mrmlScene, InlineRunner())
        table, measurements = controller.measure(volume, segmentation)
        self.assertAlmostEqual(measurements[0].volume_ml, 7 * 10 * 10 * 2 / 1000.0, places=3)
        watch = controller.follow_edits(volume, segmentation)
        second = np.zeros_like(array, dtype=np.uint8)
        second[14:16, 2:5, 2:5] = 1
        add_labels_to_segmentation(
            slicer.mrmlScene, image.with_array(second, is_label=True), {1: segment_info("nodule@lung")}, volume, segmentation
        )
        self.assertEqual(table.GetNumberOfRows(), 2)
        watch.stop()
        self.delayDisplay("Test passed")
