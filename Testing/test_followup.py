"""Follow-up on a synthetic second time point with a known answer, made with ``pasta synth`` on
the real lung1 CT: at baseline two synthetic lung lesions (A, 40 mm; B, 22 mm) and the real
tumour (R, 16 mm); at follow-up A has shrunk to 10 mm, B has grown to 28 mm, R is unchanged and a new
lesion C has appeared. ``pasta report --baseline`` and ``pasta compare`` must pair A, B and R
with themselves, find C new and call it PD (PR without C: the sum of diameters fell by more
than 30 %), also when the follow-up scan is moved and registered back."""

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from conftest import run_cli

from pastacore.cli.main import main
from pastacore.fileio import read_volume, write_volume

MOTION = {"angle_deg": 3.0, "shift_mm": (35.0, 20.0, 0.0)}  # how the patient lies differently at follow-up


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def _deep_points(lungs, spacing, count, apart_mm, avoid):
    """``count`` voxels (k, j, i) deep in the lungs, ``apart_mm`` from each other and from ``avoid``."""
    from scipy import ndimage

    depth = ndimage.distance_transform_edt(lungs, sampling=spacing[::-1])
    order = np.argsort(depth.ravel())[::-1]
    chosen = [np.asarray(a, float) for a in avoid]
    points = []
    for flat in order[:400000:37]:
        p = np.array(np.unravel_index(flat, lungs.shape), float)
        if all(np.linalg.norm((p - q) * spacing[::-1]) > apart_mm for q in chosen):
            points.append(p.astype(int))
            chosen.append(p)
            if len(points) == count:
                return points
    raise AssertionError("not enough room in the lungs")


def _synth(capsys, image, centre, size_mm, grid, seed, out):
    """``pasta synth`` of a ``size_mm`` solid lung nodule centred on voxel ``centre`` (k, j, i)."""
    half = np.ceil((size_mm / 2 + 6) / np.array(grid.spacing[::-1])).astype(int)
    lo, hi = np.maximum(centre - half, 0), np.minimum(centre + half, np.array(grid.shape) - 1)
    box = ",".join(str(int(v)) for v in (*lo[::-1], *hi[::-1]))
    run(
        capsys,
        "synth",
        image,
        "--box-ijk",
        box,
        "--attributes",
        f"{size_mm} mm round solid lung nodule, homogeneous",
        "--lesion-type",
        "lung_tumor",
        "--seed",
        seed,
        "--out-image",
        out / "ct.nii.gz",
        "--out-mask",
        out / "m.nii.gz",
        "--out-report",
        out / "r.json",
        "--overwrite",
    )
    return out / "ct.nii.gz", read_volume(out / "m.nii.gz", is_label=True).array == 2


@pytest.fixture(scope="module")
def time_points(lung1, sample_dir, tmp_path_factory):
    """Two time points: CT files, segmentations (+ sidecars naming the labels) and each lesion's mask."""
    from pastacore.anatomy.organs import classical_organ

    capsys = _Quiet()
    image, tumour = lung1
    folder = tmp_path_factory.mktemp("followup")
    lungs = classical_organ(image, "lungs").array > 0
    spacing = np.array(image.grid.spacing)
    real = np.argwhere(tumour.array > 0).mean(axis=0)
    a, b, c = _deep_points(lungs & ~(tumour.array > 0), spacing, 3, 60.0, [real])
    work = folder / "work"
    work.mkdir()
    masks = {}
    ct = sample_dir / "lung1_image.nrrd"
    ct, masks["A"] = _synth(capsys, ct, a, 40, image.grid, 1, work)
    shutil.copy(ct, folder / "base_a.nii.gz")
    baseline_ct, masks["B"] = _synth(capsys, folder / "base_a.nii.gz", b, 22, image.grid, 2, work)
    shutil.copy(baseline_ct, folder / "baseline.nii.gz")
    later = {}
    ct, later["A"] = _synth(capsys, sample_dir / "lung1_image.nrrd", a, 10, image.grid, 3, work)
    shutil.copy(ct, folder / "f1.nii.gz")
    ct, later["B"] = _synth(capsys, folder / "f1.nii.gz", b, 28, image.grid, 4, work)
    shutil.copy(ct, folder / "f2.nii.gz")
    ct, later["C"] = _synth(capsys, folder / "f2.nii.gz", c, 16, image.grid, 5, work)
    shutil.copy(ct, folder / "followup.nii.gz")
    masks["R"] = later["R"] = tumour.array > 0
    lung_label = lungs.astype(np.uint8)
    names = json.dumps({"labels": {"1": {"name": "lung"}, "2": {"name": "lung tumor"}}})
    for name, parts, keep in (("baseline", masks, "ABR"), ("followup", later, "ABRC"), ("followup_no_c", later, "ABR")):
        labels = lung_label.copy()
        for key in keep:
            labels[parts[key]] = 2
        write_volume(tumour.with_array(labels), folder / f"{name}_seg.nii.gz")
        (folder / f"{name}_seg.json").write_text(names)
    return folder, masks, later


class _Quiet:
    def readouterr(self):
        return "", ""


def _which(lesion, masks, grid):
    """The name of the lesion mask holding a report lesion's centroid."""
    k, j, i = (int(round(v)) for v in grid.lps_to_index(np.asarray(lesion["centroid_lps_mm"]))[::-1])
    names = [name for name, mask in masks.items() if mask[k, j, i]]
    return names[0] if names else None


@pytest.fixture(scope="module")
def reports(time_points, tmp_path_factory, lung1):
    folder, masks, later = time_points
    out = {}
    for name, image in (("baseline", "baseline"), ("followup", "followup"), ("followup_no_c", "followup")):
        target = folder / f"report_{name}"
        assert (
            main(
                [
                    "report",
                    str(folder / f"{image}.nii.gz"),
                    str(folder / f"{name}_seg.nii.gz"),
                    "--out-dir",
                    str(target),
                    "--formats",
                    "json,html",
                ]
            )
            == 0
        )
        out[name] = target
    return out


def test_the_baseline_chooses_the_two_largest_lung_lesions_as_targets(reports, time_points, lung1):
    _, masks, _ = time_points
    data = json.loads((reports["baseline"] / "report.json").read_text())
    which = {lesion["number"]: _which(lesion, masks, lung1[0].grid) for lesion in data["lesions"]}
    assert sorted(which.values()) == ["A", "B", "R"]
    targets = [which[n] for n in data["recist"]["targets"]]
    assert targets == ["A", "B"]  # two per organ (the lungs are one), largest first; R is a non-target
    lesions = {which[lesion["number"]]: lesion for lesion in data["lesions"]}
    assert 34 <= lesions["A"]["long_axis_mm"] <= 46 and 18 <= lesions["B"]["long_axis_mm"] <= 26
    assert data["recist"]["sum_of_diameters_mm"] == pytest.approx(
        round(lesions["A"]["recist"]["diameter_mm"] + lesions["B"]["recist"]["diameter_mm"], 1), abs=0.051
    )


def test_compare_pairs_the_lesions_and_finds_the_new_one(reports, time_points, lung1, capsys):
    _, masks, later = time_points
    grid = lung1[0].grid
    printed = run(capsys, "compare", reports["baseline"], reports["followup"], "--json")
    c = json.loads(printed)
    base = json.loads((reports["baseline"] / "report.json").read_text())["lesions"]
    follow = json.loads((reports["followup"] / "report.json").read_text())["lesions"]
    name_then = {lesion["number"]: _which(lesion, masks, grid) for lesion in base}
    name_now = {lesion["number"]: _which(lesion, later, grid) for lesion in follow}
    pairs = {(name_then.get(p["baseline"]), name_now.get(p["followup"])) for p in c["pairs"]}
    assert pairs == {("A", "A"), ("B", "B"), ("R", "R"), (None, "C")}
    assert [name_now[n] for n in c["new_lesions"]] == ["C"]
    assert c["overall_response"] == "PD" and "new lesion" in c["rule"]
    change = {name_then[p["baseline"]]: p["change_mm"] for p in c["pairs"] if p["baseline"]}
    assert change["A"] < -20 and change["B"] > 3 and abs(change["R"]) < 3
    text = run(capsys, "compare", reports["baseline"], reports["followup"])
    assert "overall response: PD" in text and "sum of diameters" in text
    # without the new lesion the sum of diameters decides: 40 + 22 mm -> 10 + 28 mm is a partial response
    c = json.loads(run(capsys, "compare", reports["baseline"], reports["followup_no_c"], "--json"))
    assert c["new_lesions"] == [] and c["sum_change_percent"] <= -30 and c["overall_response"] == "PR", c["rule"]


def _moved(volume, is_label):
    import SimpleITK as sitk

    from pastacore.fileio.sitk_bridge import sitk_from_volume, volume_from_sitk

    image = sitk_from_volume(volume)
    transform = sitk.Euler3DTransform()
    centre = np.array(image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in image.GetSize()]))
    transform.SetCenter(centre.tolist())
    transform.SetRotation(0.0, 0.0, np.radians(MOTION["angle_deg"]))
    transform.SetTranslation(MOTION["shift_mm"])
    moved = sitk.Resample(
        image, image, transform, sitk.sitkNearestNeighbor if is_label else sitk.sitkLinear, 0 if is_label else -1024
    )
    return volume_from_sitk(moved, is_label=is_label)


def test_a_moved_follow_up_is_registered_before_pairing(reports, time_points, tmp_path, capsys):
    folder, _, _ = time_points
    write_volume(_moved(read_volume(folder / "followup.nii.gz"), False), tmp_path / "moved.nii.gz")
    write_volume(_moved(read_volume(folder / "followup_seg.nii.gz", is_label=True), True), tmp_path / "moved_seg.nii.gz")
    shutil.copy(folder / "followup_seg.json", tmp_path / "moved_seg.json")
    run(
        capsys,
        "report",
        tmp_path / "moved.nii.gz",
        tmp_path / "moved_seg.nii.gz",
        "--out-dir",
        tmp_path / "moved",
        "--formats",
        "json",
    )
    aligned = json.loads(run(capsys, "compare", reports["baseline"], reports["followup"], "--json"))
    blind = json.loads(run(capsys, "compare", reports["baseline"], tmp_path / "moved", "--json"))
    assert len(blind["new_lesions"]) > 1  # 40 mm away, the lesions are not recognised
    registered = json.loads(
        run(
            capsys,
            "compare",
            reports["baseline"],
            tmp_path / "moved",
            "--json",
            "--baseline-image",
            folder / "baseline.nii.gz",
            "--followup-image",
            tmp_path / "moved.nii.gz",
        )
    )
    assert "rigid then affine" in registered["registration"]
    assert len(registered["new_lesions"]) == 1 and registered["overall_response"] == "PD"
    assert [p["baseline"] for p in registered["pairs"] if p["followup"]] == [
        p["baseline"] for p in aligned["pairs"] if p["followup"]
    ]
    assert all(p["distance_mm"] < 8 for p in registered["pairs"] if p["baseline"] and p["followup"])


def test_the_follow_up_report_shows_both_time_points(reports, time_points, tmp_path, capsys):
    folder, _, _ = time_points
    out = tmp_path / "followup"
    printed = run(
        capsys,
        "report",
        folder / "followup.nii.gz",
        folder / "followup_seg.nii.gz",
        "--out-dir",
        out,
        "--baseline",
        reports["baseline"],
        "--formats",
        "json,html,pdf,seg,sr",
    )
    assert "RECIST 1.1 response: PD" in printed
    data = json.loads((out / "report.json").read_text())
    base = json.loads((reports["baseline"] / "report.json").read_text())
    assert data["time_point"] == "follow-up" and data["comparison"]["overall_response"] == "PD"
    uids = {lesion["number"]: lesion["tracking_uid"] for lesion in base["lesions"]}
    paired = [lesion for lesion in data["lesions"] if lesion.get("baseline_number")]
    assert len(paired) == 3 and all(lesion["tracking_uid"] == uids[lesion["baseline_number"]] for lesion in paired)
    assert sorted(lesion["recist"]["role"] for lesion in data["lesions"]) == ["new", "non-target", "target", "target"]
    html = (out / "report.html").read_text()
    assert "both time points" in html and html.count('src="images/baseline_lesion_') == 3
    assert len(list((out / "images").glob("baseline_lesion_*.png"))) == 3
    # the PDF: a page per lesion seen at both time points (both pictures), a page of key images per lesion
    from pdf_layout import layout_problems, pages

    assert layout_problems(out / "report.pdf") == []
    texts = [" ".join(word[4] for word in words) for _w, _h, words in pages(out / "report.pdf")]
    assert sum(", baseline lesion" in t and ", follow-up lesion" in t for t in texts) == 3
    assert sum(bool(re.search(r"Lesion \d+: .* Axial slice", t)) for t in texts) == 4
    hd = pytest.importorskip("highdicom")
    sr = hd.sr.srread(out / "dicom" / "sr.dcm")
    groups = sr.content.get_volumetric_roi_measurement_groups()
    assert {str(g.tracking_uid) for g in groups} >= {lesion["tracking_uid"] for lesion in paired}
    if shutil.which("dciodvfy"):
        result = subprocess.run(["dciodvfy", str(out / "dicom" / "sr.dcm")], capture_output=True, text=True)
        assert not [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
    # the baseline report's folder is not the follow-up's, and targets are chosen at baseline
    followup = ["report", folder / "followup.nii.gz", folder / "followup_seg.nii.gz", "--baseline", reports["baseline"]]
    assert run_cli(capsys, *followup, "--out-dir", reports["baseline"], "--overwrite")[0] == 2
    assert run_cli(capsys, *followup, "--out-dir", tmp_path / "x", "--targets", "1")[0] == 2
