"""Run long work on a Python thread while the Slicer GUI stays responsive.

The work function runs on a plain ``threading.Thread``. It must not touch MRML nodes or Qt
widgets: read node contents on the GUI thread before starting, and write results back in
``onFinished``, which is called on the GUI thread. A ``qt.QTimer`` on the GUI thread polls
the thread, hands the latest progress to ``onProgress`` and notices when the work has ended.
"""

import logging
import threading

import qt


class BackgroundTask:
    """Runs ``function(progress, isCancelled)`` on a Python thread.

    ``progress(fraction, message="")`` may be called from the worker as often as it likes;
    only the latest value is shown. ``isCancelled()`` becomes True after :meth:`cancel`;
    the function should then stop early (``pastacore`` raises ``CancelledError``).

    On the GUI thread ``onProgress(fraction, message)`` is called when progress changed, and
    ``onFinished(result, error)`` once at the end: ``error`` is the exception the function
    raised, or None on success.
    """

    def __init__(self, function, onProgress=None, onFinished=None, intervalMs=100):
        self._function = function
        self._onProgress = onProgress
        self._onFinished = onFinished
        self._cancelEvent = threading.Event()
        self._lock = threading.Lock()
        self._progress = None  # (fraction, message) not yet shown
        self._result = None
        self._error = None
        self._thread = None
        self._finishedReported = False
        self._timer = qt.QTimer()
        self._timer.setInterval(int(intervalMs))
        self._timer.connect("timeout()", self._poll)

    # -- worker side -----------------------------------------------------------------

    def reportProgress(self, fraction, message=""):
        """Thread-safe; call from the work function."""
        with self._lock:
            self._progress = (max(0.0, min(1.0, float(fraction))), str(message))

    def isCancelled(self):
        return self._cancelEvent.is_set()

    def _run(self):
        try:
            self._result = self._function(self.reportProgress, self.isCancelled)
        except BaseException as exc:  # handed to onFinished on the GUI thread
            self._error = exc

    # -- GUI side --------------------------------------------------------------------

    def start(self):
        if self._thread is not None:
            raise RuntimeError("a BackgroundTask can only be started once")
        self._thread = threading.Thread(target=self._run, name="PastaBackgroundTask", daemon=True)
        self._thread.start()
        self._timer.start()

    def cancel(self):
        """Ask the work to stop; onFinished still comes once it has."""
        self._cancelEvent.set()

    @property
    def running(self):
        return self._thread is not None and not self._finishedReported

    def wait(self, timeoutSeconds=None):
        """Block until the work ends and deliver the callbacks (for tests and scripts)."""
        if self._thread is None:
            raise RuntimeError("the task was not started")
        self._thread.join(timeoutSeconds)
        self._poll()
        return not self._thread.is_alive()

    def _poll(self):
        with self._lock:
            progress, self._progress = self._progress, None
        if progress is not None and self._onProgress is not None:
            try:
                self._onProgress(*progress)
            except Exception:
                logging.exception("PASTA: progress callback failed")
        if self._thread.is_alive() or self._finishedReported:
            return
        self._timer.stop()
        self._finishedReported = True
        if self._onFinished is not None:
            self._onFinished(self._result, self._error)
        elif self._error is not None:
            logging.error(f"PASTA: background task failed: {self._error}")
