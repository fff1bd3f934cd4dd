"""Lesion candidates: the model's confidence from its logits, each measured lesion's status
(proposed, edited, confirmed, manual, unknown), the reporting floor and the order of the rows."""

import numpy as np
import pytest

from pastacore.candidates import (
    Candidate,
    Floor,
    candidates_from_json,
    candidates_of,
    candidates_to_json,
    choose_floor,
    fingerprint,
    lesion_probability,
    match,
)
from pastacore.errors import PastaError
from pastacore.geometry import Grid, Volume
from pastacore.report.assess import assess
from pastacore.report.measure import measure_lesions
from pastacore.report.model import build_report


def test_lesion_probability_is_the_softmax_of_the_lesion_classes():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (4, 21, 5, 6)).astype(np.float32)
    expected = np.exp(logits) / np.exp(logits).sum(0)
    got = lesion_probability(logits, [2, 3], slab=4)
    assert np.allclose(got, expected[2] + expected[3], atol=1e-6)
    huge = np.stack([np.zeros((3, 3, 3)), np.full((3, 3, 3), 1e4)]).astype(np.float32)  # no overflow
    assert np.allclose(lesion_probability(huge, [1]), 1.0)


def two_lesions():
    grid = Grid((10, 20, 20), (0.8, 0.8, 2.0), (5.0, -3.0, 10.0))
    labels = np.zeros(grid.shape, np.uint8)
    labels[2:6, 2:8, 2:8] = 2  # 144 voxels
    labels[6:8, 12:15, 12:15] = 2  # 18 voxels
    probability = np.zeros(grid.shape, np.float32)
    probability[2:6, 2:8, 2:8] = 0.9
    probability[3, 4, 4] = 1.0
    probability[6:8, 12:15, 12:15] = 0.55
    image = Volume(np.where(labels > 0, 40.0, -800.0).astype(np.float32), grid)
    return image, Volume(labels, grid, is_label=True), probability


def test_candidates_of_each_piece_and_back_from_json():
    image, labels, probability = two_lesions()
    ((big, small),) = candidates_of(labels, probability, [2]).values()
    assert (big.voxels, small.voxels) == (144, 18)
    assert big.mean_probability == pytest.approx((143 * 0.9 + 1.0) / 144) and big.max_probability == 1.0
    assert small.mean_probability == pytest.approx(0.55) and small.volume_ml == pytest.approx(18 * 1.28 / 1000)
    (m_big, m_small) = measure_lesions(image, labels)
    assert np.allclose(big.centroid_lps_mm, m_big.centroid_lps_mm)  # the report measures the same pieces
    again = candidates_from_json(candidates_to_json({2: [big, small]}))
    assert again[2][0].voxels == 144 and again[2][1].mean_probability == pytest.approx(0.55, abs=1e-4)
    with pytest.raises(PastaError, match="damaged"):
        Candidate.from_dict({"voxels": 3})


def test_status_of_a_lesion_as_proposed_edited_confirmed_manual_or_unknown():
    image, labels, probability = two_lesions()
    records = candidates_of(labels, probability, [2])[2]
    big, small = measure_lesions(image, labels)
    assert match(big, records, grid=image.grid).status == "proposed"
    assert match(big, records, grid=image.grid).confidence == pytest.approx(records[0].mean_probability)
    assert match(big, None).status == "unknown" and match(big, None).confidence is None
    assert match(big, records, confirmed=[fingerprint(big)], grid=image.grid).status == "confirmed"
    edited = labels.array.copy()
    edited[2:6, 2:8, 8] = 2  # a person grew the big lesion by one column
    edited[0, 18, 18] = 2  # and drew a new speck
    grown, _, speck = measure_lesions(image, labels.with_array(edited))
    assert match(grown, records, grid=image.grid).status == "edited"
    assert match(grown, records, grid=image.grid).candidate is records[0]  # confidence of the model's proposal
    assert match(grown, records, confirmed=[fingerprint(big)], grid=image.grid).status == "edited"  # confirmed before
    assert match(speck, records, grid=image.grid).status == "manual"


def test_floor_sets_apart_small_and_unsure_lesions_and_rows_go_by_confidence_then_size():
    image, labels, probability = two_lesions()
    records = candidates_of(labels, probability, [2])
    report = build_report(None, measure_lesions(image, labels))
    kept, below = assess(report.lesions, image.grid, records, floor=Floor(2.0, 0.03, 0.6, "test"))
    assert [k.measurement.voxel_count for k in kept] == [144] and kept[0].number == 1
    (record,) = below
    assert record["reasons"] == ["volume 0.023 mL < 0.03 mL", "confidence 0.55 < 0.60"]
    # with a lower floor both are reported, the more confident first though it is the smaller...
    probability[2:6, 2:8, 2:8] = 0.85
    probability[6:8, 12:15, 12:15] = 0.99
    kept = _assessed(image, labels, probability)
    assert [k.measurement.voxel_count for k in kept] == [18, 144] and [k.number for k in kept] == [1, 2]
    assert [k.status for k in kept] == ["proposed", "proposed"]
    # ... and of two about as confident (the same step of 0.1), the larger first
    probability[2:6, 2:8, 2:8] = 0.91
    probability[6:8, 12:15, 12:15] = 0.93
    assert [k.measurement.voxel_count for k in _assessed(image, labels, probability)] == [144, 18]


def _assessed(image, labels, probability):
    report = build_report(None, measure_lesions(image, labels))
    kept, below = assess(report.lesions, image.grid, candidates_of(labels, probability, [2]), floor=Floor(0.0, 0.0, 0.0, "test"))
    assert not below
    return kept


def test_floor_from_the_user_the_model_or_the_default():
    model = {
        "name": "pasta-lung-default",
        "reporting_floor": {"min_long_axis_mm": 5, "min_volume_ml": 0.1, "min_confidence": 0.7},
    }
    assert choose_floor(None, None).to_dict() == {
        "min_long_axis_mm": 3.0,
        "min_volume_ml": 0.03,
        "min_confidence": 0.0,
        "source": "default",
    }
    assert choose_floor({}, model).min_confidence == 0.7 and "pasta-lung-default" in choose_floor({}, model).source
    mixed = choose_floor({"min_confidence": 0.5, "min_volume_ml": None}, model)
    assert (mixed.min_long_axis_mm, mixed.min_volume_ml, mixed.min_confidence) == (5.0, 0.1, 0.5)
    assert mixed.source.startswith("given by the user; otherwise model pasta-lung-default")
    with pytest.raises(PastaError, match="must be a number >= 0"):
        choose_floor({"min_confidence": -1}, model)
    assert "confidence under 0.70" in choose_floor({}, model).describe()
