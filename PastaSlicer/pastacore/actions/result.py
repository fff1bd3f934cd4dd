"""What every action's result shares."""

from __future__ import annotations


class ActionResult:
    """An action's result: ``to_dict()`` is what the caller reads as JSON and ``volumes()`` the
    images (name -> Volume) the task process saves for it. Most results carry no image."""

    def volumes(self) -> dict:
        return {}
