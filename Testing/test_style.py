"""The tree stays as ruff (configured in pyproject.toml) wants it: lint clean and formatted."""

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
