"""Lesion measurements against pyradiomics' reference values, and the report exports.

Real data: the pyradiomics ``lung1`` and ``lung2`` CTs with their tumour masks and the
reference values of ``data/baseline/baseline_shape.csv`` / ``baseline_firstorder.csv``.
DICOM outputs are checked with ``dciodvfy`` (Debian package ``dicom3tools``) and read back
with highdicom.
"""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import make_volume, rotation, run_cli

from pastacore.cli.main import main
from pastacore.errors import PastaError
from pastacore.fileio import read_volume
from pastacore.geometry import Grid, Volume
from pastacore.report.export import case_info, make_report, write_report
from pastacore.report.measure import measure_lesions
from pastacore.report.report_json import FIXED_KEYS
from pastacore.samples import baseline_values

run = run_cli


def rel(ours, reference):
    return abs(ours - reference) / abs(reference)


# --- measurements against pyradiomics -------------------------------------------------------


@pytest.mark.parametrize("case", ["lung1", "lung2"])
def test_measurements_match_pyradiomics_baseline(case, request):
    image, label = request.getfixturevalue(case)
    ref = {k: float(v) for k, v in baseline_values(case).items() if k.startswith("original_") and v}
    (m,) = measure_lesions(image, label, lesion_labels=[1])
    assert rel(m.volume_ml * 1000, ref["original_shape_VoxelVolume"]) < 0.005
    assert rel(m.mean_hu, ref["original_firstorder_Mean"]) < 0.005
    assert rel(m.max_diameter_3d_mm, ref["original_shape_Maximum3DDiameter"]) < 0.03
    # the other shared definitions agree as closely
    assert rel(m.std_hu**2, ref["original_firstorder_Variance"]) < 0.005
    assert m.median_hu == ref["original_firstorder_Median"]
    assert (m.min_hu, m.max_hu) == (ref["original_firstorder_Minimum"], ref["original_firstorder_Maximum"])
    for ours, key in zip(m.principal_axes_mm, ("MajorAxisLength", "MinorAxisLength", "LeastAxisLength")):
        assert rel(ours, ref[f"original_shape_{key}"]) < 0.005
    # RECIST long axis: pyradiomics' 2D slice diameter restricted to real slices (never larger)
    assert m.long_axis_mm <= ref["original_shape_Maximum2DDiameterSlice"] + 1e-6
    assert rel(m.long_axis_mm, ref["original_shape_Maximum2DDiameterSlice"]) < 0.02
    assert 0 < m.short_axis_mm <= m.long_axis_mm <= m.max_diameter_3d_mm
    assert m.slice_range[0] <= m.axis_slice <= m.slice_range[1] and not m.touches_border
    # centroid: RAS is LPS with x and y negated, and it lies inside the lesion's box
    assert np.allclose(m.centroid_ras_mm, np.array(m.centroid_lps_mm) * [-1, -1, 1])
    assert np.all(np.array(m.bbox_ijk[0]) <= m.centroid_ijk) and np.all(m.centroid_ijk <= np.array(m.bbox_ijk[1]))


def _ellipse_volume(direction=None, spacing=(0.5, 0.5, 2.0)):
    """A 40 x 16 mm elliptic cylinder, 6 slices, rotated 30 degrees in-plane."""
    shape = (12, 120, 120)
    k, j, i = np.indices(shape)
    x, y = (i - 60) * spacing[0], (j - 60) * spacing[1]
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    inside = ((x * c + y * s) / 20.0) ** 2 + ((-x * s + y * c) / 8.0) ** 2 <= 1.0
    mask = (inside & (k >= 3) & (k < 9)).astype(np.uint8)
    grid = Grid(shape, spacing, (10.0, -20.0, 30.0), np.eye(3) if direction is None else direction)
    ct = np.where(mask, 40.0, -1000.0).astype(np.float32)
    return Volume(ct, grid), Volume(mask, grid, is_label=True)


def test_recist_axes_on_a_known_ellipse_do_not_depend_on_the_direction():
    results = []
    for direction in (None, rotation(10, -25, 40), rotation(0, 0, 90, left_handed=True)):
        image, label = _ellipse_volume(direction)
        (m,) = measure_lesions(image, label)
        results.append(m)
        assert m.long_axis_mm == pytest.approx(40.0, abs=1.0)
        assert m.short_axis_mm == pytest.approx(16.0, abs=1.0)
        assert m.max_diameter_3d_mm == pytest.approx(np.hypot(40.0, 12.0), abs=1.0)
        assert m.mean_hu == 40.0 and m.std_hu == 0.0
        a, b = np.array(m.long_axis_ijk), np.array(m.short_axis_ijk)
        u, v = (a[1] - a[0])[:2] * 0.5, (b[1] - b[0])[:2] * 0.5  # pixel -> mm (0.5 mm pixels)
        assert abs(u @ v) / (np.linalg.norm(u) * np.linalg.norm(v)) < 0.02  # perpendicular
    for m in results[1:]:
        assert m.long_axis_mm == pytest.approx(results[0].long_axis_mm, abs=1e-6)
        assert m.volume_ml == pytest.approx(results[0].volume_ml)


def test_components_organ_side_and_border_flag():
    image = make_volume((20, 40, 40), (1.0, 1.0, 2.0))
    image.array[:] = -1000
    image.array[:, 5:35, 5:35] = 30  # a body centred at i = 19.5
    labels = np.zeros(image.array.shape, np.uint8)
    labels[8:12, 10:15, 8:12] = 1  # patient right (small i = LPS -x)
    labels[8:12, 20:25, 28:32] = 1  # patient left (same size)
    labels[0:3, 30:33, 18:22] = 2  # touches the first slice
    organs = np.zeros_like(labels)
    organs[5:15, 5:20, 5:18] = 3
    seg = image.with_array(labels, is_label=True)
    ms = measure_lesions(image, seg, organs=image.with_array(organs, is_label=True), organ_names={3: "right kidney"})
    assert [(m.label, m.component) for m in ms] == [(1, 1), (1, 2), (2, 1)]
    right, left, edge = ms
    assert right.organ == "right kidney" and right.organ_relation == "inside" and right.side == "right"
    assert left.organ == "" and left.side == "left"
    assert edge.touches_border and edge.flags and not right.touches_border
    whole = measure_lesions(image, seg, lesion_labels=[1], split_components=False)
    assert len(whole) == 1 and whole[0].voxel_count == right.voxel_count + left.voxel_count


@pytest.mark.parametrize(
    "labels, kwargs, message",
    [
        ("empty", {}, "segmentation is empty"),
        ("other grid", {}, "does not match the image grid"),
        ("lung1", {"lesion_labels": [3]}, "label 3 is not present"),
    ],
)
def test_bad_input_is_refused(lung1, labels, kwargs, message):
    image, label = lung1
    if labels == "empty":
        label = label.with_array(np.zeros_like(label.array))
    elif labels == "other grid":
        label = Volume(label.array, Grid(label.grid.shape, (1.0, 1.0, 1.0)), is_label=True)
    with pytest.raises(PastaError, match=message):
        measure_lesions(image, label, **kwargs)


# --- the report folder ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lung1_report(tmp_path_factory, sample_dir):
    out = tmp_path_factory.mktemp("report") / "lung1"
    code = main(
        [
            "report",
            str(sample_dir / "lung1_image.nrrd"),
            str(sample_dir / "lung1_label.nrrd"),
            "--out-dir",
            str(out),
            "--lesion-label",
            "1",
        ]
    )
    assert code == 0
    return out


def test_report_json_and_type_json(lung1_report, sample_dir):
    data = json.loads((lung1_report / "report.json").read_text())
    assert data["disclaimer"].startswith("Research use only") and data["software"]["version"]
    assert data["case"]["image_name"] == "lung1_image.nrrd" and not data["case"]["is_dicom"]
    assert any("derived" in note for note in data["notes"])  # non-DICOM input: says what the DICOM holds
    (lesion,) = data["lesions"]
    assert all(key in lesion for key in FIXED_KEYS)
    ref = baseline_values("lung1")
    assert lesion["volume_ml"] == pytest.approx(float(ref["original_shape_VoxelVolume"]) / 1000, rel=5e-3)
    assert lesion["max_diameter_3d_mm"] == pytest.approx(float(ref["original_shape_Maximum3DDiameter"]), rel=0.03)
    assert len(lesion["centroid_ras_mm"]) == 3 and lesion["attributes"] == {}
    types = json.loads((lung1_report / "type.json").read_text())
    (value,) = types.values()
    assert len(value) == 4 and value[1] == "" and value[2]["CT value"].endswith(" HU,")
    centre, size = value[3]
    assert len(centre[0]) == 3 and len(size[0]) == 3 and all(s > 0 for s in size[0])


def test_html_and_pdf_hold_the_key_images(lung1_report):
    html = (lung1_report / "report.html").read_text()
    assert 'src="images/lesion_1.png"' in html and "Research use only" in html
    png = (lung1_report / "images" / "lesion_1.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    pdf = (lung1_report / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and pdf.count(b"/Type /Page\n") + pdf.count(b"/Type /Page ") >= 2


def _dciodvfy_errors(path):
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]


@pytest.mark.skipif(
    shutil.which("dciodvfy") is None,
    reason="dciodvfy not installed (Debian package dicom3tools; Utilities/bootstrap.sh test installs it)",
)
def test_dicom_outputs_pass_dciodvfy(lung1_report):
    for path in (
        lung1_report / "dicom" / "seg.dcm",
        lung1_report / "dicom" / "sr.dcm",
        sorted((lung1_report / "dicom" / "ct").glob("*.dcm"))[0],
    ):
        assert _dciodvfy_errors(path) == [], path.name


def test_dicom_outputs_read_back_with_highdicom(lung1_report, lung1):
    hd = pytest.importorskip("highdicom")
    image, label = lung1
    seg = hd.seg.segread(lung1_report / "dicom" / "seg.dcm")
    assert seg.number_of_segments == 1
    ct_uids = {p.name: None for p in (lung1_report / "dicom" / "ct").glob("*.dcm")}
    assert len(ct_uids) == image.array.shape[0]
    sources = {ds.ReferencedSOPInstanceUID for ds in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert len(sources) == len(np.unique(np.nonzero(label.array)[0]))  # the slices holding the lesion
    # the SEG's pixels are the mask (frames are the lesion's slices, ordered by position)
    pixels = seg.get_volume().array if hasattr(seg, "get_volume") else None
    if pixels is not None:
        assert int(pixels.sum()) == int(label.array.sum())
    sr = hd.sr.srread(lung1_report / "dicom" / "sr.dcm")
    groups = sr.content.get_volumetric_roi_measurement_groups()
    assert len(groups) == 1
    group = groups[0]
    assert group.referenced_segment.referenced_sop_instance_uid == seg.SOPInstanceUID
    volume = next(m for m in group.get_measurements() if m.name.value == "118565006")
    ref = float(baseline_values("lung1")["original_shape_VoxelVolume"]) / 1000
    assert volume.value == pytest.approx(ref, rel=5e-3) and volume.unit.value == "mL"


def test_dicom_input_is_referenced_not_copied(lung1, tmp_path):
    """A DICOM CT: the SEG and SR reference its own instances, in its own study."""
    hd = pytest.importorskip("highdicom")
    from pastacore.report.dicom_export import write_derived_ct
    from pastacore.report.model import CaseInfo

    image, label = lung1
    ks = np.unique(np.nonzero(label.array)[0])
    box = slice(ks[0] - 2, ks[-1] + 3)  # a short series around the tumour keeps the test quick
    small = Volume(
        image.array[box],
        Grid(image.array[box].shape, image.grid.spacing, image.grid.index_to_lps([0, 0, box.start]), image.grid.direction),
    )
    write_derived_ct(small, tmp_path / "ct", CaseInfo("anon", patient_id="P1"))
    dicom = read_volume(tmp_path / "ct")
    assert dicom.meta["dicom_files"]
    seg_labels = Volume(label.array[box], dicom.grid, is_label=True)
    report = make_report(dicom, seg_labels, case=case_info(dicom, tmp_path / "ct"), lesion_labels=[1])
    assert report.case.is_dicom and report.case.patient_id == "P1"
    write_report(report, dicom, seg_labels, tmp_path / "out", formats=("seg", "sr"))
    assert not (tmp_path / "out" / "dicom" / "ct").exists()
    seg = hd.seg.segread(tmp_path / "out" / "dicom" / "seg.dcm")
    assert seg.StudyInstanceUID == dicom.meta["study_uid"]
    referenced = {ds.ReferencedSOPInstanceUID for ds in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    import pydicom

    originals = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in dicom.meta["dicom_files"]}
    assert referenced and referenced <= originals
    if shutil.which("dciodvfy"):
        assert _dciodvfy_errors(tmp_path / "out" / "dicom" / "sr.dcm") == []


# --- command line: bad input and cohorts -------------------------------------------------------


def test_cli_refuses_an_existing_report_without_overwrite(lung1_report, sample_dir, capsys):
    args = (
        "report",
        sample_dir / "lung1_image.nrrd",
        sample_dir / "lung1_label.nrrd",
        "--out-dir",
        lung1_report,
        "--formats",
        "json",
        "--lesion-label",
        "1",
    )
    code, _, err = run(capsys, *args)
    assert code == 2 and err.startswith("error: ") and "--overwrite" in err
    assert (lung1_report / "report.pdf").is_file()  # untouched
    code, _, _ = run(capsys, *args, "--overwrite")
    assert code == 0 and not (lung1_report / "report.pdf").exists()  # the earlier report's files are replaced


@pytest.mark.parametrize(
    "problem, message",
    [
        ("absent label", "label 7 is not present"),
        ("empty", "segmentation is empty"),
        ("other grid", "does not match the image grid"),
        ("bad format", "unknown report format"),
    ],
)
def test_cli_bad_input_is_one_line_error(problem, message, sample_dir, tmp_path, capsys, lung1):
    from pastacore.fileio import write_volume

    image_path, seg_path = sample_dir / "lung1_image.nrrd", sample_dir / "lung1_label.nrrd"
    extra = []
    _, label = lung1
    if problem == "absent label":
        extra = ["--lesion-label", "7"]
    elif problem == "empty":
        seg_path = tmp_path / "empty.nrrd"
        write_volume(label.with_array(np.zeros_like(label.array)), seg_path)
    elif problem == "other grid":
        seg_path = tmp_path / "moved.nrrd"
        write_volume(Volume(label.array, Grid(label.grid.shape, (1, 1, 1)), is_label=True), seg_path)
    else:
        extra = ["--formats", "json,docx"]
    code, _, err = run(capsys, "report", image_path, seg_path, "--out-dir", tmp_path / "out", *extra)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[-1].startswith("error: ") and message in lines[-1], err
    assert not (tmp_path / "out").exists()


def test_cli_border_lesion_is_measured_and_flagged(tmp_path, capsys, lung1):
    from pastacore.fileio import write_volume

    image, label = lung1
    ks = np.unique(np.nonzero(label.array)[0])
    cut = slice(ks[1], ks[-1] + 4)  # the series starts inside the tumour
    grid = Grid(image.array[cut].shape, image.grid.spacing, image.grid.index_to_lps([0, 0, cut.start]), image.grid.direction)
    write_volume(Volume(image.array[cut], grid), tmp_path / "ct.nrrd")
    write_volume(Volume(label.array[cut], grid, is_label=True), tmp_path / "seg.nrrd")
    code, out, err = run(
        capsys,
        "report",
        tmp_path / "ct.nrrd",
        tmp_path / "seg.nrrd",
        "--out-dir",
        tmp_path / "r",
        "--formats",
        "json",
        "--lesion-label",
        "1",
    )
    assert code == 0 and "border" in out
    (lesion,) = json.loads((tmp_path / "r" / "report.json").read_text())["lesions"]
    assert lesion["touches_border"] and lesion["volume_ml"] > 0


def test_cli_cohort_csv(sample_dir, tmp_path, capsys):
    import csv

    (tmp_path / "cases.csv").write_text(
        "image,seg,case_id\n"
        f"{sample_dir / 'lung1_image.nrrd'},{sample_dir / 'lung1_label.nrrd'},L1\n"
        f"{sample_dir / 'lung2_image.nrrd'},{sample_dir / 'lung2_label.nrrd'},L2\n"
    )
    code, out, err = run(
        capsys,
        "report",
        "--cases",
        tmp_path / "cases.csv",
        "--out-dir",
        tmp_path / "cohort",
        "--formats",
        "json",
        "--lesion-label",
        "1",
    )
    assert code == 0, err
    rows = list(csv.DictReader(open(tmp_path / "cohort" / "cohort.csv")))
    assert [r["case_id"] for r in rows] == ["L1", "L2"]
    ref = float(baseline_values("lung2")["original_shape_VoxelVolume"]) / 1000
    assert float(rows[1]["volume_ml"]) == pytest.approx(ref, rel=5e-3)
    assert (tmp_path / "cohort" / "L1" / "report.json").is_file()
    assert [(r["status"], r["mean_probability"], r["recist_role"], r["segmentation_model"]) for r in rows] == [
        ("unknown", "", "target", "unknown")
    ] * 2


def test_names_from_a_segment_sidecar_split_organs_and_lesions(lung1, tmp_path):
    """A ``pasta segment``-style label map (1 organ, 2 lesion) with its JSON sidecar."""
    from pastacore.report.export import label_names_of

    image, label = lung1
    labels = (label.array > 0).astype(np.uint8) * 2
    ks = np.unique(np.nonzero(labels)[0])
    organ = np.zeros_like(labels)
    organ[ks[0] - 1 : ks[-1] + 2, 150:450, 235:480] = 1  # 3.4 mm beside the tumour
    labels = np.where(labels > 0, labels, organ)
    (tmp_path / "seg.json").write_text(
        json.dumps(
            {
                "labels": {"1": {"name": "lung"}, "2": {"name": "lung tumor"}},
                "model": {"name": "pasta-lung", "version": "1", "sha256": "ab"},
            }
        )
    )
    seg = image.with_array(labels, is_label=True)
    names, models, names_from = label_names_of(seg, tmp_path / "seg.nii.gz")
    assert names_from == "seg.json"
    report = make_report(image, seg, case=case_info(image, "x.nrrd"), label_names=names, names_from=names_from, models=models)
    (lesion,) = report.lesions
    m = lesion.measurement
    assert m.label == 2 and m.organ == "lung" and m.organ_relation == "adjacent" and lesion.term == "tumor@lung"
    assert m.side in ("left", "right") and report.models[0].name == "pasta-lung"


# --- Slicer table node ------------------------------------------------------------------------


def test_measurement_table_node_updates_in_place(scene, lung1):
    from pastacore.mrml import segmentations, tables, volumes
    from pastacore.terminology import segment_info

    image, label = lung1
    node = volumes.node_from_volume(scene.scene, image, "lung1")
    seg, added = segmentations.add_labels_to_segmentation(scene.scene, label, {1: segment_info("tumor@lung")}, node)
    table, ms = tables.update_table_from_segmentation(scene.scene, seg, node)
    assert table.GetNumberOfRows() == 1 and table.GetCellText(0, 1) == "Lung tumor"
    volume_col = [c[0] for c in tables.COLUMNS].index("Volume")
    ref = float(baseline_values("lung1")["original_shape_VoxelVolume"]) / 1000
    assert float(table.GetCellText(0, volume_col)) == pytest.approx(ref, rel=5e-3)
    assert table.GetColumnUnitLabel("Volume") == "mL"
    # an edit: a second lesion painted far away -> same node, two rows
    labels = label.array.copy()
    labels[5:8, 100:110, 100:110] = 2
    seg2, _ = segmentations.add_labels_to_segmentation(
        scene.scene, label.with_array(labels), {2: segment_info("nodule@lung")}, node, seg
    )
    same, ms = tables.update_table_from_segmentation(scene.scene, seg2, node, table)
    assert same.GetID() == table.GetID() and table.GetNumberOfRows() == 2


def test_attributes_with_probabilities_reach_json_type_json_and_sr(lung1, tmp_path):
    hd = pytest.importorskip("highdicom")
    from pastacore.report.model import AttributeValue

    image, label = lung1
    attributes = {
        1: {
            "shape": AttributeValue("Irregular", {"Round-like": 0.2, "Irregular": 0.8}, "head.pt"),
            "density": AttributeValue("Hypodense", None, "manual"),
        }
    }
    report = make_report(image, label, case=case_info(image, "lung1.nrrd"), attributes=attributes, lesion_labels=[1])
    write_report(report, image, label, tmp_path / "r", formats=("json", "sr"))
    (lesion,) = json.loads((tmp_path / "r" / "report.json").read_text())["lesions"]
    assert lesion["attributes"]["shape"] == {
        "value": "Irregular",
        "probabilities": {"Round-like": 0.2, "Irregular": 0.8},
        "source": "head.pt",
    }
    (entry,) = json.loads((tmp_path / "r" / "type.json").read_text()).values()
    assert entry[0] == "irregular," and entry[2]["density"] == "low density lesion,"
    assert not (tmp_path / "r" / "dicom" / "seg.dcm").exists()  # only the SR was asked for
    sr = hd.sr.srread(tmp_path / "r" / "dicom" / "sr.dcm")
    (group,) = sr.content.get_volumetric_roi_measurement_groups()
    values = {e.name.meaning: e.value.meaning for e in group.get_qualitative_evaluations()}
    assert (values["Shape"], values["Density"]) == ("Irregular", "Hypodense")
    assert values["RECIST 1.1 role"] == "Target Lesion at Baseline" and values["Review status"] == "Unknown"
    if shutil.which("dciodvfy"):
        assert _dciodvfy_errors(tmp_path / "r" / "dicom" / "sr.dcm") == []


def test_a_lungs_and_tumour_map_without_names_reports_the_tumour_only(lung1, tmp_path, capsys):
    """No sidecar: 1 = organ, 2 = lesion. The lungs are never reported as lesions, and the report
    says which label it measured and why; --lesion-label still measures whatever it is told."""
    from pastacore.anatomy.organs import classical_organ
    from pastacore.fileio import write_volume

    image, tumour = lung1
    lungs = classical_organ(image, "lungs").array > 0
    labels = np.where(tumour.array > 0, 2, np.where(lungs, 1, 0)).astype(np.uint8)
    write_volume(image, tmp_path / "ct.nrrd")
    write_volume(tumour.with_array(labels), tmp_path / "seg.nii.gz")
    code, out, err = run(
        capsys, "report", tmp_path / "ct.nrrd", tmp_path / "seg.nii.gz", "--out-dir", tmp_path / "r", "--formats", "json"
    )
    assert code == 0, err
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert [lesion["number"] for lesion in data["lesions"]] == [1] and data["lesion_labels"]["values"] == [2]
    ref = float(baseline_values("lung1")["original_shape_VoxelVolume"]) / 1000
    assert data["lesions"][0]["volume_ml"] == pytest.approx(ref, rel=5e-3)
    assert "convention 1 = organ, 2 = lesion" in data["lesion_labels"]["reason"]
    assert data["lesion_labels"]["reason"] in data["notes"] and "convention" in out
    code, _, _ = run(
        capsys,
        "report",
        tmp_path / "ct.nrrd",
        tmp_path / "seg.nii.gz",
        "--out-dir",
        tmp_path / "r",
        "--formats",
        "json",
        "--lesion-label",
        "1",
        "--overwrite",
    )
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert code == 0 and {lesion["label"] for lesion in data["lesions"]} == {1}
    assert data["lesion_labels"]["reason"] == "Lesions: label 1, as chosen by the user."


def test_lesion_labels_are_decided_in_one_place():
    from pastacore.labels import choose_lesion_labels

    assert choose_lesion_labels({1, 2, 3}).values == [2]  # the convention; 3 has no meaning there
    assert "label 3 not measured" in choose_lesion_labels({1, 2, 3}).reason
    named = choose_lesion_labels({1, 2}, {1: "liver", 2: "liver tumor"}, names_from="seg.json")
    assert named.values == [2] and named.organ_values == [1] and "seg.json" in named.reason
    assert choose_lesion_labels({1, 2}, {1: "Segment_1", 2: "Segment_2"}).values == [1, 2]  # names, none an organ
    with pytest.raises(PastaError, match="holds no lesion label: 1 \\(lung\\)"):
        choose_lesion_labels({1}, {1: "lung"}, names_from="seg.json")
    with pytest.raises(PastaError, match="no lesion label 2"):
        choose_lesion_labels({1})
    assert choose_lesion_labels({1}, explicit=[1]).values == [1]


# --- provenance and confidence through the command line -----------------------------------------


def test_model_and_confidence_travel_from_pasta_segment_to_every_report_format(sample_dir, lung2, tmp_path, capsys):
    """``pasta segment`` (the built-in model, in a box around lung2's tumour) records the model and
    each candidate's confidence in its sidecar; ``pasta report`` states them in every format."""
    hd = pytest.importorskip("highdicom")
    image, tumour = lung2
    centre = image.grid.ijk_to_ras() @ np.array([*np.argwhere(tumour.array > 0).mean(axis=0)[::-1], 1.0])
    box = ",".join(f"{v:.1f}" for v in (*(centre[:3] - 45), *(centre[:3] + 45)))
    code, _, err = run(capsys, "segment", sample_dir / "lung2_image.nrrd", "--out", tmp_path / "seg.nii.gz", f"--roi={box}")
    assert code == 0, err
    sidecar = json.loads((tmp_path / "seg.json").read_text())
    description = json.loads(
        (Path(__file__).parents[1] / "Resources" / "models" / "pasta-lung-default" / "model.json").read_text()
    )
    assert sidecar["model"]["sha256"] == description["files"][0]["sha256"]
    assert sidecar["model"]["reporting_floor"] == description["reporting_floor"]
    candidates = sidecar["candidates"]["2"]
    assert candidates and all(0 < c["mean_probability"] <= c["max_probability"] <= 1 for c in candidates)
    code, out, err = run(
        capsys,
        "report",
        sample_dir / "lung2_image.nrrd",
        tmp_path / "seg.nii.gz",
        "--out-dir",
        tmp_path / "r",
        "--formats",
        "json,html,pdf,sr",
    )
    assert code == 0, err
    assert "Segmentation made by pasta-lung-default 0.3" in out
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert [m["name"] for m in data["models"]] == ["pasta-lung-default"]
    assert data["floor"]["min_confidence"] == 0.7 and "model pasta-lung-default" in data["floor"]["source"]
    lesions = data["lesions"]
    assert lesions and all(lesion["status"] == "proposed" and lesion["mean_probability"] >= 0.7 for lesion in lesions)
    assert all(lesion["volume_ml"] >= 0.03 and lesion["long_axis_mm"] >= 3 for lesion in lesions)
    assert len(lesions) + len(data["below_floor"]) == len(candidates)
    assert any(_holds_tumour(lesion, tumour) for lesion in lesions)  # the real tumour is among the candidates
    html = (tmp_path / "r" / "report.html").read_text()
    assert "pasta-lung-default 0.3" in html and description["files"][0]["sha256"] in html
    assert f"{lesions[0]['mean_probability']:.2f} / {lesions[0]['max_probability']:.2f}" in html
    sr = hd.sr.srread(tmp_path / "r" / "dicom" / "sr.dcm")
    group = sr.content.get_volumetric_roi_measurement_groups()[0]
    probability = [m for m in group.get_measurements() if m.name.value == "122157"]
    assert sorted(round(m.value, 3) for m in probability) == sorted(
        round(lesions[0][key], 3) for key in ("mean_probability", "max_probability")
    )
    roles = {e.name.meaning: e.value.meaning for e in group.get_qualitative_evaluations()}
    assert roles["Review status"] == "Proposed" and "Lesion at Baseline" in roles["RECIST 1.1 role"]
    if shutil.which("dciodvfy"):
        assert _dciodvfy_errors(tmp_path / "r" / "dicom" / "sr.dcm") == []
    # the floor is the user's to change on the command line
    code, _, err = run(
        capsys,
        "report",
        sample_dir / "lung2_image.nrrd",
        tmp_path / "seg.nii.gz",
        "--out-dir",
        tmp_path / "all",
        "--formats",
        "json",
        "--min-confidence",
        "0",
        "--min-volume-ml",
        "0",
        "--min-long-axis-mm",
        "0",
    )
    everything = json.loads((tmp_path / "all" / "report.json").read_text())
    assert code == 0 and len(everything["lesions"]) == len(candidates) and not everything["below_floor"]
    assert everything["floor"]["source"] == "given by the user"


def _holds_tumour(lesion, tumour) -> bool:
    i, j, k = (int(round(v)) for v in lesion["centroid_ijk"])
    return bool(tumour.array[k, j, i])


def test_a_segmentation_without_a_recorded_model_says_its_origin_is_unknown(lung1_report):
    data = json.loads((lung1_report / "report.json").read_text())
    assert data["models"] == [] and data["origin"].startswith("Origin of the segmentation unknown")
    assert data["lesions"][0]["status"] == "unknown" and data["lesions"][0]["mean_probability"] is None


def test_key_images_use_one_window_per_report_with_true_proportions(lung1):
    from pastacore.report.key_images import LUNG_WINDOW, SOFT_TISSUE_WINDOW, lesion_figure, lesion_mask, report_window

    image, label = lung1
    (m,) = measure_lesions(image, label, lesion_labels=[1])
    m.organ = "right lung"
    other = measure_lesions(image, label, lesion_labels=[1])[0]
    other.organ = "liver"
    assert report_window(image, [m, m, other]) == ("lung", LUNG_WINDOW)
    assert report_window(image, [other]) == ("soft tissue", SOFT_TISSUE_WINDOW)
    box, mask = lesion_mask(label.array, m)
    fig = lesion_figure(image, box, mask, m, window=LUNG_WINDOW)
    try:
        si, sj, sk = image.grid.spacing
        pictures = [ax.get_images()[0] for ax in fig.axes]
        assert all(p.get_clim() == LUNG_WINDOW for p in pictures)  # the same window in all three views
        # each view at the scan's true proportions: pixel height / width = spacing ratio
        assert [ax.get_aspect() for ax in fig.axes] == pytest.approx([sj / si, sk / si, sk / sj])
        texts = [t.get_text() for ax in fig.axes for t in ax.texts]
        assert sum(t.endswith(" mm") for t in texts) == 3  # a scale bar in each view
        legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        assert legend == [f"long axis {m.long_axis_mm:.1f} mm", f"short axis {m.short_axis_mm:.1f} mm"]
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
