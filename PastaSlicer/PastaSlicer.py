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

from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode, vtkMRMLTableNode

DEVICE_CHOICES = ["auto", "cuda", "mps", "cpu"]
DEVICE_SETTINGS_KEY = "PASTA/Device"
REPORT_FORMATS = ("json", "html", "pdf", "seg", "sr")
REPORT_DEBOUNCE_MS = 600  # measure again this long after the last Segment Editor change
REPORT_FOLDER_SETTINGS_KEY = "PASTA/ReportFolder"


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
    reportTable - the lesion measurement table the report section fills.
    """

    device: Annotated[str, Choice(DEVICE_CHOICES)] = "auto"
    classificationVolume: vtkMRMLScalarVolumeNode
    classificationSegmentation: vtkMRMLSegmentationNode
    reportVolume: vtkMRMLScalarVolumeNode
    reportSegmentation: vtkMRMLSegmentationNode
    reportTable: vtkMRMLTableNode


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
        # report panel state
        self._reportTimer = None
        self._observedSegmentation = None
        self._reportMeasured = False
        self._reportBusy = False
        self._editGeneration = 0
        self._attributes = {}
        self._attributeModels = []
        self._attributeTask = None

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
        self._setupReport()

        self.initializeParameterNode()

    def cleanup(self) -> None:
        if self._reportTimer is not None:
            self._reportTimer.stop()
        if self._attributeTask is not None:
            self._attributeTask.cancel()
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
        self._observeSegmentation(None)
        self._reportMeasured = False
        self._clearAttributes()

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

    # -- report panel ------------------------------------------------------------------

    def _setupReport(self) -> None:
        self._reportTimer = qt.QTimer()
        self._reportTimer.setSingleShot(True)
        self._reportTimer.setInterval(REPORT_DEBOUNCE_MS)
        self._reportTimer.connect("timeout()", self._onReportEditsSettled)
        self.ui.reportSegmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onReportSegmentationChanged)
        self.ui.reportVolumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onReportVolumeChanged)
        self.ui.reportSegmentsSelector.connect("segmentSelectionChanged(QStringList)", self.onReportSegmentsChanged)
        self.ui.reportHeadPathLineEdit.connect("currentPathChanged(QString)", self._updateReportButtons)
        self.ui.computeMeasurementsButton.connect("clicked(bool)", self.onComputeMeasurements)
        self.ui.predictAttributesButton.connect("clicked(bool)", self.onPredictAttributes)
        self.ui.exportReportButton.connect("clicked(bool)", self.onExportReport)
        self._updateReportButtons()

    def _reportNodes(self):
        return self.ui.reportVolumeSelector.currentNode(), self.ui.reportSegmentationSelector.currentNode()

    def _selectedSegmentIds(self):
        ids = [str(i) for i in self.ui.reportSegmentsSelector.selectedSegmentIDs()]
        return ids or None  # none checked: every segment

    def _updateReportButtons(self, *args) -> None:
        volumeNode, segmentationNode = self._reportNodes()
        ready = volumeNode is not None and segmentationNode is not None
        self.ui.computeMeasurementsButton.enabled = ready
        self.ui.exportReportButton.enabled = ready
        self.ui.predictAttributesButton.enabled = (ready and bool(self.ui.reportHeadPathLineEdit.currentPath)
                                                   and self._attributeTask is None)

    def onReportVolumeChanged(self, node=None) -> None:
        self._clearAttributes()
        self._reportMeasured = False
        self._updateReportButtons()

    def onReportSegmentationChanged(self, node=None) -> None:
        self.ui.reportSegmentsSelector.setCurrentNode(node)
        self._observeSegmentation(node)
        self._clearAttributes()
        self._reportMeasured = False
        self._updateReportButtons()

    def onReportSegmentsChanged(self, *args) -> None:
        self._clearAttributes()
        self._onSegmentationEdited()

    def _observeSegmentation(self, node) -> None:
        """Watch the segments of ``node`` so the table follows Segment Editor changes."""
        segmentation = node.GetSegmentation() if node is not None else None
        if segmentation is self._observedSegmentation:
            return
        events = self.logic.segmentationEditEvents()
        if self._observedSegmentation is not None:
            for event in events:
                self.removeObserver(self._observedSegmentation, event, self._onSegmentationEdited)
        self._observedSegmentation = segmentation
        if segmentation is not None:
            for event in events:
                self.addObserver(segmentation, event, self._onSegmentationEdited)

    def _onSegmentationEdited(self, caller=None, event=None) -> None:
        if self._reportBusy:
            return  # our own export of the segments, not an edit
        self._editGeneration += 1
        if self._reportMeasured and self.ui.reportAutoUpdateCheckBox.checked:
            self._reportTimer.start()  # (re)start the debounce: measure once the edits settle

    def _onReportEditsSettled(self) -> None:
        if self._reportBusy:
            self._reportTimer.start()
            return
        if self._attributes:
            self._clearAttributes()
            self.ui.reportStatusLabel.text = _("Segments changed: predict the attributes again.")
        self._measure(quiet=True)

    def _clearAttributes(self) -> None:
        self._attributes = {}
        self._attributeModels = []

    def onComputeMeasurements(self) -> None:
        self._measure(quiet=False)

    def _measure(self, quiet: bool) -> None:
        """Fill the table; errors go to a popup, or to the status line while editing (``quiet``)."""
        from PastaSlicerLib import callWithErrorDisplay

        volumeNode, segmentationNode = self._reportNodes()
        if volumeNode is None or segmentationNode is None:
            return
        tableNode = self._parameterNode.reportTable if self._parameterNode else None
        args = (volumeNode, segmentationNode, self._selectedSegmentIds(), tableNode, self._attributes)
        self._reportBusy = True
        try:
            if quiet:
                try:
                    with slicer.util.WaitCursor():
                        tableNode, measurements = self.logic.computeMeasurements(*args)
                except Exception as exc:
                    self.ui.reportStatusLabel.text = _("Measurement not updated: {error}").format(error=exc)
                    return
            else:
                ok, result = callWithErrorDisplay(_("Measuring the lesions failed."), self.logic.computeMeasurements, *args)
                if not ok:
                    return
                tableNode, measurements = result
        finally:
            self._reportBusy = False
        if self._parameterNode:
            self._parameterNode.reportTable = tableNode
        self.ui.reportTableView.setMRMLTableNode(tableNode)
        self._reportMeasured = True
        border = sum(1 for m in measurements if m.touches_border)
        text = _("{count} lesion(s) measured.").format(count=len(measurements))
        if border:
            text += " " + _("{count} touch the volume border and may be cut.").format(count=border)
        if self._attributes:
            text += " " + _("Attributes predicted (research use, not for diagnosis).")
        self.ui.reportStatusLabel.text = text

    def onPredictAttributes(self) -> None:
        from PastaSlicerLib import callWithErrorDisplay
        from PastaSlicerLib.worker import BackgroundTask

        volumeNode, segmentationNode = self._reportNodes()
        headPath = self.ui.reportHeadPathLineEdit.currentPath
        encoderPath = self.ui.reportEncoderPathLineEdit.currentPath or None
        if volumeNode is None or segmentationNode is None or not headPath or self._attributeTask is not None:
            return
        preference = self._parameterNode.device if self._parameterNode else "auto"
        ok, device = callWithErrorDisplay(_("Choosing the compute device failed."), self.logic.torchDevice, preference)
        if not ok:
            return
        ok, model = callWithErrorDisplay(_("Loading the attribute model failed."), self.logic.loadAttributeModel,
                                         headPath, encoderPath, device)
        if not ok:
            return
        self._reportBusy = True
        try:
            ok, inputs = callWithErrorDisplay(_("Reading the CT and segments failed."), self.logic.reportInputs,
                                              volumeNode, segmentationNode, self._selectedSegmentIds())
        finally:
            self._reportBusy = False
        if not ok:
            return
        image, labels, names = inputs
        generation = self._editGeneration

        def work(progress, isCancelled):
            return self.logic.predictAttributes(image, labels, names, model, device, progress, isCancelled)

        def finished(result, error):
            from PastaSlicerLib import showTaskError

            self._attributeTask = None
            self._updateReportButtons()
            if error is not None:
                self.ui.reportStatusLabel.text = ""
                showTaskError(_("Predicting the attributes failed."), error)
                return
            if generation != self._editGeneration:
                self.ui.reportStatusLabel.text = _("The segments changed while predicting: predict the attributes again.")
                return
            _measurements, self._attributes = result
            self._attributeModels = list(model.models)
            self._measure(quiet=False)

        def progress(fraction, message):
            self.ui.reportStatusLabel.text = _("Predicting attributes: {percent}% {message}").format(
                percent=int(100 * fraction), message=message)

        self._attributeTask = BackgroundTask(work, onProgress=progress, onFinished=finished)
        self._updateReportButtons()
        self.ui.reportStatusLabel.text = _("Predicting attributes…")
        self._attributeTask.start()

    def _checkedFormats(self):
        boxes = (self.ui.reportJsonCheckBox, self.ui.reportHtmlCheckBox, self.ui.reportPdfCheckBox,
                 self.ui.reportSegCheckBox, self.ui.reportSrCheckBox)
        return [name for name, box in zip(REPORT_FORMATS, boxes) if box.checked]

    def onExportReport(self) -> None:
        from PastaSlicerLib import callWithErrorDisplay

        volumeNode, segmentationNode = self._reportNodes()
        if volumeNode is None or segmentationNode is None:
            return
        formats = self._checkedFormats()
        if not formats:
            slicer.util.warningDisplay(_("Choose at least one report format."))
            return
        settings = qt.QSettings()
        folder = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), _("Folder for the PASTA report"),
                                                     str(settings.value(REPORT_FOLDER_SETTINGS_KEY, "")))
        if not folder:
            return
        settings.setValue(REPORT_FOLDER_SETTINGS_KEY, folder)
        outDir, exists = self.logic.reportFolder(folder, volumeNode.GetName())
        if exists and not slicer.util.confirmOkCancelDisplay(
                _("The folder {folder} holds an earlier report. Replace it?").format(folder=outDir)):
            return
        self._reportBusy = True
        try:
            ok, written = callWithErrorDisplay(
                _("Exporting the report failed."), self.logic.exportReport, volumeNode, segmentationNode,
                self._selectedSegmentIds(), outDir, formats, self._attributes, self._attributeModels, exists)
        finally:
            self._reportBusy = False
        if ok:
            url = qt.QUrl.fromLocalFile(str(outDir)).toString()
            self.ui.reportStatusLabel.setOpenExternalLinks(True)
            self.ui.reportStatusLabel.text = _('Wrote {count} file(s) to <a href="{url}">{folder}</a>.').format(
                count=len(written), url=url, folder=outDir)


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

    # -- report ------------------------------------------------------------------------

    @staticmethod
    def segmentationEditEvents():
        """vtkSegmentation events that mean the segments changed (Segment Editor edits)."""
        return [slicer.vtkSegmentation.SegmentModified, slicer.vtkSegmentation.RepresentationModified,
                slicer.vtkSegmentation.SegmentAdded, slicer.vtkSegmentation.SegmentRemoved]

    @staticmethod
    def torchDevice(preference: str = "auto") -> str:
        from pastacore import deps

        return deps.torch_device_info(preference).kind

    @staticmethod
    def reportInputs(volumeNode, segmentationNode, segmentIds=None):
        """``(image, labels 1..N, {value: segment name})`` read from the scene (GUI thread)."""
        from pastacore.errors import PastaError
        from pastacore.mrml.segmentations import labels_from_segmentation
        from pastacore.mrml.volumes import volume_from_node

        if volumeNode is None or segmentationNode is None:
            raise PastaError(_("Choose a CT volume and a segmentation."))
        image = volume_from_node(volumeNode)
        labels, ids = labels_from_segmentation(slicer.mrmlScene, segmentationNode, volumeNode, segmentIds or None)
        segmentation = segmentationNode.GetSegmentation()
        names = {n: segmentation.GetSegment(sid).GetName() for n, sid in enumerate(ids, start=1)}
        return image, labels, names

    def computeMeasurements(self, volumeNode, segmentationNode, segmentIds=None, tableNode=None, attributes=None):
        """Measure the lesions into ``tableNode`` (created when None); returns (table node, measurements).

        ``attributes`` ({lesion number: {name: AttributeValue}}) add one column per attribute.
        """
        from pastacore.mrml.tables import update_table_from_segmentation

        if tableNode is not None and tableNode.GetScene() is None:  # deleted by the user
            tableNode = None
        tableNode, measurements = update_table_from_segmentation(slicer.mrmlScene, segmentationNode, volumeNode,
                                                                 tableNode, segment_ids=segmentIds or None)
        if attributes:
            self.addAttributeColumns(tableNode, measurements, attributes)
        return tableNode, measurements

    @staticmethod
    def addAttributeColumns(tableNode, measurements, attributes) -> None:
        """One text column per attribute: the predicted option and its probability."""
        names = []
        for values in attributes.values():
            names += [n for n in values if n not in names]
        table = tableNode.GetTable()
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
            table.AddColumn(column)
            tableNode.SetColumnDescription(column.GetName(), f"predicted {name} (probability); research use only")
        table.Modified()
        tableNode.Modified()

    def loadAttributeModel(self, headPath, encoderPath=None, device="cpu"):
        """The encoder and head for attributes; kept while the files and device stay the same."""
        import os

        from pastacore.classify.predict import load_attribute_model

        def stamp(path):
            return (str(path), os.path.getmtime(path)) if path and os.path.isfile(path) else (str(path), None)

        key = (stamp(headPath), stamp(encoderPath), device)
        if getattr(self, "_attributeModelKey", None) != key:
            self._attributeModel = load_attribute_model(headPath, encoderPath or None, device=device)
            self._attributeModelKey = key
        return self._attributeModel

    @staticmethod
    def predictAttributes(image, labels, names, model, device="cpu", progress=None, cancelled=None):
        """``(measurements, {lesion number: {attribute: AttributeValue}})``; safe off the GUI thread."""
        from pastacore.classify.predict import predict_lesion_attributes
        from pastacore.report.measure import measure_lesions

        measurements = measure_lesions(image, labels, label_names=names)
        return measurements, predict_lesion_attributes(image, labels, measurements, model, device,
                                                       progress=progress, cancelled=cancelled)

    @staticmethod
    def reportFolder(chosen, caseName):
        """``(folder, holds an earlier report)``: the chosen folder when empty, else a subfolder per case."""
        import re
        from pathlib import Path

        chosen = Path(chosen)
        if chosen.is_dir() and not any(chosen.iterdir()):
            return chosen, False
        safe = re.sub(r"[^\w.-]+", "_", caseName or "").strip("_") or "case"
        target = chosen / f"PASTA report {safe}"
        return target, target.is_dir() and any(target.iterdir())

    @classmethod
    def exportReport(cls, volumeNode, segmentationNode, segmentIds, outDir, formats, attributes=None, models=(),
                     overwrite=False, progress=None):
        """Write the report files (``pastacore.report.export``); returns the written file names."""
        import numpy as np

        from pastacore.report.export import make_report, write_report
        from pastacore.report.model import CaseInfo

        image, labels, names = cls.reportInputs(volumeNode, segmentationNode, segmentIds)
        present = [int(v) for v in np.unique(labels.array) if v]  # every chosen segment is a lesion segment
        meta = image.meta or {}
        case = CaseInfo(case_id=volumeNode.GetName(), patient_id=str(meta.get("patient_id", "")),
                        study_uid=str(meta.get("study_uid", "")), series_uid=str(meta.get("series_uid", "")),
                        image_name=volumeNode.GetName(), segmentation_name=segmentationNode.GetName())
        report = make_report(image, labels, case=case, lesion_labels=present or None, label_names=names,
                             attributes=attributes or None, models=list(models or ()))
        return write_report(report, image, labels, outDir, tuple(formats), overwrite=overwrite, progress=progress)


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
        self.setUp()
        self.test_reportPanelLogic()

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

    def test_reportPanelLogic(self):
        self.delayDisplay("Report panel: measurement table, attribute columns, export")
        import tempfile

        import numpy as np
        from pastacore.report.model import AttributeValue

        array = np.full((20, 30, 30), -800, np.int16)
        array[5:12, 10:20, 10:20] = 40
        ijkToRAS = np.diag([-1.0, -1.0, 2.0, 1.0])
        volumeNode = slicer.util.addVolumeFromArray(array, ijkToRAS=ijkToRAS, name="CT")
        labelNode = slicer.util.addVolumeFromArray((array > 0).astype(np.uint8), ijkToRAS=ijkToRAS, name="lesion",
                                                   nodeClassName="vtkMRMLLabelMapVolumeNode")
        segmentationNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
        slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(labelNode, segmentationNode)
        logic = PastaSlicerLogic()
        tableNode, measurements = logic.computeMeasurements(volumeNode, segmentationNode)
        self.assertEqual(tableNode.GetNumberOfRows(), 1)
        self.assertAlmostEqual(measurements[0].volume_ml, 7 * 10 * 10 * 2 / 1000.0, places=3)
        attributes = {1: {"shape": AttributeValue("irregular", {"irregular": 0.8, "round-like": 0.2}, "test")}}
        again, _ = logic.computeMeasurements(volumeNode, segmentationNode, None, tableNode, attributes)
        self.assertIs(again, tableNode)
        self.assertEqual(tableNode.GetTable().GetColumnByName("Shape").GetValue(0), "irregular (80%)")
        with tempfile.TemporaryDirectory() as folder:
            outDir, exists = logic.reportFolder(folder, volumeNode.GetName())
            self.assertFalse(exists)
            written = logic.exportReport(volumeNode, segmentationNode, None, outDir, ["json"], attributes)
            self.assertIn("report.json", written)
        self.delayDisplay("Test passed")
