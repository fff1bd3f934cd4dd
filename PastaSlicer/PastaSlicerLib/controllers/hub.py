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
        """``[(name, required, installed or "missing", ok, what it is for, group)]`` for every requirement
        of the base list and of each group an action in Slicer needs (group "" = the base list)."""
        from pastacore import deps

        groups = tuple(g.name for g in deps.requirement_groups().values() if g.actions)
        return [
            (d.name, d.required, d.installed or "missing", bool(d.ok), d.purpose, d.group) for d in deps.dependency_status(groups)
        ]

    @staticmethod
    def requirement_groups() -> list:
        """``[(group, what it is for, actions that need it)]`` of the groups a Slicer action may install."""
        from pastacore import deps

        return [(g.name, g.purpose, g.actions) for g in deps.requirement_groups().values() if g.actions]

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

    def usable_model(self, name, task: str = "segmentation") -> tuple:
        """``(name, note)``: ``name`` when it is installed and usable for ``task``, else the default
        model (the built-in one first) and a sentence saying why it was replaced ("" when kept).
        A parameter node may hold a model that was removed since, or comes from another machine."""
        models = self.models(task=task)
        if any(m.name == name for m in models):
            return name, ""
        fallback = models[0].name if models else ""
        if not name:
            return fallback, ""
        if not fallback:
            return "", f"Model '{name}' is not installed, and no other model is; import one in the PASTA module."
        return fallback, f"Model '{name}' is not installed here; using '{fallback}' instead."

    def model_groups(self, name) -> list:
        """The requirement groups an installed model's family needs (none for PASTA's own networks)."""
        from pastacore.errors import PastaError
        from pastacore.families import family_named

        model = next((m for m in self.store.list() if m.name == name), None)
        if model is None or model.family in ("", "pasta"):
            return []
        try:
            group = family_named(model.family).requirement_group
        except PastaError:
            return []
        return [group] if group else []

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
