"""RECIST 1.1 rules on constructed cases, each at its boundary: measurability (10 mm on slices
of 5 mm or thinner, twice the slice thickness otherwise; lymph nodes by short axis), target
choice (5 in all, 2 per organ, largest first, the reader's choice checked), the sum of
diameters, and the response between two time points (a 30 % decrease, a 20 % and 5 mm
increase over the nadir, a new lesion, disappearance), with the pairing of lesions."""

from types import SimpleNamespace

import numpy as np
import pytest

from pastacore.errors import PastaError
from pastacore.geometry import Grid
from pastacore.report import followup, recist


def measurement(long_axis, short_axis=None, organ="lung", name="Lung tumor", border=False):
    return SimpleNamespace(
        long_axis_mm=long_axis,
        short_axis_mm=long_axis * 0.6 if short_axis is None else short_axis,
        organ=organ,
        name=name,
        touches_border=border,
    )


def lesions(*measurements, term="tumor@lung"):
    return [SimpleNamespace(number=n, measurement=m, term=term) for n, m in enumerate(measurements, start=1)]


def ct(slice_mm=5.0, meta=None, direction=None):
    grid = Grid((40, 64, 64), (0.7, 0.7, slice_mm), (0.0, 0.0, 0.0), np.eye(3) if direction is None else direction)
    return SimpleNamespace(grid=grid, meta=meta or {})


# --- measurability ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "slice_mm, long_axis, measurable",
    [
        (5.0, 10.0, True),  # exactly 10 mm on 5 mm slices
        (5.0, 9.9, False),
        (2.5, 10.0, True),
        (6.0, 11.9, False),  # thicker slices: twice the thickness
        (6.0, 12.0, True),
    ],
)
def test_measurable_at_the_boundary(slice_mm, long_axis, measurable):
    (r,) = recist.baseline(lesions(measurement(long_axis)), ct(slice_mm)).lesions
    assert r.measurable is measurable and r.diameter_mm == long_axis
    assert (r.role == "target") is measurable and (r.role == "non-target") is (not measurable)


def test_slice_thickness_comes_from_dicom_when_known():
    assert recist.slice_thickness(ct(2.5, meta={"slice_thickness": "6.0"})) == 6.0
    assert recist.minimum_long_axis(recist.slice_thickness(ct(2.5, meta={"slice_thickness": "6.0"}))) == 12.0
    assert recist.slice_thickness(ct(2.5)) == 2.5


@pytest.mark.parametrize(
    "short_axis, measurable, role",
    [
        (15.0, True, "target"),  # exactly 15 mm: measurable
        (14.9, False, "non-target"),  # pathological, not measurable
        (10.0, False, "non-target"),
        (9.9, False, ""),  # normal size: not a lesion
    ],
)
def test_lymph_nodes_are_measured_by_their_short_axis(short_axis, measurable, role):
    node = measurement(40.0, short_axis, organ="", name="Lymph node")
    (r,) = recist.baseline(lesions(node, term=""), ct()).lesions
    assert r.is_node and r.diameter_mm == short_axis and r.measurable is measurable and r.role == role
    assert r.organ_group == "lymph nodes"


def test_a_nodule_is_not_a_lymph_node():
    assert not recist.is_lymph_node("Lung nodule", "nodule@lung", "lung")
    assert recist.is_lymph_node("mediastinal lymph node") and recist.is_lymph_node("", "node@body")


def test_oblique_slices_are_said_not_to_be_axial():
    from conftest import rotation

    assert recist.axial_note(ct().grid) == ""
    assert recist.axial_note(ct(direction=rotation(20, 0, 0)).grid) == ""  # a gantry tilt
    assert "not in the axial plane" in recist.axial_note(ct(direction=rotation(90, 0, 0)).grid)  # coronal slices


# --- targets and the sum of diameters ----------------------------------------------------------


def test_targets_two_per_organ_five_in_all_largest_first():
    found = lesions(
        measurement(30, organ="right lung"),
        measurement(50, organ="left lung"),
        measurement(40, organ="lung"),
        measurement(35, organ="liver"),
        measurement(20, organ="liver"),
        measurement(25, organ="liver"),
        measurement(60, organ="spleen", border=True),  # largest, but may be cut
        measurement(18, organ="right kidney"),
        measurement(16, organ="left kidney"),
        measurement(9.0, organ="bone"),
    )
    result = recist.baseline(found, ct())
    # lungs are one organ: 50 and 40; liver: 35 and 25; then the kidney's 18 mm
    assert [r.number for r in result.targets] == [2, 3, 4, 6, 8]
    assert [r.target_number for r in result.targets] == [1, 2, 3, 4, 5]
    assert result.sum_of_diameters_mm == 50 + 40 + 35 + 25 + 18
    assert sorted(r.number for r in result.non_targets) == [1, 5, 7, 9, 10]
    assert "border" in result.lesions[6].reason and "not measurable" in result.lesions[9].reason
    assert result.chosen_by == "automatic"


def test_a_lymph_node_target_counts_its_short_axis():
    found = lesions(measurement(30.0), measurement(32.0, 16.0, organ="", name="lymph node"))
    result = recist.baseline(found, ct())
    assert [r.number for r in result.targets] == [
        1,
        2,
    ] and result.sum_of_diameters_mm == 30.0 + 16.0  # ranked by the diameter that counts


def test_the_reader_chooses_the_targets_within_the_rules():
    found = lesions(
        *(
            measurement(20 + n, organ=organ)
            for n, organ in enumerate(("lung", "lung", "lung", "liver", "liver", "spleen", "kidney"))
        ),
        measurement(5.0),
    )
    result = recist.baseline(found, ct(), chosen=[3, 6])
    assert [r.number for r in result.targets] == [3, 6] and result.chosen_by == "reader"
    assert result.sum_of_diameters_mm == 22 + 25
    assert all(r.role == "non-target" for r in result.lesions if r.number not in (3, 6))
    for chosen, message in (
        ([1, 2, 3], "at most 2 target lesions per organ; lesions 1, 2, 3 are all in the lung"),
        ([1, 2, 4, 5, 6, 7], "at most 5 target lesions"),
        ([8], "lesion 8 cannot be a target lesion: long axis 5.0 mm < 10 mm"),
        ([9], "there is no lesion 9"),
        ([1, 1], "listed twice"),
    ):
        with pytest.raises(PastaError, match=message):
            recist.baseline(found, ct(), chosen=chosen)


# --- response ------------------------------------------------------------------------------------


def report(diameters, roles=None, nodes=(), positions=None, case="case"):
    """A report.json-like dict: lesion n (1-based) at x = 100 n mm, with its long axis."""
    out = []
    for n, d in enumerate(diameters, start=1):
        role = (roles or {}).get(n, "target")
        node = n in nodes
        out.append(
            {
                "number": n,
                "long_axis_mm": d if not node else 40.0,
                "short_axis_mm": d if node else d * 0.6,
                "centroid_lps_mm": list(positions[n - 1]) if positions else [100.0 * n, 0.0, 0.0],
                "organ": "lung",
                "recist": {"role": role, "target_number": n if role == "target" else 0, "is_node": node, "measurable": True},
            }
        )
    return {"case": {"case_id": case}, "lesions": out, "recist": {"lesions": [{}]}, "below_floor": []}


@pytest.mark.parametrize(
    "before, after, expected",
    [
        ([60.0, 40.0], [42.0, 28.0], "PR"),  # 100 -> 70: exactly a 30 % decrease
        ([60.0, 40.0], [42.0, 28.1], "SD"),  # 100 -> 70.1
        ([60.0, 40.0], [72.0, 48.0], "PD"),  # 100 -> 120: +20 % and +20 mm
        ([60.0, 40.0], [71.9, 48.0], "SD"),  # +19.9 %
        ([15.0, 10.0], [18.0, 12.0], "PD"),  # 25 -> 30: +20 % and exactly +5 mm
        ([12.0, 8.0], [14.4, 9.6], "SD"),  # 20 -> 24: +20 % but only +4 mm
    ],
)
def test_target_response_at_the_boundaries(before, after, expected):
    c = followup.compare(report(before), report(after))
    assert c.target_response == expected and c.overall_response == expected, c.rule
    assert c.new_lesions == [] and c.sum_baseline_mm == round(sum(before), 1)
    assert c.rule.startswith(f"{expected}: sum of diameters")


def test_progression_is_measured_from_the_nadir():
    c = followup.compare(report([60.0, 40.0]), report([48.0, 36.0]), nadir_mm=70.0)  # 84 mm: +20 % over 70
    assert c.target_response == "PD" and "nadir 70.0 mm" in c.rule
    assert followup.compare(report([60.0, 40.0]), report([48.0, 36.0])).target_response == "SD"


def test_a_new_lesion_is_progression_whatever_the_targets_do():
    after = report([30.0, 20.0, 12.0])  # targets halved, and a third lesion far from any
    after["lesions"][2]["centroid_lps_mm"] = [0.0, 250.0, 0.0]
    c = followup.compare(report([60.0, 40.0]), after)
    assert c.target_response == "PR" and c.new_lesions == [3] and c.overall_response == "PD"
    assert "new lesion" in c.rule and "lesion 3" in c.rule
    assert [p.state for p in c.pairs] == ["present", "present", "new"]


def test_a_lesion_under_the_floor_at_baseline_is_not_new():
    before = report([60.0, 40.0])
    before["below_floor"] = [{"centroid_ras_mm": [-0.0, -250.0, 0.0], "volume_ml": 0.01}]  # LPS (0, 250, 0)
    after = report([60.0, 40.0, 12.0])
    after["lesions"][2]["centroid_lps_mm"] = [0.0, 252.0, 0.0]
    c = followup.compare(before, after)
    assert c.new_lesions == [] and c.overall_response == "SD" and "under the reporting floor" in c.notes[0]


def test_complete_response_needs_every_lesion_gone_and_nodes_under_10_mm():
    before = report([30.0, 16.0, 25.0], roles={3: "non-target"}, nodes=(2,))
    after = report([9.9], nodes=(1,), positions=[(200.0, 0.0, 0.0)])  # only the node, now 9.9 mm short axis
    c = followup.compare(before, after)
    assert c.target_response == "CR" and c.non_target_response == "CR" and c.overall_response == "CR"
    assert c.sum_followup_mm == 9.9  # a node's short axis still counts in the sum
    still = report([9.9, 25.0], roles={2: "non-target"}, nodes=(1,), positions=[(200.0, 0.0, 0.0), (300.0, 0.0, 0.0)])
    c = followup.compare(before, still)
    assert c.target_response == "CR" and c.non_target_response == "non-CR/non-PD" and c.overall_response == "PR"
    node_10 = report([10.0], nodes=(1,), positions=[(200.0, 0.0, 0.0)])
    assert followup.compare(before, node_10).target_response != "CR"


def test_without_targets_the_non_targets_decide():
    before = report([8.0], roles={1: "non-target"})
    assert followup.compare(before, report([6.0], roles={1: "non-target"})).overall_response == "non-CR/non-PD"
    assert followup.compare(before, report([])).overall_response == "CR"


def test_pairing_is_one_to_one_within_reach_and_follows_the_registration():
    base = [{"centroid_lps_mm": [0, 0, 0], "long_axis_mm": 20.0}, {"centroid_lps_mm": [30, 0, 0], "long_axis_mm": 20.0}]
    later = [{"centroid_lps_mm": [28, 0, 0], "long_axis_mm": 20.0}, {"centroid_lps_mm": [3, 0, 0], "long_axis_mm": 20.0}]
    assert sorted(followup.pair(base, later)) == [(0, 1, 3.0), (1, 0, 2.0)]
    far = [{"centroid_lps_mm": [0, 0, 21], "long_axis_mm": 20.0}]  # 21 mm > 10 mm + half of 20 mm
    assert followup.pair(base[:1], far) == []
    shifted = [{"centroid_lps_mm": [50, 0, 0], "long_axis_mm": 20.0}]  # the follow-up scan is moved by 50 mm
    assert followup.pair(base[:1], shifted) == []
    assert followup.pair(base[:1], shifted, to_baseline=lambda p: np.asarray(p) - [50, 0, 0]) == [(0, 0, 0.0)]


@pytest.mark.parametrize(
    "make, extra, message",
    [
        (lambda d: None, [], "is not a report: it holds no report.json"),
        (lambda d: (d / "report.json").write_text("[1]"), [], "is not a PASTA report.json"),
        (
            lambda d: (d / "report.json").write_text('{"schema": "pasta-report/1", "lesions": []}'),
            [],
            "written by an older PASTA without RECIST 1.1",
        ),
        (lambda d: None, ["--baseline-image", "ct.nii.gz"], "give both --baseline-image and --followup-image"),
    ],
)
def test_compare_refuses_what_is_not_two_reports(tmp_path, capsys, make, extra, message):
    from pastacore.cli.main import main

    folder = tmp_path / "rep"
    folder.mkdir()
    make(folder)
    code = main(["compare", str(folder), str(folder), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_among_model_candidates_the_confident_ones_become_targets_first():
    sure, unsure = measurement(20.0), measurement(60.0)
    found = [
        SimpleNamespace(number=1, measurement=sure, term="tumor@lung", status="proposed", mean_probability=0.86),
        SimpleNamespace(number=2, measurement=unsure, term="tumor@lung", status="proposed", mean_probability=0.74),
        SimpleNamespace(number=3, measurement=measurement(25.0), term="tumor@lung", status="manual", mean_probability=None),
    ]
    result = recist.baseline(found, ct())
    assert [r.number for r in result.targets] == [3, 1]  # drawn by a person, then the sure one; not the 60 mm doubt
    assert "among the most confident" in result.lesions[0].reason
    same_step = [
        SimpleNamespace(number=n, measurement=measurement(d), term="", status="proposed", mean_probability=p)
        for n, d, p in ((1, 20.0, 0.89), (2, 60.0, 0.81))
    ]
    assert [r.number for r in recist.baseline(same_step, ct()).targets] == [2, 1]  # equally sure: largest first
