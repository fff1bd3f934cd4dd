"""Pretrain: a folder of the user's unlabelled CTs -> a VolF-pretrained network (MIS-FM) that
fine-tuning can start from; and the list of such starts.

The ``pretrain`` action runs in the task process (:mod:`pastacore.actions.pretrain`): the CTs are
prepared as a cohort, the network trains on VolF pairs, and the output folder receives
``model.pt``, ``config.json``, ``log.json``. The result joins the user's list of fine-tuning
starts (``starts.json`` in the model store's folder), beside MIS-FM files the user adds
(a PyMIC checkpoint with its config, e.g. ``pctnet_ct10k_volf.pt``). Nothing touches the scene.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from pastacore.errors import PastaError

from .jobs import start_action

STARTS_FILE = "starts.json"
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}"


@dataclass(frozen=True)
class TrainingStart:
    """A network fine-tuning can start from besides the installed models."""

    name: str
    path: str  # a pasta pretrain folder, a PyMIC checkpoint or a model folder fine-tuned from one
    config: str = ""  # the checkpoint's network config (JSON) when ``path`` is a bare checkpoint
    kind: str = ""  # "pasta pretrain folder", "PyMIC checkpoint", "model folder"


class StartList:
    """The user's fine-tuning starts, kept in ``<store>/starts.json`` (those whose files went away
    are left out of :meth:`list`)."""

    def __init__(self, store) -> None:
        self.file = Path(store.root) / STARTS_FILE

    def _read(self) -> list:
        try:
            entries = json.loads(self.file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        return [TrainingStart(**e) for e in entries if isinstance(e, dict) and {"name", "path"} <= set(e)]

    def list(self) -> list:
        return [s for s in self._read() if Path(s.path).exists()]

    @staticmethod
    def problem(path: str, config: str = "") -> str | None:
        """Why ``path`` (with ``config``) cannot be a start, or None (reads configs, not weights)."""
        from pastacore.families.pymic.start import resolve_start

        if not path:
            return "Choose a MIS-FM file (a PyMIC checkpoint) or a pretrained folder"
        try:
            resolve_start(path, config or None)
        except PastaError as exc:
            return str(exc)
        return None

    def add(self, path: str, config: str = "", name: str = "") -> TrainingStart:
        """Add (or replace, by name) a start after checking it; returns it."""
        from pastacore.families.pymic.start import resolve_start
        from pastacore.fileio.atomic import atomic_outputs

        problem = self.problem(path, config)
        if problem:
            raise PastaError(problem)
        _weights, _config, _description, kind = resolve_start(path, config or None)
        name = name or Path(path).name
        start = TrainingStart(name, str(Path(path).resolve()), str(Path(config).resolve()) if config else "", kind)
        entries = [s for s in self._read() if s.name != name] + [start]
        self.file.parent.mkdir(parents=True, exist_ok=True)
        with atomic_outputs(self.file, overwrite=True) as temp:
            temp.write_text(json.dumps([asdict(s) for s in entries], indent=2), encoding="utf-8")
        return start


@dataclass
class PretrainRequest:
    images: str  # a folder of CTs (or a CT file, a glob, a cohort CSV)
    out: str  # the folder the pretrained network is written to
    name: str = ""  # its name in the list of starts ("" = the folder's name)
    steps: int = 1000
    config: str = ""  # the network's config (JSON, family pymic); "" = the lung demo's FMUNet
    patch: tuple | None = None
    device: str = "auto"
    seed: int = 0
    resume: bool | None = None  # None: go on with an unfinished run the output folder holds
    overwrite: bool = False


class PretrainController:
    def __init__(self, runner, store=None):
        from pastacore.modelstore.store import ModelStore

        self.runner = runner
        self.store = store if store is not None else ModelStore()
        self.starts = StartList(self.store)

    def _options(self, request: PretrainRequest):
        from pastacore.actions.pretrain import PretrainOptions

        return PretrainOptions(
            steps=int(request.steps),
            config=request.config,
            patch=tuple(request.patch) if request.patch else None,
            device=request.device,
            seed=int(request.seed),
        )

    def _inputs(self, request: PretrainRequest):
        from pastacore.actions.pretrain import PretrainInputs
        from pastacore.training.finetune import Checkpoints

        resume = request.resume
        if resume is None:
            resume = bool(request.out) and Checkpoints(request.out).exists() and not request.overwrite
        return PretrainInputs([str(request.images)], str(request.out), bool(resume), bool(request.overwrite))

    def problem(self, request: PretrainRequest) -> str | None:
        """Why pretraining cannot start, or None."""
        from pastacore.actions.pretrain import check
        from pastacore.fileio.cases import read_inputs

        if not request.images or not Path(request.images).exists():
            return "Choose the folder of CTs to pretrain on"
        if not request.out:
            return "Choose the folder the pretrained network goes to"
        if request.name and not re.fullmatch(NAME_PATTERN, request.name):
            return "Name the pretrained network with letters, digits, '.', '_' and '-'"
        if request.steps < 1:
            return "Train for at least one step"
        try:
            read_inputs([request.images])
            check(self._options(request), self._inputs(request))
        except PastaError as exc:
            return str(exc)
        return None

    def start(self, request: PretrainRequest, on_progress=None, on_finished=None):
        """Start pretraining; ``on_finished(Outcome)`` carries the new :class:`TrainingStart`."""
        problem = self.problem(request)
        if problem:
            raise PastaError(problem)
        name = request.name or Path(request.out).name
        return start_action(
            self.runner,
            "pretrain",
            self._options(request),
            self._inputs(request),
            lambda result, folder: self.starts.add(result["out"], name=name),
            on_progress,
            on_finished,
            describe=lambda start: f"'{start.name}' is in the list of fine-tuning starts.",
        )
