"""PASTA Segment's "Fine-tune" section: the volumes whose segmentations the user corrected
train a new model, in the task process, with progress and cancel; the model then appears in
the module's model list. Fine-tuning starts from the selected model, from a network pretrained
on the user's CTs (the Pretrain group, :mod:`.pretrain_panel`) or from a MIS-FM file. Widget wiring only: the work is
:class:`PastaSlicerLib.controllers.FinetuneController`'s."""

import qt
import slicer
from slicer.i18n import tr as _


class FinetunePanel:
    def __init__(self, ui, startModel, device, onModelAdded):
        """``startModel()`` and ``device()`` read the module's current choices; ``onModelAdded(model)``
        refreshes its model list."""
        from PastaSlicerLib.controllers import FinetuneController
        from PastaSlicerLib.gui.jobs import ActionButton, onSuccess
        from PastaSlicerLib.gui.tasks import taskRunner

        self.ui, self._startModel, self._device, self._onSuccess = ui, startModel, device, onSuccess(onModelAdded)
        self.controller = FinetuneController(slicer.mrmlScene, taskRunner())
        self._pairs = []
        self.action = ActionButton(
            ui.fineTuneButton,
            ui.fineTuneStatusLabel,
            ui.fineTuneProgressBar,
            _("Fine-tune on these segmentations"),
            update=self._updateButton,
        )
        ui.fineTuneCollapsibleButton.connect("contentsCollapsed(bool)", self.refresh)
        ui.fineTuneRefreshButton.connect("clicked(bool)", self.refresh)
        ui.fineTuneCasesList.connect("itemChanged(QListWidgetItem*)", self._updateButton)
        ui.fineTuneNameLineEdit.connect("textChanged(QString)", self._updateButton)
        ui.fineTuneStepsSpinBox.connect("valueChanged(int)", self._updateButton)
        ui.fineTuneButton.connect("clicked(bool)", self.onFineTune)
        ui.fineTuneStartComboBox.connect("currentIndexChanged(int)", self._onStartChosen)
        ui.fineTuneStartPathLineEdit.connect("currentPathChanged(QString)", self._updateButton)
        ui.fineTuneStartConfigPathLineEdit.connect("currentPathChanged(QString)", self._updateButton)
        ui.fineTuneAddStartButton.connect("clicked(bool)", self.onAddStart)
        self.refreshStarts()
        self.refresh()

    # -- where fine-tuning starts: the selected model, a saved start, or a MIS-FM file -------------
    SELECTED_MODEL, MISFM_FILE = "selected", "file"

    def refreshStarts(self, select: str = ""):
        """The start choices: the selected model, every saved start (pretrained or MIS-FM), a MIS-FM file."""
        from .pretrain_panel import startList

        combo = self.ui.fineTuneStartComboBox
        combo.blockSignals(True)
        combo.clear()
        combo.addItem(_("The selected model"), self.SELECTED_MODEL)
        for start in startList().list():
            combo.addItem(start.name, start.name)
        combo.addItem(_("A MIS-FM file..."), self.MISFM_FILE)
        index = combo.findData(select) if select else 0
        combo.setCurrentIndex(max(index, 0))
        combo.blockSignals(False)
        self._onStartChosen()

    def _chosenStart(self):
        """``(path, config)`` of the chosen start ("" for the selected model)."""
        from .pretrain_panel import startList

        data = self.ui.fineTuneStartComboBox.currentData
        if data == self.MISFM_FILE:
            return self.ui.fineTuneStartPathLineEdit.currentPath, self.ui.fineTuneStartConfigPathLineEdit.currentPath
        for start in startList().list():
            if start.name == data:
                return start.path, start.config
        return "", ""

    def _onStartChosen(self, *args):
        file = self.ui.fineTuneStartComboBox.currentData == self.MISFM_FILE
        for widget in (
            self.ui.fineTuneStartFileLabel,
            self.ui.fineTuneStartPathLineEdit,
            self.ui.fineTuneStartConfigLabel,
            self.ui.fineTuneStartConfigPathLineEdit,
            self.ui.fineTuneAddStartButton,
        ):
            widget.setVisible(file)
        self._updateButton()

    def onAddStart(self):
        from PastaSlicerLib.gui import callWithErrorDisplay

        from .pretrain_panel import startList

        ok, start = callWithErrorDisplay(
            _("The file cannot be a start."),
            startList().add,
            self.ui.fineTuneStartPathLineEdit.currentPath,
            self.ui.fineTuneStartConfigPathLineEdit.currentPath,
        )
        if ok:
            self.refreshStarts(select=start.name)

    def refresh(self, *args):
        """List every segmentation with a lesion segment, with the volume it was made on."""
        if self._running():
            return
        self._pairs = self.controller.candidates()
        self.ui.fineTuneCasesList.clear()
        for volume, segmentation in self._pairs:
            item = qt.QListWidgetItem(f"{volume.GetName()}  —  {segmentation.GetName()}")
            item.setFlags(item.flags() | qt.Qt.ItemIsUserCheckable)
            item.setCheckState(qt.Qt.Checked)
            self.ui.fineTuneCasesList.addItem(item)
        self._updateButton()

    def _running(self):
        return self.action.running

    def _request(self):
        from pastacore.actions.finetune import FinetuneOptions
        from PastaSlicerLib.controllers import FinetuneCase, FinetuneRequest

        checked = [
            pair for row, pair in enumerate(self._pairs) if self.ui.fineTuneCasesList.item(row).checkState() == qt.Qt.Checked
        ]
        start, startConfig = self._chosenStart()
        return FinetuneRequest(
            [FinetuneCase(volume, segmentation) for volume, segmentation in checked],
            FinetuneOptions(
                name=self.ui.fineTuneNameLineEdit.text.strip(),
                model="" if start else (self._startModel() or ""),
                start=start,
                start_config=startConfig,
                steps=self.ui.fineTuneStepsSpinBox.value,
                device=self._device(),
            ),
        )

    def _updateButton(self, *args):
        running = self._running()
        problem = None if running else self.controller.problem(self._request())
        self.action.showReadiness(
            problem, _("Train a new model from the chosen model on the checked cases"), runningTip=_("Stop; no model is added")
        )
        self.ui.fineTuneCasesList.enabled = not running
        self.ui.fineTuneStartComboBox.enabled = not running

    def onFineTune(self):
        self.action.runRequest(
            "finetune", self.controller.start, self._request(), _("Fine-tuning failed."), _("Fine-tuning..."), self._onSuccess
        )

    def sceneClosing(self):
        self.action.cancel()
