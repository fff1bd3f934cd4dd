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
        from PastaSlicerLib.gui.jobs import ActionButton, onSuccess
        from PastaSlicerLib.gui.tasks import taskRunner

        self.ui, self._device, self._onSuccess = ui, device, onSuccess(onStartAdded)
        self.controller = PretrainController(taskRunner())
        self.action = ActionButton(
            ui.pretrainButton, ui.pretrainStatusLabel, ui.pretrainProgressBar, _("Pretrain"), update=self._updateButton
        )
        for edit in (ui.pretrainImagesPathLineEdit, ui.pretrainOutPathLineEdit, ui.pretrainConfigPathLineEdit):
            edit.connect("currentPathChanged(QString)", self._updateButton)
        ui.pretrainStepsSpinBox.connect("valueChanged(int)", self._updateButton)
        ui.pretrainButton.connect("clicked(bool)", self.onPretrain)
        self._updateButton()

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
        problem = None if self.action.running else self.controller.problem(self._request())
        self.action.showReadiness(
            problem,
            _("Pretrain a network on these CTs without labels (Volume Fusion)"),
            runningTip=_("Stop; the last checkpoint is kept and the next Pretrain into this folder goes on from it"),
        )

    def onPretrain(self):
        self.action.runRequest(
            "pretrain", self.controller.start, self._request(), _("Pretraining failed."), _("Pretraining..."), self._onSuccess
        )

    def cancel(self):
        """Stop a running pretraining (the module is closing); its checkpoint is kept for a resume."""
        self.action.cancel()
