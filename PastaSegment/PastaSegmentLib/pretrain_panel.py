"""PASTA Segment's "Pretrain on unlabelled CTs (VolF)" group, inside the Fine-tune section: a
folder of CTs pretrains a MIS-FM network in the task process, with progress and cancel; the
result joins the Fine-tune section's "Start from" list. Widget wiring only: the work is
:class:`PastaSlicerLib.controllers.PretrainController`'s."""

from slicer.i18n import tr as _


def startList():
    """The user's fine-tuning starts (kept beside the model store)."""
    from pastacore.modelstore.store import ModelStore
    from PastaSlicerLib.controllers import StartList

    return StartList(ModelStore())


class PretrainPanel:
    def __init__(self, ui, device, onStartAdded):
        """``device()`` reads the module's device choice; ``onStartAdded(start)`` refreshes the starts."""
        from PastaSlicerLib.controllers import PretrainController
        from PastaSlicerLib.gui.tasks import taskRunner

        self.ui, self._device, self._onStartAdded = ui, device, onStartAdded
        self.controller = PretrainController(taskRunner())
        self._task = None
        ui.pretrainProgressBar.setVisible(False)
        for edit in (ui.pretrainImagesPathLineEdit, ui.pretrainOutPathLineEdit, ui.pretrainConfigPathLineEdit):
            edit.connect("currentPathChanged(QString)", self._updateButton)
        ui.pretrainStepsSpinBox.connect("valueChanged(int)", self._updateButton)
        ui.pretrainButton.connect("clicked(bool)", self.onPretrain)
        self._updateButton()

    def _running(self):
        return self._task is not None and self._task.running

    def _request(self):
        from PastaSlicerLib.controllers import PretrainRequest

        return PretrainRequest(
            images=self.ui.pretrainImagesPathLineEdit.currentPath,
            out=self.ui.pretrainOutPathLineEdit.currentPath,
            steps=self.ui.pretrainStepsSpinBox.value,
            config=self.ui.pretrainConfigPathLineEdit.currentPath,
            device=self._device(),
        )

    def _updateButton(self, *args):
        running = self._running()
        problem = None if running else self.controller.problem(self._request())
        self.ui.pretrainButton.text = _("Cancel") if running else _("Pretrain")
        self.ui.pretrainButton.toolTip = (
            _("Stop; the last checkpoint is kept")
            if running
            else (problem or _("Pretrain a network on these CTs without labels (Volume Fusion)"))
        )
        self.ui.pretrainButton.enabled = running or problem is None

    def onPretrain(self):
        from PastaSlicerLib.gui import callWithErrorDisplay
        from PastaSlicerLib.gui.tasks import RunningTask

        if self._running():
            self._task.cancel()
            self.ui.pretrainStatusLabel.text = _("Cancelling...")
            return
        ok, handle = callWithErrorDisplay(
            _("Starting the pretraining failed."),
            self.controller.start,
            self._request(),
            on_progress=self._onProgress,
            on_finished=self._onFinished,
        )
        if ok:
            self._task = RunningTask(handle)
            self.ui.pretrainProgressBar.value = 0
            self.ui.pretrainProgressBar.setVisible(self._task.running)
            self.ui.pretrainStatusLabel.text = _("Pretraining...")
        self._updateButton()

    def _onProgress(self, fraction, message):
        self.ui.pretrainProgressBar.value = int(round(100 * fraction))
        self.ui.pretrainStatusLabel.text = message

    def _onFinished(self, outcome):
        from PastaSlicerLib.gui.tasks import showOutcome

        self.ui.pretrainProgressBar.setVisible(False)
        showOutcome(self.ui.pretrainStatusLabel, outcome, _("Pretraining failed."))
        if outcome.ok:
            self._onStartAdded(outcome.value)
        self._updateButton()

    def cancel(self):
        """Stop a running pretraining (the module is closing); its checkpoint is kept for a resume."""
        if self._running():
            self._task.cancel()
