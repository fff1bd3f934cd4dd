"""The one exception type a user sees.

Every check of user input raises :class:`PastaError` with a message that fits on one line
and says what to do. The command line prints it as ``error: <message>`` and exits with 2;
Slicer widgets show it in a message box. Anything else escaping is a bug.
"""


class PastaError(Exception):
    """Bad input or a failed precondition, explained in one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class CancelledError(PastaError):
    """The user cancelled a long-running operation; nothing was written."""

    def __init__(self, message: str = "cancelled by the user; nothing was written"):
        super().__init__(message)
