"""The web app's controls without a browser: the same PastaWebLogic a click calls, on a real
trame-slicer scene (not served), with jobs run inline. Upload limits, typed boxes, synthesis,
export and scene saving."""

import asyncio
import json
import zipfile

import numpy as np
import pytest

pytest.importorskip("trame_slicer")


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    import os

    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    from trame.app import get_server

    from pastacore.tasks import InlineRunner
    from pastaweb.app import PastaWebApp
    from pastaweb.files import DataFolder

    data = tmp_path_factory.mktemp("data")
    out = tmp_path_factory.mktemp("out")
    server = get_server("pasta-web-logic-test", client_type="vue3")
    app = PastaWebApp(server, DataFolder(data), out, max_upload_mb=0.5, runner=InlineRunner())
    return app.logic, data, out


def write_phantom(folder):
    from conftest import phantom_ct

    from pastacore.fileio import write_volume

    return write_volume(phantom_ct(), folder / "phantom.nrrd")


def test_an_upload_over_the_limit_is_refused_and_nothing_kept(web):
    logic, _data, out = web
    big = {"name": "big.nii.gz", "content": b"\0" * 600_000}
    asyncio.run(logic.upload_chunk([big]))
    asyncio.run(logic.upload_chunk([]))
    assert logic.state.pasta_status == "error: the upload is larger than 0.5 MB; put the file in the server's data folder instead"
    assert not (out / "uploads").exists() or not any((out / "uploads").rglob("big.nii.gz"))


def test_upload_load_box_synthesise_export_and_save(web, tmp_path):
    logic, data, out = web
    path = write_phantom(tmp_path)
    asyncio.run(logic.upload_chunk([{"name": "phantom.nrrd", "content": path.read_bytes()}]))
    asyncio.run(logic.upload_chunk([]))
    assert logic.state.pasta_status == "Loaded phantom.nrrd." and logic.volume is not None
    logic.set_box("not a box")
    assert logic.state.pasta_status.startswith("error: a box is six")
    logic.set_box("-66,-18,-18,-30,18,18")  # around the left lung of the phantom
    assert logic.state.pasta_region == "box" and logic.roi is not None
    slices = [
        logic.scene.GetNthNodeByClass(i, "vtkMRMLSliceNode")
        for i in range(logic.scene.GetNumberOfNodesByClass("vtkMRMLSliceNode"))
    ]

    def planes():  # the RAS coordinate each view's plane is fixed at (R for sagittal, A coronal, S axial)
        axis = {"Sagittal": 0, "Coronal": 1, "Axial": 2}
        return {n.GetOrientation(): n.GetSliceToRAS().GetElement(axis[n.GetOrientation()], 3) for n in slices}

    assert planes() == pytest.approx({"Sagittal": -48.0, "Coronal": 0.0, "Axial": 0.0})
    logic.set_box("-60,-10,-14,-40,10,6")  # the views follow the box's centre
    assert planes() == pytest.approx({"Sagittal": -50.0, "Coronal": 0.0, "Axial": -4.0})
    logic.set_box("-66,-18,-18,-30,18,18")
    logic.state.pasta_attributes = "12 mm round-like solid lung nodule"
    logic._on_attributes(logic.state.pasta_attributes)
    assert logic.state.pasta_parsed.startswith("lung_tumor")
    logic.synthesize()
    assert logic.state.pasta_has_preview, logic.state.pasta_status
    assert any("Lung tumor" in name for name in logic.state.pasta_segments)
    assert logic.state.pasta_measurements and logic.state.pasta_measurements[0]["volume_ml"] > 0
    logic.apply()
    logic.export()
    archives = list(out.glob("*-report-*.zip"))
    assert len(archives) == 1 and logic.state.pasta_download["name"] == archives[0].name
    with zipfile.ZipFile(archives[0]) as handle:
        assert json.loads(handle.read("report.json"))["lesions"]
    content = logic.downloads.read(logic.state.pasta_download["key"])
    assert content == archives[0].read_bytes()
    logic.save_scene()
    scenes = list(out.glob("*.mrb"))
    assert len(scenes) == 1 and zipfile.is_zipfile(scenes[0])
    assert np.isfinite(logic.state.pasta_measurements[0]["mean_hu"])
