"""The tree stays as ruff (configured in pyproject.toml) wants it: lint clean and formatted."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def ruff() -> list:
    beside = Path(sys.executable).with_name("ruff")
    found = str(beside) if beside.exists() else shutil.which("ruff")
    if not found:
        pytest.skip("ruff is not installed (the test extra installs it)")
    return [found]


@pytest.mark.parametrize("check", [["check", "--output-format", "concise"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff_is_clean(check):
    done = subprocess.run(ruff() + check + ["."], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"ruff {' '.join(check)} found:\n{done.stdout[-4000:]}{done.stderr[-2000:]}"


def test_ruff_would_catch_a_problem(tmp_path):
    """The configuration is live: an unused import and a badly formatted line are found."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nx = [1,2 ,3]\n")
    config = ["--config", str(ROOT / "pyproject.toml")]
    lint = subprocess.run(ruff() + ["check", *config, str(bad)], capture_output=True, text=True, timeout=60)
    fmt = subprocess.run(ruff() + ["format", "--check", *config, str(bad)], capture_output=True, text=True, timeout=60)
    assert lint.returncode == 1 and "F401" in lint.stdout
    assert fmt.returncode == 1


def _public_functions(tree: ast.Module):
    """``(qualified name, function, is_method)`` of the module's public functions and of the
    methods of its public classes (``__init__`` counts; other dunders and ``_private`` do not)."""

    def public(name: str) -> bool:
        return not name.startswith("_") or name == "__init__"

    def members(body, prefix, in_class):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and public(node.name):
                yield prefix + node.name, node, in_class
            elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                yield from members(node.body, f"{prefix}{node.name}.", True)

    yield from members(tree.body, "", False)


def _unannotated(function: ast.FunctionDef, is_method: bool) -> list:
    """Names of the parameters without an annotation (self/cls, *args and **kwargs exempt), and
    ``return`` when the return type is missing."""
    static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in function.decorator_list)
    positional = function.args.posonlyargs + function.args.args
    if is_method and not static and positional:
        positional = positional[1:]
    missing = [a.arg for a in positional + function.args.kwonlyargs if a.annotation is None]
    return missing + (["return"] if function.returns is None else [])


def test_public_core_functions_are_annotated():
    """Issue 23: every public function of the Qt-free core has parameter and return type hints."""
    core = ROOT / "PastaSlicer" / "pastacore"
    offenders, checked = [], 0
    for path in sorted(core.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for name, function, is_method in _public_functions(tree):
            checked += 1
            missing = _unannotated(function, is_method)
            if missing:
                offenders.append(f"{path.relative_to(ROOT).as_posix()}:{function.lineno} {name}: {', '.join(missing)}")
    assert checked > 500, f"only {checked} public functions found under {core}"
    assert not offenders, f"{len(offenders)} public function(s) lack type hints:\n" + "\n".join(offenders)


def test_annotation_check_finds_what_is_missing():
    """The check is live: a missing parameter or return annotation is reported, self/cls,
    *args/**kwargs and private names are not."""
    tree = ast.parse(
        "def f(a, b: int) -> int: ...\n"
        "def g(*args, **kwargs): ...\n"
        "def _private(x): ...\n"
        "class C:\n"
        "    def __init__(self, x): ...\n"
        "    def m(self, y: int) -> None: ...\n"
        "    @staticmethod\n"
        "    def s(z) -> None: ...\n"
        "    def __repr__(self): ...\n"
        "class _Hidden:\n"
        "    def m(self, y): ...\n"
    )
    found = {name: _unannotated(function, is_method) for name, function, is_method in _public_functions(tree)}
    assert found == {"f": ["a"], "g": ["return"], "C.__init__": ["x", "return"], "C.m": [], "C.s": ["z"]}
