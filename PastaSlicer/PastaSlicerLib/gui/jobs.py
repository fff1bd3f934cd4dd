"""Start an action from a Slicer module, the one way every button does it (Segment, Export,
Predict, Preview, Generate, Fine-tune, Compare): the packages the action needs are installed
first (after asking), progress and a Cancel button show while the task process runs, the job
is ended when Slicer quits or the scene closes, and the action always ends with a message (a
failure with the last lines of its task log)."""

import slicer
from slicer.i18n import tr as _

_exitHookInstalled = False


def stopAllJobs():
    """End every running task process and remove the job folders (Slicer quits)."""
    from pastacore.tasks.runners import stop_all
    from PastaSlicerLib.controllers.jobs import remove_job_folders

    stop_all()
    remove_job_folders()


def installExitHook():
    """Once per application: no task process or job folder (a whole CT) outlives Slicer."""
    global _exitHookInstalled
    if not _exitHookInstalled:
        slicer.app.connect("aboutToQuit()", stopAllJobs)
        _exitHookInstalled = True


class ActionButton:
    """One button that starts an action and, while it runs, cancels it.

    ``start(on_progress, on_finished)`` starts the controller's action (returns its handle);
    ``done(outcome)`` sees the outcome after the status line has shown it."""

    def __init__(self, button, statusLabel, progressBar=None, idleText="", update=None):
        self.button, self.statusLabel, self.progressBar = button, statusLabel, progressBar
        self.idleText, self.update = idleText or button.text, update or (lambda: None)
        self.task = None
        if progressBar is not None:
            progressBar.setVisible(False)
        installExitHook()

    @property
    def running(self):
        return self.task is not None and self.task.running

    def cancel(self):
        if self.running:
            self.task.cancel()
            self.statusLabel.text = _("Cancelling...")

    def showState(self):
        """Button text: the action, or Cancel while it runs."""
        self.button.text = _("Cancel") if self.running else self.idleText

    def showReadiness(self, problem, tip, runningTip=None):
        """Button text (:meth:`showState`), tool tip and whether it can be pressed: while the action
        runs, Cancel, with ``runningTip`` (when given); else the action, pressable when ``problem``
        is None, with ``problem`` or ``tip`` as its tool tip."""
        running = self.running
        self.showState()
        self.button.toolTip = runningTip if running and runningTip is not None else (problem or tip)
        self.button.enabled = running or problem is None

    def run(self, action, start, failedText, busyText, done=None, choices=None):
        """Cancel when running; else install what ``action`` needs and start it."""
        from PastaSlicerLib.gui import callWithErrorDisplay
        from PastaSlicerLib.gui.dependencies import ensureDependencies
        from PastaSlicerLib.gui.tasks import RunningTask

        if self.running:
            self.cancel()
            return
        if not ensureDependencies(action=action, choices=choices or {}):
            self.statusLabel.text = _("The Python packages this needs are not installed (see the PASTA module).")
            return

        def finished(outcome):
            self._finished(outcome, failedText, done)

        ok, handle = callWithErrorDisplay(failedText, start, self._progress, finished)
        if ok:
            self.task = RunningTask(handle)
            if self.progressBar is not None:
                self.progressBar.value = 0
                self.progressBar.setVisible(self.task.running)
            if self.task.running:
                self.statusLabel.text = busyText
        self.showState()
        self.update()

    def runRequest(self, action, start, request, failedText, busyText, done=None, choices=None):
        """:meth:`run` for a controller's action on ``request``: ``start(request, on_progress, on_finished)``."""
        self.run(action, lambda progress, finished: start(request, progress, finished), failedText, busyText, done, choices)

    def _progress(self, fraction, message):
        if self.progressBar is not None:
            self.progressBar.value = int(round(100 * fraction))
        self.statusLabel.text = message

    def _finished(self, outcome, failedText, done):
        from PastaSlicerLib.gui.tasks import showOutcome

        if self.progressBar is not None:
            self.progressBar.setVisible(False)
        try:
            showOutcome(self.statusLabel, outcome, failedText)
            if done is not None:
                done(outcome)
        finally:
            self.showState()
            self.update()


def controllerCall(method, *args, **kwargs):
    """A ``start`` for :meth:`ActionButton.run` that calls a controller's ``method(*args, **kwargs)``
    with the ``on_progress`` and ``on_finished`` keywords; the arguments are the values given now."""
    return lambda progress, finished: method(*args, on_progress=progress, on_finished=finished, **kwargs)


def onSuccess(handler):
    """A ``done`` for :meth:`ActionButton.run` that hands the value of an action that succeeded to ``handler``."""

    def done(outcome):
        if outcome.ok:
            handler(outcome.value)

    return done


def sceneClosing(*buttons):
    """Cancel the actions of ``buttons`` (their results would go into a closed scene)."""
    for button in buttons:
        button.cancel()
