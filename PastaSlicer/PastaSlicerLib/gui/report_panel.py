"""The hub's report panel: measure the lesions of a segmentation (the table follows Segment
Editor edits), review them (reporting floor, confirm or reject a lesion, RECIST 1.1 targets),
predict report attributes, export the report (a baseline, or a follow-up of an earlier report)
and compare two time points. Widget wiring only; the work is
:class:`PastaSlicerLib.controllers.ReportController`'s."""

import ctk
import qt
import slicer
from slicer.i18n import tr as _

DEBOUNCE_MS = 600  # measure again this long after the last Segment Editor change
FOLDER_SETTINGS_KEY = "PASTA/ReportFolder"
EXPORT_ROW = 9  # the RECIST box goes above the export button of the report form


class ReportPanel:
    def __init__(self, ui, device):
        from PastaSlicerLib.controllers import ReportController
        from PastaSlicerLib.gui.jobs import ActionButton
        from PastaSlicerLib.gui.tasks import taskRunner

        self.ui, self.device = ui, device
        self.controller = ReportController(slicer.mrmlScene, taskRunner())
        self._watch = None
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
        self._addRecistControls()
        self.predictAction = ActionButton(ui.predictAttributesButton, ui.reportStatusLabel, update=self._updateButtons)
        self.exportAction = ActionButton(ui.exportReportButton, ui.reportStatusLabel, update=self._updateButtons)
        self.compareAction = ActionButton(self.compareButton, ui.reportStatusLabel, update=self._updateButtons)
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

    def _addRecistControls(self):
        """Reporting floor, confirm/reject the selected lesions, target lesions, baseline report."""
        box = qt.QGroupBox(_("Review and RECIST 1.1"))
        form = qt.QFormLayout(box)
        self.floorCheckBox = qt.QCheckBox(_("my own limits"))
        self.floorCheckBox.toolTip = _("Lesions under any limit are listed apart; unchecked: the model's reporting floor")
        self.minLongAxisSpinBox = self._spinBox(0.0, 200.0, 1, 3.0, " mm", _("smallest long axis reported"))
        self.minVolumeSpinBox = self._spinBox(0.0, 1000.0, 3, 0.03, " mL", _("smallest volume reported"))
        self.minConfidenceSpinBox = self._spinBox(
            0.0, 1.0, 2, 0.5, "", _("smallest mean lesion probability of a lesion the model proposed")
        )
        floorRow = qt.QHBoxLayout()
        for widget in (self.floorCheckBox, self.minLongAxisSpinBox, self.minVolumeSpinBox, self.minConfidenceSpinBox):
            floorRow.addWidget(widget)
        form.addRow(_("Reporting floor:"), floorRow)
        self.confirmButton = qt.QPushButton(_("Confirm selected"))
        self.confirmButton.toolTip = _("The selected lesions are lesions, as they are (kept with the scene; an edit undoes it)")
        self.rejectButton = qt.QPushButton(_("Reject selected"))
        self.rejectButton.toolTip = _("The selected lesions are not lesions: listed apart, never targets")
        reviewRow = qt.QHBoxLayout()
        reviewRow.addWidget(self.confirmButton)
        reviewRow.addWidget(self.rejectButton)
        form.addRow(_("Lesions:"), reviewRow)
        self.targetsLineEdit = qt.QLineEdit()
        self.targetsLineEdit.placeholderText = _("automatic: the largest measurable, 2 per organ, 5 in all")
        self.targetsLineEdit.toolTip = _("Target lesions of a baseline report: lesion numbers such as 1,3")
        form.addRow(_("Target lesions:"), self.targetsLineEdit)
        self.baselinePathLineEdit = ctk.ctkPathLineEdit()
        self.baselinePathLineEdit.filters = ctk.ctkPathLineEdit.Dirs
        self.baselinePathLineEdit.settingKey = "PASTA/BaselineReportFolder"
        self.baselinePathLineEdit.toolTip = _(
            "An earlier report folder: the export is then its follow-up, with the RECIST response"
        )
        form.addRow(_("Baseline report:"), self.baselinePathLineEdit)
        self.baselineVolumeSelector = slicer.qMRMLNodeComboBox()
        self.baselineVolumeSelector.nodeTypes = ["vtkMRMLScalarVolumeNode"]
        self.baselineVolumeSelector.noneEnabled = True
        self.baselineVolumeSelector.addEnabled = self.baselineVolumeSelector.removeEnabled = False
        self.baselineVolumeSelector.setMRMLScene(slicer.mrmlScene)
        self.baselineVolumeSelector.toolTip = _("The baseline CT, to register this CT to it before pairing lesions (optional)")
        form.addRow(_("Baseline CT:"), self.baselineVolumeSelector)
        self.compareButton = qt.QPushButton(_("Compare with the baseline report…"))
        self.compareButton.toolTip = _("RECIST 1.1 response between the baseline report and a follow-up report folder")
        form.addRow(self.compareButton)
        self.ui.reportCollapsibleButton.layout().insertRow(EXPORT_ROW, box)
        self.floorCheckBox.connect("toggled(bool)", self._onFloorChanged)
        for spin in (self.minLongAxisSpinBox, self.minVolumeSpinBox, self.minConfidenceSpinBox):
            spin.connect("valueChanged(double)", self._onFloorChanged)
        self.targetsLineEdit.connect("editingFinished()", self._onFloorChanged)
        self.confirmButton.connect("clicked(bool)", lambda: self.onReview(confirm=True))
        self.rejectButton.connect("clicked(bool)", lambda: self.onReview(confirm=False))
        self.compareButton.connect("clicked(bool)", self.onCompare)
        self._onFloorChanged()

    @staticmethod
    def _spinBox(low, high, decimals, value, suffix, tip):
        spin = qt.QDoubleSpinBox()
        spin.setRange(low, high)
        spin.decimals = decimals
        spin.singleStep = 10**-decimals if decimals > 1 else 1.0
        spin.value = value
        spin.suffix = suffix
        spin.toolTip = tip
        return spin

    def _floor(self):
        """The user's reporting floor, or None for the model's own."""
        if not self.floorCheckBox.checked:
            return None
        return {
            "min_long_axis_mm": self.minLongAxisSpinBox.value,
            "min_volume_ml": self.minVolumeSpinBox.value,
            "min_confidence": self.minConfidenceSpinBox.value,
        }

    def _targets(self):
        """The lesion numbers typed as targets (None: automatic); a bad entry is said on the status line."""
        text = self.targetsLineEdit.text.strip()
        if not text:
            return None
        try:
            numbers = [int(v) for v in text.replace(" ", "").split(",") if v]
        except ValueError:
            numbers = []
        if not numbers or min(numbers) < 1:
            self.ui.reportStatusLabel.text = _("Target lesions are lesion numbers such as 1,3.")
            return None
        return numbers

    def _onFloorChanged(self, *args):
        for spin in (self.minLongAxisSpinBox, self.minVolumeSpinBox, self.minConfidenceSpinBox):
            spin.enabled = self.floorCheckBox.checked
        volume, segmentation = self._nodes()
        if volume and segmentation and self.controller.table_of(segmentation):
            self.onMeasure()

    def _selectedLesions(self):
        """Lesion numbers of the rows selected in the measurement table."""
        review = getattr(self.controller, "last_review", None)
        if review is None:
            return []
        rows = sorted({index.row() for index in self.ui.reportTableView.selectedIndexes()})
        return [review.lesions[r].number for r in rows if r < len(review.lesions)]

    def onReview(self, confirm):
        from PastaSlicerLib.gui import callWithErrorDisplay

        numbers = self._selectedLesions()
        if not numbers:
            self.ui.reportStatusLabel.text = _("Select the lesions' rows in the table first.")
            return
        volume, segmentation = self._nodes()
        mark = self.controller.confirm if confirm else self.controller.reject
        ok, _review = callWithErrorDisplay(
            _("Marking the lesions failed."), mark, volume, segmentation, numbers, self._segmentIds(), self._floor()
        )
        if ok:
            self.onMeasure()
            done = _("confirmed") if confirm else _("rejected")
            self.ui.reportStatusLabel.text = _("Lesion(s) {numbers} {done}.").format(
                numbers=", ".join(map(str, numbers)), done=done
            )

    # -- state ------------------------------------------------------------------------------
    def _nodes(self):
        return self.ui.reportVolumeSelector.currentNode(), self.ui.reportSegmentationSelector.currentNode()

    def _segmentIds(self):
        return [str(i) for i in self.ui.reportSegmentsSelector.selectedSegmentIDs()] or None

    def _updateButtons(self, *args):
        volume, segmentation = self._nodes()
        ready = volume is not None and segmentation is not None
        actions = [getattr(self, name, None) for name in ("predictAction", "exportAction", "compareAction")]
        running = [a for a in actions if a is not None and a.running]
        self.ui.computeMeasurementsButton.enabled = ready
        self.ui.exportReportButton.enabled = ready and (not running or running == [self.exportAction])
        self.ui.predictAttributesButton.enabled = (
            ready and bool(self.ui.reportHeadPathLineEdit.currentPath) and (not running or running == [self.predictAction])
        )
        if hasattr(self, "compareButton"):
            self.confirmButton.enabled = self.rejectButton.enabled = ready and not running
            self.compareButton.enabled = not running or running == [self.compareAction]

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
                volume,
                segmentation,
                self._segmentIds(),
                self._showMeasured,
                defer=lambda function: self._timer.start(),
                floor=self._floor(),
            )

    def sceneClosing(self):
        for action in (self.predictAction, self.exportAction, self.compareAction):
            action.cancel()
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
            self._floor(),
            self._targets(),
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
        from PastaSlicerLib.gui.jobs import controllerCall

        volume, segmentation = self._nodes()
        head, encoder = self.ui.reportHeadPathLineEdit.currentPath, self.ui.reportEncoderPathLineEdit.currentPath or None
        ids, device = self._segmentIds(), self.device()
        self.predictAction.run(
            "attributes",
            controllerCall(self.controller.predict_attributes, volume, segmentation, head, encoder, ids, device),
            _("Predicting the attributes failed."),
            _("Predicting the attributes..."),
            done=self._attributesPredicted,
        )

    def _attributesPredicted(self, outcome):
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

    def _askFolder(self, title):
        """A folder chosen in a dialog titled ``title`` that opens where the last report went ("" when cancelled)."""
        lastFolder = str(qt.QSettings().value(FOLDER_SETTINGS_KEY, ""))
        return qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), title, lastFolder)

    def onExport(self):
        from PastaSlicerLib.gui.jobs import controllerCall

        volume, segmentation = self._nodes()
        formats = self._formats()
        if not formats:
            slicer.util.warningDisplay(_("Choose at least one report format."))
            return
        folder = self._askFolder(_("Folder for the PASTA report"))
        if not folder:
            return
        qt.QSettings().setValue(FOLDER_SETTINGS_KEY, folder)
        outDir, exists = self.controller.report_folder(folder, volume.GetName())
        if exists and not slicer.util.confirmOkCancelDisplay(
            _("The folder {folder} holds an earlier report. Replace it?").format(folder=outDir)
        ):
            return
        baseline = self.baselinePathLineEdit.currentPath or None
        baselineVolume = self.baselineVolumeSelector.currentNode() if baseline else None
        options = dict(
            floor=self._floor(),
            targets=None if baseline else self._targets(),
            baseline_dir=baseline,
            baseline_volume=baselineVolume,
        )
        ids, attributes, models = self._segmentIds(), self._attributes, self._attributeModels
        self.exportAction.run(
            "report",
            controllerCall(
                self.controller.export, volume, segmentation, outDir, formats, ids, attributes, models, exists, **options
            ),
            _("Exporting the report failed."),
            _("Exporting the report..."),
            done=lambda outcome: self._exported(outcome, outDir),
        )

    def _exported(self, outcome, outDir):
        if outcome.ok:
            url = qt.QUrl.fromLocalFile(str(outDir)).toString()
            self.ui.reportStatusLabel.setOpenExternalLinks(True)
            self.ui.reportStatusLabel.text = _('Wrote {count} file(s) to <a href="{url}">{folder}</a>.').format(
                count=len(outcome.value), url=url, folder=outDir
            )
        self._updateButtons()

    # -- compare ----------------------------------------------------------------------------
    def onCompare(self):
        """RECIST 1.1 response: the baseline report against a follow-up report folder chosen now."""
        from PastaSlicerLib.gui.jobs import controllerCall

        baseline = self.baselinePathLineEdit.currentPath
        if not baseline:
            self.ui.reportStatusLabel.text = _("Choose the baseline report folder first.")
            return
        followup = self._askFolder(_("The follow-up report folder"))
        if not followup:
            return
        volume, _segmentation = self._nodes()
        baselineVolume = self.baselineVolumeSelector.currentNode()
        followupVolume = volume if baselineVolume is not None else None
        self.compareAction.run(
            "compare",
            controllerCall(self.controller.compare, baseline, followup, baselineVolume, followupVolume),
            _("Comparing the reports failed."),
            _("Comparing..."),
            done=self._compared,
        )

    def _compared(self, outcome):
        if outcome.ok:
            self.ui.reportStatusLabel.text = _("RECIST 1.1 response: {rule}").format(rule=outcome.value["rule"])
