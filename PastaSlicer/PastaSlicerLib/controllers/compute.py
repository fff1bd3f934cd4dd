"""Where PASTA computes: this computer (the task process) or a PASTA server (``pasta serve``).

The hub keeps the choice, the server's URL and the token in the application's settings (in
Slicer: ``qt.QSettings``, never the scene; the web app: its command line) and registers how to
read them with :func:`use_setting_source`. :class:`ComputeRunner` follows the choice at each
start, so every module's controller uses the server from the moment it is chosen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

LOCAL, SERVER = "local", "server"
CHOICES = ((LOCAL, "This computer"), (SERVER, "A PASTA server"))


@dataclass(frozen=True)
class ComputeSetting:
    where: str = LOCAL  # LOCAL or SERVER
    url: str = ""
    token: str = ""

    @property
    def remote(self) -> bool:
        return self.where == SERVER and bool(self.url.strip())


_SOURCE = {"read": lambda: ComputeSetting()}


def use_setting_source(read: Callable[[], ComputeSetting]) -> None:
    """Where :func:`current_setting` reads the choice from (the Slicer hub registers QSettings)."""
    _SOURCE["read"] = read


def current_setting() -> ComputeSetting:
    return _SOURCE["read"]()


class ComputeRunner:
    """The runner protocol of :mod:`pastacore.tasks.runners`, on this computer (``local``) or on
    the server of the current setting (jobs a server does not run stay on ``local``)."""

    def __init__(self, local: object, setting: Callable[[], ComputeSetting] = current_setting) -> None:
        self.local, self.setting = local, setting

    def runner(self) -> object:
        setting = self.setting()
        if not setting.remote:
            return self.local
        from pastacore.tasks.remote import RemoteRunner

        return RemoteRunner(setting.url, setting.token or None, local=self.local)

    def start(self, job, params, folder, on_progress=None, on_finished=None):
        return self.runner().start(job, params, folder, on_progress, on_finished)


@dataclass
class ServerModel:
    """A model installed on the server, listed as the hub lists its own (no local path)."""

    name: str
    version: str
    task: str
    path: str
    builtin: bool = False
    family: str = ""
    damaged: str = ""
    verified: bool | None = None


def check_server(url: str, token: str = "") -> str:
    """One line about the server when it answers and takes the token (the hub's Test button);
    PastaError with the one-line reason otherwise."""
    from pastacore.tasks.server_client import ServerClient

    return ServerClient(url, token or None, timeout=15).check()


def server_models(setting: ComputeSetting) -> list:
    """The server's models as :class:`ServerModel` rows (PastaError when it cannot be asked)."""
    from pastacore.tasks.server_client import ServerClient

    client = ServerClient(setting.url, setting.token or None, timeout=15)
    where = f"on the PASTA server {client.url}"
    return [
        ServerModel(m["name"], m.get("version", ""), m.get("task", "unknown"), where, bool(m.get("builtin")), m.get("family", ""))
        for m in client.models()
    ]
