"""Slicer-application helpers of the PASTA modules (GUI thread only; needs ``qt`` and ``slicer``)."""

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
