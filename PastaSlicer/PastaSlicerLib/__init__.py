"""Slicer-side helpers shared by the PASTA modules.

Unlike ``pastacore`` this package may use ``slicer`` and ``qt``: it installs Python
dependencies on request (:mod:`.dependencies`), runs long work off the GUI thread
(:mod:`.worker`) and holds the widget helpers the modules share (:mod:`.widgets`).
Moving data between MRML nodes and volumes is ``pastacore.mrml``'s job.
Nothing here installs or imports heavy packages at import time.
"""

import logging
import traceback


def callWithErrorDisplay(message, function, *args, **kwargs):
    """Call ``function``; on failure show an error box and return ``(False, None)``.

    A ``PastaError`` is bad input explained in one line, so only its message is shown.
    Anything else is a bug: ``message`` and the exception are shown, the traceback goes to
    the details and the log. On success returns ``(True, result)``.
    """
    import slicer
    from pastacore.errors import PastaError

    try:
        with slicer.util.WaitCursor():
            return True, function(*args, **kwargs)
    except PastaError as exc:
        slicer.util.errorDisplay(str(exc))
    except Exception as exc:
        logging.exception(f"PASTA: {message}")
        slicer.util.errorDisplay(f"{message}\n\n{exc}", detailedText=traceback.format_exc())
    return False, None


def showTaskError(message, error):
    """Show the error a :class:`.worker.BackgroundTask` ended with (GUI thread)."""
    import slicer
    from pastacore.errors import PastaError

    if isinstance(error, PastaError):
        slicer.util.errorDisplay(str(error))
    else:
        details = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        logging.error(f"PASTA: {message}\n{details}")
        slicer.util.errorDisplay(f"{message}\n\n{error}", detailedText=details)


def importEngine(moduleName, notInstalled):
    """Import a ``pastacore`` module the GUI needs (e.g. ``pastacore.inference``).

    Raises ``PastaError`` saying which Python package to install when one of its
    dependencies is missing, or ``notInstalled`` when the module itself is absent.
    """
    import importlib

    from pastacore.errors import PastaError

    try:
        return importlib.import_module(moduleName)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or ""
        if missing and not missing.startswith("pastacore"):
            raise PastaError(
                f"the Python package '{missing}' is missing; install it in the PASTA module (Dependencies)") from exc
        raise PastaError(notInstalled) from exc
