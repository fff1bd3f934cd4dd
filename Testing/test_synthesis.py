"""Lesion synthesis: schema, text parser, plans, and measured attribute fidelity.

Phantoms are 1 mm spheres (air, 20 HU body, an organ of 60 HU) with or without noise; the
real background is the pyradiomics lung CT standardised to 1 mm. Fidelity is measured, not
looked at: size within 15 %, mean HU within 10 HU, heterogeneity, edge width and
compactness orderings, voxels outside the lesion region unchanged, seeds reproducible.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from pastacore.actions.dataset import generate_dataset
from pastacore.errors import PastaError
from pastacore.fileio import read_volume, write_volume
from pastacore.geometry import Grid, Volume
from pastacore.geometry.boxes import VoxelBox
from pastacore.synthesis import lesion_type, lesion_types, make_plan, parse_text, synthesize_lesion
from pastacore.synthesis import measure as M
from pastacore.synthesis import schema as S

N = 72


def phantom(n=N, organ_hu=60.0, noise=10.0, seed=0, fill=None):
    """Air, a 20 HU body and a spherical organ (label 1) at 1 mm."""
    rng = np.random.default_rng(seed)
    k, j, i = np.indices((n, n, n))
    c = (n - 1) / 2
    r = np.sqrt((k - c) ** 2 + (j - c) ** 2 + (i - c) ** 2)
    organ = r < n * 0.4
    array = np.full((n, n, n), -1000.0, np.float32)
    array[r < n * 0.48] = 20
    array[organ] = organ_hu if fill is None else fill
    if noise:
        array += rng.normal(0, noise, array.shape).astype(np.float32)
    grid = Grid((n, n, n), (1.0, 1.0, 1.0), (-c, -c, -c))
    return Volume(array, grid), Volume(organ.astype(np.uint8), grid, is_label=True)


def centre_box(size, n=N):
    c, h = n // 2, int(np.ceil(size / 2)) + 8  # room for the lesion's edge inside the box
    return VoxelBox((c - h,) * 3, (c + h + 1,) * 3)


@pytest.fixture(scope="module")
def organ_phantom():
    return phantom()


@pytest.fixture(scope="module")
def clean_phantom():
    return phantom(noise=0.0)


def synth(ph, attributes, kind="liver_tumor", seed=1, size=30, **extra):
    volume, organ = ph
    return synthesize_lesion(
        volume=volume,
        organ_labels=organ,
        organ_names={1: "liver"},
        roi_box=centre_box(size),
        lesion_type=kind,
        attributes=attributes,
        seed=seed,
        **extra,
    )


# -- schema and text ----------------------------------------------------------------------------


def test_schema_has_the_fifteen_pasta_lesion_types():
    from pastacore.terminology import segment_info

    types = [lesion_type(k) for k in lesion_types()]
    assert len(types) == 15
    assert sum(t.malignant for t in types) == 10 and sum(not t.malignant for t in types) == 5
    for t in types:
        assert t.organ_info["ts_v1"], t.key
        assert segment_info(t.term).name and segment_info(t.organ).name
        S.check_consistency(t, S.merged_attributes(t, None))  # defaults are consistent
    assert S.schema()["organs"]["liver"]["ts_v1"] == [5] and S.schema()["organs"]["urinary bladder"]["ts_v1"] == [104]
    assert lesion_type("Liver cyst").key == "liver_cyst"


def test_vocabulary_accepts_synonyms_and_lists_allowed_values():
    got = S.normalize_attributes(
        {
            "surface": "sharply marginated",
            "density": "low density lesion,",
            "heterogeneity": "mottled",
            "size": "3 cm",
            "CT value": "45 HU",
        }
    )
    assert got == {
        "surface characteristics": "well-defined",
        "density": "hypodense",
        "density variations": "heterogeneous",
        "size": [30.0, 30.0, 30.0],
        "CT value": 45.0,
    }
    with pytest.raises(PastaError, match="hypodense, isodense, hyperdense"):
        S.normalize_attributes({"density": "sparkly"})
    with pytest.raises(PastaError, match="unknown attribute 'colour'"):
        S.normalize_attributes({"colour": "red"})
    with pytest.raises(PastaError, match="out of range"):
        S.normalize_attributes({"size": 500})


def test_free_text_parser():
    parsed = parse_text("3 cm irregular hypodense liver lesion with ill-defined margins, heterogeneous")
    assert parsed.lesion_type == "liver_tumor"
    assert parsed.attributes == {
        "shape": ["irregular"],
        "size": [30.0, 30.0, 30.0],
        "density": "hypodense",
        "density variations": "heterogeneous",
        "surface characteristics": "ill-defined",
    }
    assert parsed.unknown == []
    parsed = parse_text("25 x 20 x 30 mm round kidney cyst, 10 HU, sharp, glittery")
    assert parsed.lesion_type == "kidney_cyst"
    assert parsed.attributes["size"] == [25.0, 20.0, 30.0] and parsed.attributes["CT value"] == 10.0
    assert parsed.unknown == ["glittery"]
    assert parse_text("spiculated part-solid nodule in the right upper lobe, 1.5cm").attributes == {
        "size": [15.0, 15.0, 15.0],
        "density": "part-solid",
        "specific features": ["spiculated margins"],
    }
    assert parse_text("kidney stone, -650 HU").attributes["CT value"] == -650.0
    with pytest.raises(PastaError, match="several values for density"):
        parse_text("hypodense hyperdense lesion")


@pytest.mark.parametrize(
    "kind, text, reason",
    [
        ("kidney_cyst", "hyperdense", "cyst holds fluid"),
        ("liver_cyst", "80 HU", "does not fit a cyst"),
        ("kidney_stone", "hypodense", "stones are calcified"),
        ("liver_tumor", "ground-glass", "only in the lung"),
        ("liver_tumor", "wall thickening", "needs a hollow organ"),
        ("liver_tumor", "homogeneous mixed-density", "mixed density means heterogeneous"),
    ],
)
def test_contradictions_are_explained(organ_phantom, kind, text, reason):
    with pytest.raises(PastaError, match=reason):
        synth(organ_phantom, text, kind=kind)


def test_plan_is_seeded_and_readable():
    kind = lesion_type("liver_tumor")
    attributes = S.merged_attributes(kind, {"size": 30})
    a, b, c = make_plan(kind, attributes, 5), make_plan(kind, attributes, 5), make_plan(kind, attributes, 6)
    assert a.to_dict() == b.to_dict() and a.to_dict() != c.to_dict()
    text = a.describe()
    assert "size 30 x 30 x 30 mm" in text and "edge blur" in text and "necrotic core" in text
    json.dumps(a.to_dict())


# -- measured fidelity on phantoms -------------------------------------------------------------


@pytest.mark.parametrize(
    "text, size",
    [
        ("30 mm round-like hypodense homogeneous well-defined", (30, 30, 30)),
        ("36 x 24 x 30 mm irregular hyperdense heterogeneous ill-defined", (36, 24, 30)),
        ("12 mm round isodense well-defined", (12, 12, 12)),
        ("40 mm irregular spiculated 25 HU heterogeneous", (40, 40, 40)),
    ],
)
def test_size_and_mean_hu_match_the_request(organ_phantom, text, size):
    result = synth(organ_phantom, text, size=max(size))
    measured = M.lesion_stats(result.image.array, result.lesion, result.image.grid)
    for want, got in zip(size, measured["size_mm"]):
        assert abs(got - want) <= 0.15 * want, (text, measured["size_mm"])
    assert abs(measured["mean_hu"] - result.plan.target_mean_hu) <= 10
    if "25 HU" in text:
        assert abs(measured["mean_hu"] - 25) <= 10
    assert result.report["measured"]["size_mm"] == measured["size_mm"]


def test_relative_density_follows_the_organ(organ_phantom):
    means = {
        d: M.lesion_stats(
            synth(organ_phantom, f"20 mm round {d} homogeneous").image.array,
            synth(organ_phantom, f"20 mm round {d} homogeneous").lesion,
            organ_phantom[0].grid,
        )["mean_hu"]
        for d in ("hypodense", "isodense", "hyperdense")
    }
    assert means["hypodense"] <= 60 - 25 and abs(means["isodense"] - 60) <= 10 and means["hyperdense"] >= 60 + 15


def test_heterogeneous_lesions_have_a_higher_interior_sd(organ_phantom):
    sds = {}
    for texture in ("homogeneous", "heterogeneous"):
        result = synth(organ_phantom, f"30 mm round hypodense {texture}")
        sds[texture] = M.lesion_stats(result.image.array, result.lesion, result.image.grid)["interior_sd_hu"]
    assert sds["heterogeneous"] > 1.5 * sds["homogeneous"], sds


def test_ill_defined_margins_have_a_wider_edge(clean_phantom):
    widths = {}
    for margin in ("well-defined", "ill-defined"):
        result = synth(clean_phantom, f"30 mm round hypodense homogeneous {margin}")
        widths[margin] = M.edge_width_mm(result.image.array, result.lesion, result.image.grid, result.plan.target_mean_hu, 60.0)
    assert widths["ill-defined"] > 1.8 * widths["well-defined"], widths


def test_round_lesions_are_more_compact_than_irregular(clean_phantom):
    values = {}
    for shape in ("round-like", "irregular"):
        result = synth(clean_phantom, f"30 mm {shape} hypodense homogeneous well-defined")
        values[shape] = M.compactness(result.lesion, result.image.grid)
    assert values["round-like"] > 1.15 * values["irregular"], values


def test_input_untouched_outside_region_unchanged_and_deterministic(organ_phantom):
    from scipy import ndimage

    volume, organ = organ_phantom
    before = volume.array.copy()
    a = synth(organ_phantom, "30 mm irregular hypodense heterogeneous ill-defined", seed=7)
    b = synth(organ_phantom, "30 mm irregular hypodense heterogeneous ill-defined", seed=7)
    c = synth(organ_phantom, "30 mm irregular hypodense heterogeneous ill-defined", seed=8)
    assert np.array_equal(volume.array, before)
    changed = a.image.array != before
    region = ndimage.distance_transform_edt(~a.lesion) <= 3 * a.plan.edge_sigma_mm + 2
    assert changed.any() and not (changed & ~region).any()
    assert not (changed & (organ.array == 0)).any()  # clipped to the organ: nothing outside it changes
    assert np.array_equal(a.image.array, b.image.array) and np.array_equal(a.labels.array, b.labels.array)
    assert not np.array_equal(a.labels.array, c.labels.array)
    assert set(np.unique(a.labels.array)) == {0, 1, 2}
    assert a.segments[2].name and a.segments[1].term == "liver"


def test_lesion_types_render_in_their_organs(organ_phantom):
    volume, organ = organ_phantom
    fluid = phantom(organ_hu=8.0, noise=8.0)
    for key in ("liver_cyst", "kidney_stone", "bladder_cancer", "colon_cancer", "gallstone"):
        kind = lesion_type(key)
        ph = fluid if kind.hollow else organ_phantom
        result = synthesize_lesion(volume=ph[0], organ_labels=ph[1], organ_names={1: kind.organ}, lesion_type=key, seed=2)
        stats = M.lesion_stats(result.image.array, result.lesion, volume.grid)
        assert stats["voxels"] > 5 and not (result.lesion & (ph[1].array == 0)).any(), key
        if kind.kind == "stone":
            assert stats["mean_hu"] > 140
        if key == "liver_cyst":
            assert -5 <= stats["mean_hu"] <= 25
        if result.plan.shape_mode == "wall":
            from scipy import ndimage

            depth = ndimage.distance_transform_edt(ph[1].array)
            assert depth[result.lesion].max() <= result.plan.wall_thickness_mm + 0.5
        key_id = next(iter(result.type_json))
        entry = result.type_json[key_id]
        assert int(key_id) in kind.organ_info["ts_v1"] and len(entry) == 4 and entry[1] == ""
        assert all(v == "" or v.endswith(",") for k, v in entry[2].items() if k != "lesion location")


def test_bad_input_is_refused(organ_phantom):
    volume, organ = organ_phantom
    with pytest.raises(PastaError, match="outside the volume"):
        synthesize_lesion(
            volume=volume,
            organ_labels=organ,
            roi_box=VoxelBox((100, 100, 100), (110, 110, 110)),
            lesion_type="liver_tumor",
            seed=0,
        )
    with pytest.raises(PastaError, match="does not overlap the liver"):
        synthesize_lesion(
            volume=volume, organ_labels=organ, roi_box=VoxelBox((0, 0, 0), (8, 8, 8)), lesion_type="liver_tumor", seed=0
        )
    with pytest.raises(PastaError, match="too small for the requested size"):
        synth(organ_phantom, "5 cm hypodense", size=20)
    with pytest.raises(PastaError, match="needs the gallbladder|grows in the wall"):
        synthesize_lesion(volume=volume, roi_box=centre_box(20), lesion_type="gallbladder_cancer", seed=0)
    with pytest.raises(PastaError, match="needs the liver segmentation"):
        synthesize_lesion(volume=volume, lesion_type="liver_tumor", seed=0)
    with pytest.raises(PastaError, match="none of the organ segments"):
        two = np.where(organ.array > 0, 1, np.where(volume.array > -500, 2, 0)).astype(np.uint8)
        synthesize_lesion(
            volume=volume,
            organ_labels=organ.with_array(two),
            organ_names={1: "spleen", 2: "body"},
            lesion_type="liver_tumor",
            seed=0,
        )
    with pytest.raises(PastaError, match="does not look like CT"):
        synthesize_lesion(volume=volume.with_array(volume.array + 1000), organ_labels=organ, lesion_type="liver_tumor")
    with pytest.raises(PastaError, match="diffusion backend is unavailable"):
        synth(organ_phantom, "2 cm", backend="diffusion")
    with pytest.raises(PastaError, match="unknown lesion type"):
        synth(organ_phantom, "2 cm", kind="brain_tumor")


def test_lesion_centred_on_a_given_point(organ_phantom):
    """A point the user places (LPS mm) is the lesion centre; the placement rule is not used."""
    volume, organ = organ_phantom
    target = np.array([8.0, -6.0, 5.0])
    lesion = {"organ_names": {1: "liver"}, "lesion_type": "liver_tumor", "attributes": "16 mm round well-defined", "seed": 2}
    result = synthesize_lesion(volume=volume, organ_labels=organ, centre_lps=target, **lesion)
    centroid = volume.grid.index_to_lps(np.argwhere(result.lesion).mean(0)[::-1])
    assert np.linalg.norm(centroid - target) <= 1.5, centroid
    elsewhere = synthesize_lesion(volume=volume, organ_labels=organ, **lesion)
    assert np.linalg.norm(volume.grid.index_to_lps(np.argwhere(elsewhere.lesion).mean(0)[::-1]) - target) > 3
    with pytest.raises(PastaError, match="lies outside the volume"):
        synthesize_lesion(volume=volume, organ_labels=organ, lesion_type="liver_tumor", seed=0, centre_lps=[500.0, 0.0, 0.0])
    with pytest.raises(PastaError, match="three numbers"):
        synthesize_lesion(
            volume=volume, organ_labels=organ, lesion_type="liver_tumor", seed=0, centre_lps=[0.0, float("nan"), 0.0]
        )


# -- real CT background ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lung_background(lung1):
    from pastacore.geometry.standardize import standardize

    volume = standardize(lung1[0], is_label=False).volume
    from pastacore.anatomy.masks import lung_mask

    lungs = lung_mask(volume.array, volume.grid.spacing).astype(np.uint8)
    return volume, Volume(lungs, volume.grid, is_label=True)


@pytest.mark.parametrize(
    "text",
    ["20 mm round solid homogeneous well-defined nodule", "24 mm irregular nodule, heterogeneous", "18 mm ground-glass nodule"],
)
def test_real_lung_background(lung_background, text):
    from scipy import ndimage

    volume, lungs = lung_background
    depth = ndimage.distance_transform_edt(lungs.array[::2, ::2, ::2]) * 2
    centre = np.array(np.unravel_index(np.argmax(depth), depth.shape)) * 2
    box = VoxelBox(tuple(int(v) for v in centre - 20), tuple(int(v) for v in centre + 21))  # the lesion and its edge fit
    before = volume.array.copy()
    result = synthesize_lesion(volume=volume, organ_labels=lungs, roi_box=box, lesion_type="lung_tumor", attributes=text, seed=3)
    size = parse_text(text).attributes["size"][0]
    stats = M.lesion_stats(result.image.array, result.lesion, volume.grid)
    assert all(abs(s - size) <= 0.15 * size for s in stats["size_mm"]), stats
    assert abs(stats["mean_hu"] - result.plan.target_mean_hu) <= 10
    if "ground-glass" in text:
        assert -750 <= stats["mean_hu"] <= -500
    else:
        assert 0 <= stats["mean_hu"] <= 80
    assert np.array_equal(volume.array, before)
    changed = result.image.array != before
    region = ndimage.distance_transform_edt(~result.lesion) <= 3 * result.plan.edge_sigma_mm + 2
    assert not (changed & ~region).any()
    assert result.report["render"]["organ_noise_sd_hu"] > 0


# -- datasets and command line -----------------------------------------------------------------


@pytest.fixture(scope="module")
def background_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("backgrounds")
    volume, organ = phantom(n=56)
    write_volume(volume.with_array(np.round(volume.array).astype(np.int16)), folder / "ct1.nii.gz")
    write_volume(organ.with_array(organ.array * 5), folder / "ct1_seg.nii.gz")  # TotalSegmentator v1: liver = 5
    return folder


def check_nnunet_raw(folder):
    """The checks nnU-Net v2 runs on a raw dataset (verify_dataset_integrity), for one channel."""
    data = json.loads((folder / "dataset.json").read_text())
    for key in ("channel_names", "labels", "numTraining", "file_ending"):
        assert key in data
    labels = sorted((folder / "labelsTr").glob("*" + data["file_ending"]))
    assert len(labels) == data["numTraining"]
    allowed = set(data["labels"].values())
    for label_path in labels:
        case = label_path.name[: -len(data["file_ending"])]
        image_path = folder / "imagesTr" / f"{case}_0000{data['file_ending']}"
        assert image_path.is_file(), image_path
        image, label = read_volume(image_path), read_volume(label_path, is_label=True)
        assert image.grid.same_as(label.grid, tol=1e-4)
        assert set(np.unique(label.array)) <= allowed and 2 in np.unique(label.array)
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == [p.name.replace(".nii.gz", "_0000.nii.gz") for p in labels]
    return data


def test_dataset_nnunet_layout_resumes_and_is_reproducible(background_files, tmp_path):
    out = tmp_path / "raw"
    summary = generate_dataset(
        backgrounds_dir=str(background_files), output_dir=str(out), count=3, format="nnunet", lesion_type="liver_tumor", seed=4
    )
    assert summary["written"] == 3 and not summary["failed"]
    data = check_nnunet_raw(out)
    assert data["numTraining"] == 3 and (out / "labelsTr" / "case_0000.nii.gz").is_file()
    first = read_volume(out / "imagesTr" / "case_0001_0000.nii.gz").array
    again = generate_dataset(
        backgrounds_dir=str(background_files), output_dir=str(out), count=4, format="nnunet", lesion_type="liver_tumor", seed=4
    )
    assert again["skipped"] == 3 and again["written"] == 1 and check_nnunet_raw(out)["numTraining"] == 4
    other = tmp_path / "parallel"
    generate_dataset(
        backgrounds_dir=str(background_files),
        output_dir=str(other),
        count=2,
        format="nnunet",
        lesion_type="liver_tumor",
        seed=4,
        workers=2,
    )
    assert np.array_equal(read_volume(other / "imagesTr" / "case_0001_0000.nii.gz").array, first)
    report = json.loads((out / "reports" / "case_0000.json").read_text())
    assert report["lesion_type"] == "liver_tumor" and report["research_use_only"]


def test_dataset_pasta_gen_layout(background_files, tmp_path):
    out = tmp_path / "pastagen"
    summary = generate_dataset(
        backgrounds_dir=str(background_files), output_dir=str(out), count=2, lesion_type=["liver_cyst", "kidney_tumor"], seed=1
    )
    assert summary["written"] == 1 and len(summary["failed"]) == 1  # the background has no kidney
    case = out / "Liver" / "Cyst" / "0"
    assert sorted(p.name for p in case.iterdir()) == ["img.nii.gz", "label.nii.gz", "report.json", "total.nii.gz", "type.json"]
    assert list(json.loads((case / "type.json").read_text())) == ["5"]
    assert set(np.unique(read_volume(case / "label.nii.gz", is_label=True).array)) == {0, 1, 2}


def test_cli_synth_and_dataset(background_files, tmp_path):
    from pastacore.cli.main import main

    image = background_files / "ct1.nii.gz"
    outs = [str(tmp_path / n) for n in ("img.nii.gz", "mask.nii.gz", "report.json")]
    args = [
        "synth",
        str(image),
        "--box-ijk",
        "18,18,18,38,38,38",
        "--attributes",
        "16 mm round hypodense liver lesion, blurp",
        "--organ-mask",
        str(background_files / "ct1_seg.nii.gz"),
        "--seed",
        "3",
        "--out-image",
        outs[0],
        "--out-mask",
        outs[1],
        "--out-report",
        outs[2],
    ]
    assert main(args) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["not_understood"] == ["blurp"] and report["type_json"]
    assert 2 in np.unique(read_volume(outs[1], is_label=True).array)
    bad = subprocess.run(
        [sys.executable, "-m", "pastacore.cli.main"] + args[:5] + ["30 mm hyperdense liver cyst"] + args[6:] + ["--overwrite"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error: a hyperdense cyst")
    assert (
        main(
            [
                "dataset",
                "--backgrounds",
                str(image),
                "--organ-masks",
                str(background_files),
                "--n",
                "1",
                "--types",
                "liver_tumor",
                "--out",
                str(tmp_path / "ds"),
                "--format",
                "nnunet",
            ]
        )
        == 0
    )
    check_nnunet_raw(tmp_path / "ds")


def test_lesion_against_the_lung_wall_is_clipped_by_the_lung(lung_background):
    """Centred just inside the lung surface, a lung tumour abuts the wall and stays in the lung."""
    from scipy import ndimage

    volume, lungs = lung_background
    depth = ndimage.distance_transform_edt(lungs.array)
    candidates = np.argwhere((depth >= 4) & (depth <= 6))
    point = candidates[len(candidates) // 2]
    result = synthesize_lesion(
        volume=volume,
        organ_labels=lungs,
        lesion_type="lung_tumor",
        seed=4,
        attributes="30 mm solid well-defined mass",
        centre_lps=volume.grid.index_to_lps(point[::-1]),
    )
    lesion = result.lesion
    assert lesion.sum() > 2000
    assert not (lesion & (lungs.array == 0)).any()
    touching = ndimage.binary_dilation(lesion, iterations=2) & (lungs.array == 0)
    assert touching.any()


def test_plan_numbers_come_from_the_rule_tables(monkeypatch):
    """Lesion-type behaviour is data next to the lesion types: change a rule, the plan follows."""
    import copy
    import dataclasses

    from pastacore.synthesis import plan as plans
    from pastacore.synthesis import schema as S

    fields = {f.name for f in dataclasses.fields(plans.SynthesisPlan)}
    for group, rules in S.schema()["plan_rules"].items():
        if group == "description":
            continue
        for rule in rules:
            named = [d[0] for d in rule.get("draw", [])] + list(rule.get("set", {})) + rule.get("draw_by_density", [])[:1]
            assert set(named) <= fields, (group, rule)
    kind = S.lesion_type("kidney_stone")
    attributes = S.merged_attributes(kind, {})
    before = plans.make_plan(kind, attributes, 3)
    changed = copy.deepcopy(S.schema())
    changed["plan_rules"]["edge"][0]["draw"] = [["edge_sigma_mm", 5.0, 5.0]]
    monkeypatch.setattr(S, "schema", lambda: changed)
    after = plans.make_plan(kind, attributes, 3)
    assert after.edge_sigma_mm == 5.0 != before.edge_sigma_mm
    assert after.hu_absolute == before.hu_absolute  # one draw each, in the same order: the rest is unchanged


def _layout(value):
    """The shape of a type.json value: kinds of its elements and the lengths of its sizes."""
    shape, empty, attributes, (organ, lesion) = value
    return (type(shape), empty, type(attributes), len(organ), len(organ[0]), len(lesion), len(lesion[0]))


def test_synthesis_and_report_write_one_type_json_layout(organ_phantom, tmp_path):
    """A synthesised lesion's type.json and the report's type.json of the same lesion share
    PASTA-Gen's layout, read back through one reader, and agree on the organ and the lesion size."""
    from pastacore.report.export import case_info, make_report, write_report
    from pastacore.type_json import read_type_json, write_type_json

    result = synth(organ_phantom, "round-like hypodense homogeneous well-defined", size=24)
    synthesized = tmp_path / "synth_type.json"
    synthesized.write_text(json.dumps(result.type_json))
    names = {1: "liver", 2: "liver tumor"}
    report = make_report(
        result.image, result.labels, case=case_info(result.image, "synth.nii.gz"), label_names=names, names_from="test"
    )
    write_report(report, result.image, result.labels, tmp_path / "r", formats=("json",))
    ((synth_key, synth_value),) = result.type_json.items()
    ((report_key, report_value),) = json.loads((tmp_path / "r" / "type.json").read_text()).items()
    assert synth_key == report_key == "5"  # TotalSegmentator v1: liver
    assert _layout(synth_value) == _layout(report_value) == (str, "", dict, 1, 3, 1, 3)
    (from_synthesis,) = read_type_json(synthesized)
    (from_report,) = read_type_json(tmp_path / "r" / "type.json")
    assert from_synthesis.organ_id == from_report.organ_id == 5
    assert np.abs(np.subtract(from_synthesis.lesion_size, from_report.lesion_size)).max() <= 1
    assert from_synthesis.organ_size != from_synthesis.lesion_size  # the organ's box, not the lesion's
    assert from_synthesis.attributes["shape"] == "round-like," and from_report.attributes["CT value"].endswith(" HU,")
    write_type_json([from_report], tmp_path / "again.json")  # read back as written
    assert (tmp_path / "again.json").read_text() == (tmp_path / "r" / "type.json").read_text()


def test_type_json_reader_refuses_other_json(tmp_path):
    from pastacore.type_json import read_type_json

    (tmp_path / "t.json").write_text(json.dumps({"5": ["irregular,", "", {"shape": "irregular,"}, [[[1, 2]]]]}))
    with pytest.raises(PastaError, match="no organ and lesion sizes"):
        read_type_json(tmp_path / "t.json")
    (tmp_path / "t.json").write_text(json.dumps({"lesions": []}))
    with pytest.raises(PastaError, match="not a PASTA-Gen type.json"):
        read_type_json(tmp_path / "t.json")
