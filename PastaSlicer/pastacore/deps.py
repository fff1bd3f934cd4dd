"""What is installed, and which torch device a run would use.

Nothing is installed from here: the Slicer hub asks the user and installs (see
``PastaSlicerLib/dependencies.py``); the command line environment comes from
``pyproject.toml``.
"""

from __future__ import annotations

import importlib.metadata
import re
from dataclasses import dataclass

from .errors import PastaError

# What Slicer itself bundles (5.10: pydicom 2.4; 5.12: pydicom 3.0) and torch, which the PyTorch
# extension installs: an install into Slicer's Python pins them to what is there.
KEEP_INSTALLED = ("torch", "numpy", "SimpleITK", "pydicom", "pillow", "requests")
DEVICES = ("auto", "cuda", "mps", "cpu")  # what a user may choose; "auto" picks CUDA, then MPS, then the CPU
REQUIREMENTS_FILE = "requirements.txt"  # in Resources/: also pyproject.toml's dependency list
GROUP_FILE = "requirements-{}.txt"  # in Resources/: one optional group (a pip extra) each
_REQUIREMENT = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[A-Za-z0-9_,-]+\])?\s*((?:>=|==)[0-9][0-9A-Za-z.]*)?")


@dataclass(frozen=True)
class RequirementGroup:
    """An optional group of packages (a pip extra), read from ``Resources/requirements-<name>.txt``:
    its first comment says what it is for, its ``# actions:`` line which user actions need it."""

    name: str
    purpose: str
    actions: tuple  # names of the actions (pastacore.actions) that need it; () = none in Slicer
    requirements: tuple  # (distribution with its extras, version requirement, what it is for)

    def describe(self) -> str:
        return f"{self.name}: {self.purpose}"


def _read(path) -> tuple:
    """``(first comment, actions line, requirements)`` of a requirements file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out, purpose, title, actions = [], "", "", ()
    for line in (line.strip() for line in lines):
        if line.startswith("# actions:"):
            actions = tuple(a.strip() for a in line.split(":", 1)[1].split(",") if a.strip())
        elif line.startswith("#"):
            title = title or line.lstrip("# ").strip()
            purpose = line.lstrip("# ").strip()
        elif line:
            match = _REQUIREMENT.fullmatch(line)
            if not match:
                raise PastaError(f"{path.name}: cannot read the requirement {line!r}")
            out.append((match.group(1) + (match.group(2) or ""), match.group(3) or "", purpose))  # with its extras
            purpose = ""
    return title, actions, tuple(out)


def requirements(group: str = "") -> tuple:
    """``(distribution name, version requirement, what it is for)`` of the base list
    (``Resources/requirements.txt``) or of one optional group."""
    from .resources import resources_dir

    if not group:
        return _read(resources_dir() / REQUIREMENTS_FILE)[2]
    return requirement_group(group).requirements


def requirement_groups() -> dict:
    """Every optional group, by name (found from the files in ``Resources/``)."""
    from .resources import resources_dir

    groups = {}
    prefix, suffix = GROUP_FILE.split("{}")
    for path in sorted(resources_dir().glob(GROUP_FILE.format("*"))):
        name = path.name[len(prefix) : -len(suffix)]
        title, actions, listed = _read(path)
        groups[name] = RequirementGroup(name, title, actions, listed)
    return groups


def requirement_group(name: str) -> RequirementGroup:
    groups = requirement_groups()
    if name not in groups:
        raise PastaError(f"unknown requirement group {name!r} (known: {', '.join(groups)})")
    return groups[name]


def groups_for_action(action: str, **choices) -> list:
    """The optional groups the user action ``action`` needs (``choices``: e.g. ``backend=...``
    for synthesis, whose LesionDiffusion backends need the diffusion group)."""
    wanted = [g for g in choices.get("groups", ()) if g]  # e.g. what the chosen model's family needs
    for group in requirement_groups().values():
        if action not in group.actions:
            continue
        if group.name == "diffusion" and not str(choices.get("backend", "")).startswith("lesiondiffusion"):
            continue
        if group.name == "cohort" and int(choices.get("workers", 1) or 1) <= 1 and not choices.get("scheduler"):
            continue
        if group.name not in wanted:
            wanted.append(group.name)
    return wanted


@dataclass(frozen=True)
class DependencyStatus:
    name: str
    required: str
    purpose: str
    installed: str | None
    group: str = ""  # "" for the base list

    @property
    def ok(self) -> bool:
        if self.installed is None:
            return False
        if self.required.startswith("=="):
            return _version_tuple(self.installed) == _version_tuple(self.required[2:])
        return not self.required or _version_tuple(self.installed) >= _version_tuple(self.required.lstrip(">="))

    @property
    def requirement(self) -> str:
        return f"{self.name}{self.required}"


def _version_tuple(text: str) -> tuple:
    parts = []
    for piece in text.split("+")[0].split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def dependency_status(groups: tuple = ()) -> list:
    """One :class:`DependencyStatus` per package of the base list and of ``groups``."""
    out = []
    for group in ("", *groups):
        for name, spec, purpose in requirements(group):
            try:
                version = importlib.metadata.version(name.split("[")[0])
            except importlib.metadata.PackageNotFoundError:
                version = None
            out.append(DependencyStatus(name, spec, purpose, version, group))
    return out


def constraints() -> list:
    """pip constraint lines (``name==version``) keeping :data:`KEEP_INSTALLED` as installed."""
    lines = []
    for name in KEEP_INSTALLED:
        try:
            lines.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return lines


def install_hint(group: str = "") -> str:
    """How the command line installs a requirement group (an optional extra; "" = the base list)."""
    return f"pip install 'pasta-slicer[{group}]'" if group else "pip install pasta-slicer"


def missing_requirements(groups: tuple = ()) -> list:
    """Requirement strings (``name>=x``) of the packages that are absent or too old (base list and ``groups``)."""
    return [s.requirement for s in dependency_status(tuple(groups)) if not s.ok]


@dataclass(frozen=True)
class DeviceInfo:
    kind: str  # 'cuda', 'mps', 'cpu', or 'none' when torch is missing
    name: str
    memory_bytes: int | None
    torch_version: str | None

    def describe(self) -> str:
        if self.kind == "none":
            return "torch is not installed"
        memory = f", {self.memory_bytes / 2**30:.1f} GiB" if self.memory_bytes else ""
        return f"{self.kind.upper()}: {self.name}{memory} (torch {self.torch_version})"


def check_device(preference: str) -> str:
    """The device choice in lower case; an unknown one is refused (nothing needs torch for this)."""
    want = str(preference).lower()
    if want not in DEVICES:
        raise PastaError(f"unknown device {preference!r}; choose {', '.join(DEVICES[:-1])} or {DEVICES[-1]}")
    return want


def torch_device_info(preference: str = "auto") -> DeviceInfo:
    """The device ``preference`` resolves to: CUDA, then Apple MPS, then the CPU."""
    try:
        import torch
    except ImportError:
        return DeviceInfo("none", "", None, None)
    version = torch.__version__
    want = check_device(preference)
    if want == "cuda" and not torch.cuda.is_available():
        raise PastaError("CUDA was requested but torch sees no CUDA GPU (CPU-only torch build or driver problem)")
    if want == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise PastaError("MPS was requested but this machine has no Apple GPU available to torch")
    if want in ("auto", "cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return DeviceInfo("cuda", props.name, int(props.total_memory), version)
    mps = getattr(torch.backends, "mps", None)
    if want in ("auto", "mps") and mps is not None and mps.is_available():
        return DeviceInfo("mps", "Apple GPU", None, version)
    import os

    memory = None
    if hasattr(os, "sysconf") and "SC_PHYS_PAGES" in os.sysconf_names:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return DeviceInfo("cpu", f"CPU, {os.cpu_count()} cores", memory, version)
