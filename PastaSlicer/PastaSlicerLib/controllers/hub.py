"""The hub's facts and actions: Python packages, compute devices, installed models, and where
PASTA computes (this computer or a PASTA server: :mod:`.compute`)."""

from __future__ import annotations


class HubController:
    def __init__(self, store=None, compute=None):
        from pastacore.modelstore.store import ModelStore

        from .compute import current_setting

        self.store = store if store is not None else ModelStore()
        self.compute = compute or current_setting  # () -> ComputeSetting

    # -- where PASTA computes ---------------------------------------------------------------
    @staticmethod
    def compute_choices() -> tuple:
        """``((value, label), ...)``: this computer, a PASTA server."""
        from .compute import CHOICES

        return CHOICES

    @staticmethod
    def test_server(url: str, token: str = "") -> str:
        """One line about the server (version, device, workers, models); PastaError saying why not."""
        from .compute import check_server

        return check_server(url, token)

    # -- packages and devices ---------------------------------------------------------------
    @staticmethod
    def dependency_rows() -> list:
        """``[(name, required, installed or "missing", ok, what it is for)]`` for every requirement."""
        from pastacore import deps

        return [(d.name, d.required, d.installed or "missing", bool(d.ok), d.purpose) for d in deps.dependency_status()]

    @staticmethod
    def devices() -> tuple:
        from pastacore.deps import DEVICES

        return DEVICES

    @staticmethod
    def device_text(preference: str = "auto") -> str:
        """The device a run with ``preference`` would use (PastaError when it is unavailable)."""
        from pastacore import deps

        return deps.torch_device_info(preference).describe()

    # -- models -----------------------------------------------------------------------------
    def models(self, task: str | None = None) -> list:
        """Installed models (the built-in ones first); ``task="segmentation"`` keeps those that segment.
        With a PASTA server chosen, the server's models (jobs choose them by name there)."""
        setting = self.compute()
        if setting.remote:
            from pastacore.errors import PastaError

            from .compute import server_models

            try:
                models = server_models(setting)
            except PastaError as exc:  # a module's model list must not fail its set-up: it shows none
                import logging

                logging.getLogger("pasta").warning("PASTA: cannot list the server's models: %s", exc)
                models = []
        else:
            models = self.store.list()
        if task:  # the models that can do it (a damaged one cannot)
            models = [m for m in models if m.task in (task, "unknown") and not m.damaged]
        return sorted(models, key=lambda m: not m.builtin)

    def installed_models(self) -> list:
        """The models of this computer's store (what the hub imports, verifies and removes)."""
        return sorted(self.store.list(), key=lambda m: not m.builtin)

    def import_model(self, path, name=None, overwrite=False):
        return self.store.import_file(path, name=name, overwrite=overwrite)

    def verify_model(self, name):
        return self.store.verify(name)

    def remove_model(self, name) -> None:
        self.store.remove(name)

    def models_folder(self) -> str:
        return str(self.store.root)

    @staticmethod
    def weight_suffixes() -> tuple:
        from pastacore.networks.checkpoints import weight_suffixes

        return weight_suffixes()
