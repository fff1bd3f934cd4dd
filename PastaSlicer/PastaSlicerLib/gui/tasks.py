"""Run controller jobs from Slicer: in the task process (``PythonSlicer -m pastacore.tasks``),
polled by a Qt timer on the GUI thread, so Slicer stays responsive and a cancel is a kill."""

import os
import shutil
import sys

import qt

POLL_MS = 100
COMPUTE_KEY, SERVER_URL_KEY, SERVER_TOKEN_KEY = "PASTA/Compute", "PASTA/ServerURL", "PASTA/ServerToken"


def computeSetting():
    """Where PASTA computes, from Slicer's application settings (the hub writes them; never the scene)."""
    from PastaSlicerLib.controllers.compute import LOCAL, ComputeSetting

    settings = qt.QSettings()
    return ComputeSetting(
        str(settings.value(COMPUTE_KEY, LOCAL) or LOCAL),
        str(settings.value(SERVER_URL_KEY, "") or ""),
        str(settings.value(SERVER_TOKEN_KEY, "") or ""),
    )


def saveComputeSetting(setting) -> None:
    settings = qt.QSettings()
    settings.setValue(COMPUTE_KEY, setting.where)
    settings.setValue(SERVER_URL_KEY, setting.url)
    settings.setValue(SERVER_TOKEN_KEY, setting.token)


def _registerComputeSetting():
    from PastaSlicerLib.controllers.compute import use_setting_source

    use_setting_source(computeSetting)


_registerComputeSetting()


def taskRunner():
    """Jobs on this computer, in a process running Slicer's own Python (``PythonSlicer``), or on
    the PASTA server chosen in the hub (followed at each start)."""
    from PastaSlicerLib.controllers.compute import ComputeRunner

    python = shutil.which("PythonSlicer") or shutil.which("PythonSlicer.exe")
    if python is None:
        import slicer

        home = slicer.app.slicerHome
        candidates = [os.path.join(home, "bin", name) for name in ("PythonSlicer", "PythonSlicer.exe")]
        python = next((c for c in candidates if os.path.isfile(c)), sys.executable)
    return ComputeRunner(localRunner(python))


def localRunner(python):
    from pastacore.tasks import ProcessRunner

    return ProcessRunner(python)


class RunningTask:
    """Polls a started job's handle every ``POLL_MS`` ms; the controller's callbacks (progress,
    and the result written into the scene) therefore run on the GUI thread."""

    def __init__(self, handle):
        self.handle = handle
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_MS)
        self._timer.connect("timeout()", self._poll)
        if handle.outcome is None:
            self._timer.start()

    @property
    def running(self) -> bool:
        return self.handle.outcome is None

    def cancel(self) -> None:
        self.handle.cancel()

    def _poll(self) -> None:
        if not self.handle.poll():
            self._timer.stop()


def showOutcome(statusLabel, outcome, failedText):
    """Say on ``statusLabel`` how an action ended; a failure also gets an error box whose
    details are the last lines of the task log (kept under the cache folder, named in the message)."""
    import slicer

    from pastacore.tasks.runners import log_tail

    statusLabel.text = outcome.message if outcome.ok or outcome.cancelled else failedText
    if outcome.error:
        details = "\n".join(log_tail(outcome.log, 30)) if getattr(outcome, "log", None) else ""
        slicer.util.errorDisplay(f"{failedText}\n\n{outcome.error}", detailedText=details or None)
