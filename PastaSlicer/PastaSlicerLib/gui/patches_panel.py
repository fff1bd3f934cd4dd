"""The hub's pathology classification panel: a loaded 2-D image, a PatchTCGA encoder and a head ->
the image's class and a heat map overlaid on it; a head trained from labelled patches. Widget
wiring only; the work is :class:`PastaSlicerLib.controllers.PatchController`'s (jobs run in the
task process)."""

import qt
import slicer
from slicer.i18n import tr as _

OVERLAY_OPACITY = 0.5


class PatchPanel:
    def __init__(self, ui, device):
        from PastaSlicerLib.controllers import PatchController
        from PastaSlicerLib.gui.jobs import ActionButton
        from PastaSlicerLib.gui.tasks import taskRunner

        self.ui, self.device = ui, device
        self.controller = PatchController(slicer.mrmlScene, taskRunner())
        self.classifyAction = ActionButton(ui.patchClassifyButton, ui.patchStatusLabel, update=self._updateButtons)
        self.trainAction = ActionButton(ui.patchTrainHeadButton, ui.patchStatusLabel, update=self._updateButtons)
        ui.patchImageSelector.connect("currentNodeChanged(vtkMRMLNode*)", self._updateButtons)
        ui.patchHeadPathLineEdit.connect("currentPathChanged(QString)", self._onHeadChanged)
        ui.patchTrainFolderLineEdit.connect("currentPathChanged(QString)", self._updateButtons)
        ui.patchImportEncoderButton.connect("clicked(bool)", self.onImportEncoder)
        ui.patchClassifyButton.connect("clicked(bool)", self.onClassify)
        ui.patchTrainHeadButton.connect("clicked(bool)", self.onTrainHead)
        ui.patchCollapsibleButton.connect("contentsCollapsed(bool)", lambda collapsed: collapsed or self.refreshEncoders())
        self._onHeadChanged()

    # -- state ------------------------------------------------------------------------------
    def _busy(self):
        return self.classifyAction.running or self.trainAction.running

    def _encoder(self):
        return self.ui.patchEncoderComboBox.currentText or None

    def _updateButtons(self, *args):
        busy = self._busy()
        encoder = self._encoder() is not None
        self.ui.patchClassifyButton.enabled = self.classifyAction.running or (
            not busy
            and encoder
            and self.ui.patchImageSelector.currentNode() is not None
            and bool(self.ui.patchHeadPathLineEdit.currentPath)
        )
        self.ui.patchTrainHeadButton.enabled = self.trainAction.running or (
            not busy and encoder and bool(self.ui.patchTrainFolderLineEdit.currentPath)
        )

    def refreshEncoders(self):
        from PastaSlicerLib.gui import callWithErrorDisplay

        ok, names = callWithErrorDisplay(_("Listing the encoders failed."), self.controller.encoders)
        current = self._encoder()
        self.ui.patchEncoderComboBox.clear()
        for name in names if ok else []:
            self.ui.patchEncoderComboBox.addItem(name)
        if current:
            self.ui.patchEncoderComboBox.setCurrentText(current)
        self._updateButtons()

    def _onHeadChanged(self, *args):
        """The heat map's class choices: the head's classes (from its HEAD.json)."""
        classes = (
            self.controller.head_classes(self.ui.patchHeadPathLineEdit.currentPath)
            if self.ui.patchHeadPathLineEdit.currentPath
            else []
        )
        self.ui.patchClassComboBox.clear()
        for name in classes:
            self.ui.patchClassComboBox.addItem(name)
        if len(classes) == 2:
            self.ui.patchClassComboBox.setCurrentIndex(1)
        self._updateButtons()

    def sceneClosing(self):
        self.classifyAction.cancel()
        self.trainAction.cancel()

    # -- actions ----------------------------------------------------------------------------
    def onImportEncoder(self):
        from PastaSlicerLib.gui import callWithErrorDisplay

        window = slicer.util.mainWindow()
        weights = qt.QFileDialog.getOpenFileName(
            window, _("PatchTCGA encoder weights"), "", _("Weights (*.pth *.pt *.tar *.ckpt);;All files (*)")
        )
        if not weights:
            return
        config = qt.QFileDialog.getOpenFileName(window, _("Its model config"), "", _("Model config (*.json)"))
        if not config:
            return
        ok, name = callWithErrorDisplay(_("Importing the encoder failed."), self.controller.import_encoder, weights, config)
        self.refreshEncoders()
        if ok:
            self.ui.patchEncoderComboBox.setCurrentText(name)
            self.ui.patchStatusLabel.text = _("Encoder {name} installed.").format(name=name)

    def onClassify(self):
        from PastaSlicerLib.gui.jobs import controllerCall

        image, encoder, head = (
            self.ui.patchImageSelector.currentNode(),
            self._encoder(),
            self.ui.patchHeadPathLineEdit.currentPath,
        )
        tile, chosen, device = self.ui.patchTileSpinBox.value, self.ui.patchClassComboBox.currentText or None, self.device()
        self.classifyAction.run(
            "patch_heatmap",
            controllerCall(self.controller.classify, image, encoder, head, tile, chosen, device=device),
            _("Classifying the image failed."),
            _("Classifying..."),
            done=self._classified,
        )

    def _classified(self, outcome):
        if outcome.ok:
            image = self.ui.patchImageSelector.currentNode()
            slicer.util.setSliceViewerLayers(
                background=image, foreground=outcome.value.heatmap, foregroundOpacity=OVERLAY_OPACITY, fit=True
            )

    def onTrainHead(self):
        from PastaSlicerLib.gui.jobs import controllerCall

        if self.trainAction.running:
            self.trainAction.cancel()
            return
        out = qt.QFileDialog.getSaveFileName(slicer.util.mainWindow(), _("Write the head to"), "", _("Head (*.pt)"))
        if not out:
            return
        if not out.lower().endswith((".pt", ".pth")):
            out += ".pt"
        folder, encoder = self.ui.patchTrainFolderLineEdit.currentPath, self._encoder()
        labels, device = self.ui.patchTrainLabelsLineEdit.currentPath or None, self.device()
        overwrite = qt.QFileInfo(out).exists()  # the save dialog asked already
        self.trainAction.run(
            "patch_head",
            controllerCall(self.controller.train_head, folder, encoder, out, labels=labels, device=device, overwrite=overwrite),
            _("Training the head failed."),
            _("Training the head..."),
            done=lambda outcome: self._trained(outcome, out),
        )

    def _trained(self, outcome, out):
        if outcome.ok:
            self.ui.patchHeadPathLineEdit.currentPath = out
