"""What the Slicer modules import: the controllers are Qt-free (the web app and the tests drive
them without Qt), and every third-party package the core imports is one the installer knows."""

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "PastaSlicer" / "pastacore"
CONTROLLERS = ROOT / "PastaSlicer" / "PastaSlicerLib" / "controllers"

# Optional extras of pyproject.toml, and the only core packages allowed to import them.
OPTIONAL = {
    "slicer": {"mrml"},
    "vtk": {"mrml"},
    "vtkmodules": {"mrml"},
    "yaml": {"diffusion"},
    "transformers": {"diffusion"},
    "monai": {"training"},
    "distributed": {"cohort", "server"},
    "dask": {"cohort", "server"},
    "pyarrow": {"cohort"},
    "fastapi": {"server"},
    "starlette": {"server"},
    "uvicorn": {"server"},
}


def imports(path: Path) -> list:
    """(top-level module, full dotted name) of every absolute import in ``path``, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name.split(".")[0], a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.module.split(".")[0], f"{node.module}.{a.name}") for a in node.names]
    return found


def test_controllers_import_no_gui():
    for path in CONTROLLERS.glob("*.py"):
        for top, full in imports(path):
            assert top not in ("qt", "ctk", "PythonQt"), f"{path.name} imports {full}"
            assert not full.startswith(
                (
                    "slicer.util",
                    "slicer.ScriptedLoadableModule",
                    "slicer.parameterNodeWrapper",
                    "slicer.i18n",
                    "PastaSlicerLib.gui",
                )
            ), f"{path.name} imports {full}"
            assert full != "slicer.app", f"{path.name} imports slicer.app"


def requirement_names() -> set:
    from pastacore import deps

    return {name.lower() for name, _spec, _purpose in deps.requirements()}


def test_every_third_party_import_of_the_core_is_a_requirement():
    distributions = importlib.metadata.packages_distributions()
    required = requirement_names()
    missing = []
    for path in CORE.rglob("*.py"):
        package = path.relative_to(CORE).parts[0]
        for top, full in imports(path):
            if top in sys.stdlib_module_names or top == "pastacore":
                continue
            if top in OPTIONAL:
                assert package in OPTIONAL[top], f"{path.relative_to(CORE)} imports the optional {top}"
                continue
            names = {d.lower() for d in distributions.get(top, [top])}
            if not names & required:
                missing.append(f"{path.relative_to(CORE)}: {full}")
    assert not missing, f"imported but not in Resources/requirements.txt: {missing}"


def test_pyproject_takes_its_dependencies_from_the_requirements_file():
    declared = [r for r in importlib.metadata.requires("pasta-slicer") if "extra ==" not in r]
    from pastacore import deps

    assert declared == [f"{name}{spec}" for name, spec, _ in deps.requirements()]


def test_constraints_keep_what_slicer_bundles():
    from pastacore import deps

    lines = deps.constraints()
    pinned = {line.split("==")[0].lower(): line.split("==")[1] for line in lines}
    for name in ("numpy", "simpleitk", "pydicom", "pillow"):
        assert pinned[name] == importlib.metadata.version(name)
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+==\S+", line) for line in lines)


def test_every_requirement_says_what_it_is_for():
    from pastacore import deps

    for name, spec, purpose in deps.requirements():
        assert spec.startswith(">=") and purpose, name


@pytest.mark.parametrize("module", ["PastaSlicer", "PastaSegment", "PastaSynth"])
def test_module_files_hold_no_worker_threads(module):
    text = (ROOT / module / f"{module}.py").read_text(encoding="utf-8")
    assert "threading" not in text and "BackgroundTask" not in text
