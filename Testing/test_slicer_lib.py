"""The Slicer-side helper package's Qt-free parts, runnable without Slicer."""

import sys
from pathlib import Path

import pytest

from pastacore.errors import PastaError

MODULE_DIR = Path(__file__).resolve().parent.parent / "PastaSlicer"


@pytest.fixture()
def slicer_lib(monkeypatch):
    monkeypatch.syspath_prepend(str(MODULE_DIR))
    import PastaSlicerLib

    return PastaSlicerLib


def test_import_engine_returns_the_module(slicer_lib):
    synthesis = slicer_lib.importEngine("pastacore.synthesis", "synthesis engine not installed yet")
    assert callable(synthesis.synthesize_lesion)


def test_import_engine_names_a_missing_python_package(slicer_lib, tmp_path, monkeypatch):
    (tmp_path / "engine_needing_a_package.py").write_text("import package_nobody_installed_4711\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PastaError) as caught:
        slicer_lib.importEngine("engine_needing_a_package", "engine not installed yet")
    message = str(caught.value)
    assert "'package_nobody_installed_4711' is missing" in message and "install it" in message
    assert "\n" not in message
    sys.modules.pop("engine_needing_a_package", None)


def test_import_engine_without_the_core_module_says_so(slicer_lib):
    with pytest.raises(PastaError, match="^segmentation engine not installed yet$"):
        slicer_lib.importEngine("pastacore.engine_that_does_not_exist", "segmentation engine not installed yet")
