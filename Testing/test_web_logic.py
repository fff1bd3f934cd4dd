"""The web app's controls without a browser: the same panel logics a click calls, on a real
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
    asyncio.run(logic.load.upload_chunk([big]))
    asyncio.run(logic.load.upload_chunk([]))
    assert (
        logic.session.data.status == "error: the upload is larger than 0.5 MB; put the file in the server's data folder instead"
    )
    assert not (out / "uploads").exists() or not any((out / "uploads").rglob("big.nii.gz"))


def test_upload_load_box_synthesise_export_and_save(web, tmp_path):
    logic, data, out = web
    path = write_phantom(tmp_path)
    session, synth, edit = logic.session, logic.synth, logic.edit
    asyncio.run(logic.load.upload_chunk([{"name": "phantom.nrrd", "content": path.read_bytes()}]))
    asyncio.run(logic.load.upload_chunk([]))
    assert session.data.status == "Loaded phantom.nrrd." and session.volume is not None
    synth.set_box("not a box")
    assert session.data.status.startswith("error: a box is six")
    synth.set_box("-66,-18,-18,-30,18,18")  # around the left lung of the phantom
    assert logic.segment.data.region == "box" and session.roi is not None
    scene = session.scene
    slices = [scene.GetNthNodeByClass(i, "vtkMRMLSliceNode") for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceNode"))]

    def planes():  # the RAS coordinate each view's plane is fixed at (R for sagittal, A coronal, S axial)
        axis = {"Sagittal": 0, "Coronal": 1, "Axial": 2}
        return {n.GetOrientation(): n.GetSliceToRAS().GetElement(axis[n.GetOrientation()], 3) for n in slices}

    assert planes() == pytest.approx({"Sagittal": -48.0, "Coronal": 0.0, "Axial": 0.0})
    synth.set_box("-60,-10,-14,-40,10,6")  # the views follow the box's centre
    assert planes() == pytest.approx({"Sagittal": -50.0, "Coronal": 0.0, "Axial": -4.0})
    synth.set_box("-66,-18,-18,-30,18,18")
    synth.data.attributes = "12 mm round-like solid lung nodule"
    synth.on_attributes(synth.data.attributes)
    assert synth.data.parsed.startswith("lung_tumor")
    synth.synthesize()
    assert synth.data.has_preview, session.data.status
    assert any("Lung tumor" in name for name in edit.data.segments)
    assert edit.data.measurements and edit.data.measurements[0]["volume_ml"] > 0
    synth.apply()
    logic.export.export()
    download = logic.export.data.download
    archives = list(out.glob("*-report-*.zip"))
    assert len(archives) == 1 and download["name"] == archives[0].name
    with zipfile.ZipFile(archives[0]) as handle:
        assert json.loads(handle.read("report.json"))["lesions"]
    content = session.downloads.read(download["key"])
    assert content == archives[0].read_bytes()
    logic.export.save_scene()
    scenes = list(out.glob("*.mrb"))
    assert len(scenes) == 1 and zipfile.is_zipfile(scenes[0])
    assert np.isfinite(edit.data.measurements[0]["mean_hu"])
