"""The core imports, and its command line builds, with Slicer, VTK and Qt unavailable."""

import subprocess
import sys

BLOCKER = r"""
import importlib.abc, sys
BLOCKED = ("slicer", "vtk", "vtkmodules", "qt", "ctk", "PythonQt", "PyQt5", "PyQt6", "PySide2", "PySide6")
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"blocked for this test: {name}")
sys.meta_path.insert(0, Block())
import pkgutil, importlib, pastacore
names = [m.name for m in pkgutil.walk_packages(pastacore.__path__, "pastacore.")]
for name in names:
    importlib.import_module(name)
from pastacore.cli.main import build_parser
build_parser()
print(len(names))
"""


def test_core_imports_without_slicer_or_qt():
    result = subprocess.run([sys.executable, "-c", BLOCKER], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) >= 20  # every module was really imported


def test_blocker_really_blocks():
    # The same harness must fail when a module does import Slicer at import time.
    code = BLOCKER.replace("import pkgutil", "import slicer\nimport pkgutil")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0 and "blocked for this test" in result.stderr
