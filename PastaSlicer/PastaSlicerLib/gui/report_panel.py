"""The hub's report panel: measure the lesions of a segmentation (the table follows Segment
Editor edits), predict report attributes, export the report. Widget wiring only; the work is
:class:`PastaSlicerLib.controllers.ReportController`'s."""

import qt
import slicer
from slicer.i18n import tr as _

DEBOUNCE_MS = 600  # measure again this long after the last Segment Editor change
FOLDER_SETTINGS_KEY = "PASTA/ReportFolder"


class ReportPanel:
    def __init__(self, ui, device):
        from PastaSlicerLib.controllers import ReportController
        from PastaSlicerLib.gui.tasks import taskRunner

        self.ui, self.device = ui, device
        self.controller = ReportController(slicer.mrmlScene, taskRunner())
        self._watch = None
        self._task = None
        self._attributes, self._attributeModels = {}, []
        self._timer = qt.QTimer()
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.connect("timeout()", self._measureAfterEdits)
        ui.reportSegmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)", self._onInputsChanged)
        ui.reportVolumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", self._onInputsChanged)
        ui.reportSegmentsSelector.connect("segmentSelectionChanged(QStringList)", self._onInputsChanged)
        ui.reportHeadPathLineEdit.connect("currentPathChanged(QString)", self._updateButtons)
        ui.reportAutoUpdateCheckBox.connect("toggled(bool)", self._follow)
        ui.computeMeasurementsButton.connect("clicked(bool)", self.onMeasure)
        ui.predictAttributesButton.connect("clicked(bool)", self.onPredictAttributes)
        ui.exportReportButton.connect("clicked(bool)", self.onExport)
        self._formatBoxes = self._addFormatBoxes(ui.reportFormatsWidget.layout())
        self._updateButtons()

    def _addFormatBoxes(self, layout):
        """One check box per report format the core has registered: ``{format name: check box}``."""
        boxes = {}
        for choice in self.controller.format_choices():
            box = qt.QCheckBox(choice["label"])
            box.toolTip = choice["description"]
            box.checked = choice["preselected"]
            box.objectName = f"report{choice['name'].capitalize()}CheckBox"
            layout.addWidget(box)
            boxes[choice["name"]] = box
        return boxes

    # -- state ------------------------------------------------------------------------------
    def _nodes(self):
        return self.ui.reportVolumeSelector.currentNode(), self.ui.reportSegmentationSelector.currentNode()

    def _segmentIds(self):
        return [str(i) for i in self.ui.reportSegmentsSelector.selectedSegmentIDs()] or None

    def _updateButtons(self, *args):
        volume, segmentation = self._nodes()
        ready = volume is not None and segmentation is not None
        busy = self._task is not None and self._task.running
        self.ui.computeMeasurementsButton.enabled = ready
        self.ui.exportReportButton.enabled = ready and not busy
        self.ui.predictAttributesButton.enabled = ready and bool(self.ui.reportHeadPathLineEdit.currentPath) and not busy

    def _onInputsChanged(self, *args):
        volume, segmentation = self._nodes()
        self.ui.reportSegmentsSelector.setCurrentNode(segmentation)
        self._attributes, self._attributeModels = {}, []
        self._follow()
        self._updateButtons()

    def _follow(self, *args):
        """Follow the chosen segmentation's edits once it has a table (and auto-update is on)."""
        if self._watch is not None:
            self._watch.stop()
            self._watch = None
        volume, segmentation = self._nodes()
        if volume and segmentation and self.ui.reportAutoUpdateCheckBox.checked and self.controller.table_of(segmentation):
            self._watch = self.controller.follow_edits(
                volume, segmentation, self._segmentIds(), self._showMeasured, defer=lambda function: self._timer.start()
            )

    def sceneClosing(self):
        if self._task is not None:
            self._task.cancel()
        if self._watch is not None:
            self._watch.stop()
            self._watch = None

    def cleanup(self):
        self._timer.stop()
        self.sceneClosing()

    # -- measure ----------------------------------------------------------------------------
    def onMeasure(self):
        from PastaSlicerLib.gui import callWithErrorDisplay

        volume, segmentation = self._nodes()
        ok, result = callWithErrorDisplay(
            _("Measuring the lesions failed."),
            self.controller.measure,
            volume,
            segmentation,
            self._segmentIds(),
            self._attributes,
        )
        if ok:
            self._showMeasured(*result, None)
            self._follow()

    def _measureAfterEdits(self):
        if self._attributes:
            self._attributes, self._attributeModels = {}, []  # they described the segments before the edit
        if self._watch is not None:
            self._watch.measure_now()

    def _showMeasured(self, table, measurements, error):
        if error:
            self.ui.reportStatusLabel.text = _("Measurement not updated: {error}").format(error=error)
            return
        self.ui.reportTableView.setMRMLTableNode(table)
        text = _("{count} lesion(s) measured.").format(count=len(measurements))
        border = sum(1 for m in measurements if m.touches_border)
        if border:
            text += " " + _("{count} touch the volume border and may be cut.").format(count=border)
        self.ui.reportStatusLabel.text = text

    # -- attributes -------------------------------------------------------------------------
    def onPredictAttributes(self):
        from PastaSlicerLib.gui import callWithErrorDisplay
        from PastaSlicerLib.gui.tasks import RunningTask

        volume, segmentation = self._nodes()
        ok, handle = callWithErrorDisplay(
            _("Predicting the attributes failed."),
            self.controller.predict_attributes,
            volume,
            segmentation,
            self.ui.reportHeadPathLineEdit.currentPath,
            self.ui.reportEncoderPathLineEdit.currentPath or None,
            self._segmentIds(),
            self.device(),
            on_progress=self._showProgress,
            on_finished=self._attributesPredicted,
        )
        if ok:
            self._task = RunningTask(handle)
        self._updateButtons()

    def _attributesPredicted(self, outcome):
        from PastaSlicerLib.gui.tasks import showOutcome

        showOutcome(self.ui.reportStatusLabel, outcome, _("Predicting the attributes failed."))
        if outcome.ok:
            self._attributes, self._attributeModels = outcome.value
            self.onMeasure()
        self._updateButtons()

    def _showProgress(self, fraction, message):
        self.ui.reportStatusLabel.text = f"{int(100 * fraction)}% {message}"

    # -- export -----------------------------------------------------------------------------
    def _formats(self):
        """The checked formats."""
        return [name for name, box in self._formatBoxes.items() if box.checked]

    def onExport(self):
        from PastaSlicerLib.gui import callWithErrorDisplay
        from PastaSlicerLib.gui.tasks import RunningTask

        volume, segmentation = self._nodes()
        formats = self._formats()
        if not formats:
            slicer.util.warningDisplay(_("Choose at least one report format."))
            return
        settings = qt.QSettings()
        folder = qt.QFileDialog.getExistingDirectory(
            slicer.util.mainWindow(), _("Folder for the PASTA report"), str(settings.value(FOLDER_SETTINGS_KEY, ""))
        )
        if not folder:
            return
        settings.setValue(FOLDER_SETTINGS_KEY, folder)
        outDir, exists = self.controller.report_folder(folder, volume.GetName())
        if exists and not slicer.util.confirmOkCancelDisplay(
            _("The folder {folder} holds an earlier report. Replace it?").format(folder=outDir)
        ):
            return
        ok, handle = callWithErrorDisplay(
            _("Exporting the report failed."),
            self.controller.export,
            volume,
            segmentation,
            outDir,
            formats,
            self._segmentIds(),
            self._attributes,
            self._attributeModels,
            exists,
            on_progress=self._showProgress,
            on_finished=lambda outcome: self._exported(outcome, outDir),
        )
        if ok:
            self._task = RunningTask(handle)
        self._updateButtons()

    def _exported(self, outcome, outDir):
        from PastaSlicerLib.gui.tasks import showOutcome

        showOutcome(self.ui.reportStatusLabel, outcome, _("Exporting the report failed."))
        if outcome.ok:
            url = qt.QUrl.fromLocalFile(str(outDir)).toString()
            self.ui.reportStatusLabel.setOpenExternalLinks(True)
            self.ui.reportStatusLabel.text = _('Wrote {count} file(s) to <a href="{url}">{folder}</a>.').format(
                count=len(outcome.value), url=url, folder=outDir
            )
        self._updateButtons()
