"""The one exception type a user sees.

Every check of user input raises :class:`PastaError` with a message that fits on one line
and says what to do. The command line prints it as ``error: <message>`` and exits with 2;
Slicer widgets and the web app show it as it is. Anything else escaping is a bug.

The core speaks of values, not of one front end's controls: a setting the user can change is
written with :func:`option` (``f"... pass {option('overwrite')} to replace it"``). The command
line shows it as its flag (``--overwrite``), other front ends as the setting's name.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


_OPTION = re.compile(r"\{option:([a-z_]+)\}")


def option(name: str) -> str:
    """A setting named in a message: ``--name`` on the command line, 'the "name" setting' elsewhere."""
    return "{option:" + name + "}"


class PastaError(Exception):
    """Bad input or a failed precondition, explained in one line."""

    def __init__(self, message: str) -> None:
        self.template = " ".join(str(message).split())
        super().__init__(self.render())

    def render(self, as_flag: Callable[[str], str] | None = None) -> str:
        """The message with its settings named by ``as_flag(name)`` (default: in words)."""
        name = as_flag or (lambda setting: f'the "{setting.replace("_", " ")}" setting')
        return _OPTION.sub(lambda match: name(match.group(1)), self.template)


def command_line_flag(name: str) -> str:
    return "--" + name.replace("_", "-")


class CancelledError(PastaError):
    """The user cancelled a long-running operation; nothing was written."""

    def __init__(self, message: str = "cancelled by the user; nothing was written") -> None:
        super().__init__(message)
