"""Training the default model: synthetic lesions only, real tumours never seen, a loop that learns."""

from __future__ import annotations

import numpy as np
import pytest

from pastacore.training.default_model import (
    load_background,
    lung_to_pleura,
    make_lesion_pool,
    mine_false_positives,
    training_sampler,
)
from pastacore.training.trainer import TrainSettings, train

PATCH = (48, 48, 48)


@pytest.fixture(scope="module")
def background(sample_dir):
    return load_background("lung1", PATCH)


@pytest.fixture(scope="module")
def pool(background):
    return make_lesion_pool([background], 6, seed=5, wall_fraction=0.5)


def test_excluded_zone_covers_the_real_tumour_with_a_margin(background):
    from scipy import ndimage

    assert background.tumour.any()
    assert not (background.tumour & ~background.forbidden).any()
    # every voxel of the zone's complement is over half a patch away from the tumour
    distance = ndimage.distance_transform_edt(~background.tumour)
    assert distance[~background.forbidden].min() > PATCH[0] // 2


def test_a_narrower_zone_keeps_patches_off_the_tumour_but_shows_its_surroundings(background, pool):
    """``zone_mm=10``: no patch shows the tumour or the 10 mm around its box, but patches now
    show the band between 10 mm and the default zone (half a patch + 10 mm), never seen before."""
    from dataclasses import replace

    from scipy import ndimage

    near = load_background("lung1", PATCH, zone_mm=10)
    assert not (near.tumour & ~near.forbidden).any()
    distance = ndimage.distance_transform_edt(~near.tumour)
    assert 10 < distance[~near.forbidden].min() <= 12  # the box's corners lie a little further out
    band = background.forbidden & ~near.forbidden
    hu = np.where(near.forbidden, 9999.0, np.where(band, 8888.0, near.hu)).astype(np.float32)
    make_patch = training_sampler([replace(near, hu=hu, centres=None)], pool, PATCH)
    rng = np.random.default_rng(1)
    shown = 0
    for _ in range(150):
        patch, _ = make_patch(rng)
        assert patch.max() < 9999.0, "no patch shows the zone"
        shown += bool((patch == 8888.0).any())
    assert shown >= 10, "the tumour's surroundings are now part of training"
    with pytest.raises(ValueError, match="negative"):
        load_background("lung1", PATCH, zone_mm=-1)


def test_lesion_pool_lies_in_the_lungs_away_from_the_tumour(background, pool):
    from scipy import ndimage

    assert len(pool) == 6
    placements = {item.attributes["placement"] for item in pool}
    assert placements == {"wall", "parenchyma"}
    for item in pool:
        assert item.lesion.any()
        assert not background.forbidden[item.box].any()
        lung = background.lung[item.box]
        assert not (item.lesion & ~lung).any(), "lung tumours are clipped to the lung"
        changed = item.image != background.hu[item.box]
        assert changed[item.lesion].mean() > 0.9
        if item.attributes["placement"] == "wall":  # abuts the lung surface
            assert (ndimage.binary_dilation(item.lesion, iterations=2) & ~lung).any()


def test_wall_lesions_reaching_the_wall_leave_no_air_line(background):
    """Clipped at the -400 HU air boundary (the default, as model 0.3 was made), a lesion keeps
    the partial-volume rim between it and the chest wall as a dark line; a real tumour against
    the wall has none. With ``pleura_mm=2`` the lesion fills that rim and stays within it."""
    reaching = make_lesion_pool([background], 3, seed=5, wall_fraction=1.0, pleura_mm=2)
    clipped = make_lesion_pool([background], 3, seed=5, wall_fraction=1.0, pleura_mm=0)
    reach = lung_to_pleura(background.lung, 2)
    for item in reaching:
        assert not (item.lesion & ~reach[item.box]).any(), "clipped to the lung grown 2 mm"
    assert (lung_to_pleura(background.lung, 0) == background.lung).all()
    assert max(_air_beside_wall_lesions(background, reaching, reach_mm=2)) < 0.25
    assert min(_air_beside_wall_lesions(background, clipped, reach_mm=0)) > 0.35


def _air_beside_wall_lesions(background, pool, reach_mm):
    """Per wall lesion: share of the voxels just outside it, on the wall side, below -200 HU."""
    from scipy import ndimage

    reach = lung_to_pleura(background.lung, reach_mm)
    wall = [item for item in pool if item.attributes["placement"] == "wall"]
    assert wall
    shares = []
    for item in wall:
        beside = ndimage.binary_dilation(item.lesion, iterations=1) & ~item.lesion & ~reach[item.box]
        assert beside.sum() >= 20
        shares.append((item.image[beside] < -200).mean())
    return shares


def test_training_patches_never_contain_the_real_tumour(background, pool):
    """Mark the excluded zone with an impossible HU value; no patch may ever show it."""
    from dataclasses import replace

    marked = replace(background, hu=np.where(background.forbidden, 9999.0, background.hu).astype(np.float32), centres=None)
    make_patch = training_sampler([marked], pool, PATCH)
    rng = np.random.default_rng(0)
    with_lesion = 0
    for _ in range(200):
        hu, labels = make_patch(rng)
        assert hu.shape == PATCH and labels.shape == PATCH
        assert hu.max() < 9999.0
        assert set(np.unique(labels)) <= {0, 1, 2}
        with_lesion += bool((labels == 2).any())
    assert 80 <= with_lesion <= 160  # about 60 % of patches carry a synthetic lesion


def voxelwise_network(low_hu: float, high_hu: float):
    """Stands in for a trained model: lesion wherever the HU lies in (low_hu, high_hu), voxel by
    voxel, so the result cannot depend on where the tiles fall."""
    import torch

    from pastacore.preprocessing.normalize import pasta_slf

    low, high = (float(v) for v in pasta_slf(np.array([low_hu, high_hu], np.float32)))

    class Net(torch.nn.Module):
        def forward(self, x):
            lesion = ((x > low) & (x < high)).float() * 20
            return torch.cat([10 - lesion, torch.zeros_like(x), lesion - 10], 1)

    return Net().eval()


def test_mined_false_positives_are_the_models_lesions_outside_the_excluded_zone(background):
    """A model that takes the lungs' air for lesion: its 'false positives' are mined on a 2 mm
    lattice, as the product keeps lesions (near the lungs), never in the excluded zone."""
    from pastacore.anatomy.masks import grow

    mined = mine_false_positives(voxelwise_network(-1100, -400), background, PATCH)
    lattice_lung = (background.lung & ~background.forbidden)[::2, ::2, ::2].sum()
    assert len(mined) > 0.5 * lattice_lung
    k, j, i = mined.T
    assert not background.forbidden[k, j, i].any(), "nothing near the real tumour is ever mined"
    assert (background.hu[k, j, i] < -400).mean() > 0.99  # what the model called lesion
    assert grow(background.lung, 10.0)[k, j, i].all()
    assert (mined % 2 == 0).all()


def test_scores_at_every_tile_offset_keep_the_tumour_on_the_image(background):
    """The scan with its tumour at 40 HU and every other voxel moved out of 0-100 HU, and a model
    that labels exactly that range: Dice 1 at every offset of the grid (a crop misaligning image
    and reference would lower it)."""
    from dataclasses import replace

    from pastacore.training.default_model import TILE_OFFSETS, evaluate_tilings

    hu = np.where((background.hu > -50) & (background.hu < 150), 300.0, background.hu)
    only_tumour = replace(background, hu=np.where(background.tumour, 40.0, hu).astype(np.float32))
    scores = evaluate_tilings(voxelwise_network(0, 100), only_tumour, PATCH)
    assert scores["offsets"] == [list(o) for o in TILE_OFFSETS]
    assert scores["dice"] == [1.0] * len(TILE_OFFSETS) and scores["detected"] == len(TILE_OFFSETS)
    assert scores["false_positive_ml"] == [0.0] * len(TILE_OFFSETS)


def test_mined_points_centre_half_of_the_lesion_free_patches(background):
    """With one mined point, about 40 % of the lesion-free patches show it (centred on it,
    shifted by up to a third of a patch); without, few do. None shows the excluded zone."""
    from scipy import ndimage

    away = ndimage.distance_transform_edt(~background.forbidden[::8, ::8, ::8]) * background.lung[::8, ::8, ::8]
    point = np.array(np.unravel_index(np.argmax(away), away.shape)) * 8  # the lung point furthest from the zone
    marked = background.hu.copy()
    marked[tuple(point)] = 5000.0
    marked[background.forbidden] = 9999.0
    from dataclasses import replace

    bg = replace(background, hu=marked, centres=None)
    shown = {}
    for mined in (None, [point[None]]):
        make_patch = training_sampler([bg], [], PATCH, mined=mined)
        rng = np.random.default_rng(1)
        patches = [make_patch(rng)[0] for _ in range(120)]
        assert all(p.max() < 9999.0 for p in patches)
        shown[mined is None] = np.mean([p.max() == 5000.0 for p in patches])
    assert 0.35 < shown[False] < 0.65 and shown[True] < 0.15


def test_training_loop_learns_a_simple_task():
    """A tiny network learns bright cubes (lesion) in a noisy sphere (organ) within a few dozen steps."""
    rng = np.random.default_rng(0)
    cases = []
    for seed in range(2):
        r = np.random.default_rng(seed)
        k, j, i = np.indices((48, 48, 48))
        organ = (k - 24) ** 2 + (j - 24) ** 2 + (i - 24) ** 2 < 20**2
        hu = np.where(organ, 40.0, -900.0) + r.normal(0, 10, organ.shape)
        labels = organ.astype(np.uint8)
        for _ in range(3):
            c = r.integers(14, 34, 3)
            cube = tuple(slice(int(v) - 3, int(v) + 3) for v in c)
            hu[cube] = 250.0 + r.normal(0, 10, (6, 6, 6))
            labels[cube] = 2
        cases.append((hu.astype(np.float32), labels))
    settings = TrainSettings(
        base_features=4, num_pool=2, patch_size=(32, 32, 32), steps=60, learning_rate=1e-2, seed=int(rng.integers(100))
    )
    network, log = train(cases, settings)
    assert len(log.losses) == 60
    assert np.mean(log.losses[-10:]) < 0.6 * np.mean(log.losses[:10])


def test_rotation_and_scaling_keep_labels_on_their_structures():
    """A bright ball labelled 2 stays labelled where it is bright after random turns and scalings,
    its volume changes within the scaling range, and the patch really moves."""
    from pastacore.training.recipe import rotate_scale_warp as _rotate_scale

    rng = np.random.default_rng(3)
    k, j, i = np.indices((48, 48, 48))
    ball = (k - 20) ** 2 + (j - 26) ** 2 + (i - 24) ** 2 < 9**2
    labels = ball.astype(np.uint8) * 2
    image = np.where(ball, 300.0, 0.0).astype(np.float32) + i.astype(np.float32)  # a ramp shows turning
    moved_any = False
    for _ in range(6):
        img, lab = _rotate_scale(image, labels, rng)
        assert img.shape == image.shape and lab.dtype == labels.dtype and set(np.unique(lab)) <= {0, 2}
        assert ((lab == 2) == (img > 150)).mean() > 0.98  # the ball is >= 300, the ramp <= 47
        ratio = (lab == 2).sum() / ball.sum()
        assert 1 / 1.25**3 / 1.1**3 * 0.9 < ratio < 1 / 0.8**3 * 1.1**3 * 1.1
        moved_any |= bool(np.abs(img - image).mean() > 1.0)
    assert moved_any


def test_elastic_warp_keeps_labels_on_their_structures_and_bends_straight_lines():
    """With ``elastic_mm`` the ball stays labelled where it is bright; a plane that rotation and
    scaling keep flat comes out bent by about the warp's size."""
    from pastacore.training.recipe import rotate_scale_warp as _rotate_scale

    k, j, i = np.indices((48, 48, 48))
    ball = (k - 24) ** 2 + (j - 24) ** 2 + (i - 24) ** 2 < 9**2
    image = np.where(ball, 300.0, 0.0).astype(np.float32) + 2.0 * i.astype(np.float32)  # i in mm, +2 HU per mm
    labels = ball.astype(np.uint8) * 2
    bends = {}
    for warp in (0.0, 3.0):
        img, lab = _rotate_scale(image, labels, np.random.default_rng(7), elastic_mm=warp)
        assert ((lab == 2) == (img > 200)).mean() > 0.98
        outside = ~ball & (lab == 0) & (k > 8) & (k < 40) & (j > 8) & (j < 40) & (i > 8) & (i < 40)
        # fit a plane to the ramp (an affine map keeps it planar): what is left is the warp, in mm
        A = np.c_[k[outside], j[outside], i[outside], np.ones(outside.sum())]
        coef, *_ = np.linalg.lstsq(A, img[outside], rcond=None)
        bends[warp] = float(np.std(img[outside] - A @ coef) / 2.0)
    assert bends[0.0] < 0.5 and 3 * bends[0.0] < bends[3.0] < 6.0


def _card(metrics, description, args):
    from pastacore.actions.train_default import reproduce_command
    from pastacore.training.default_card import model_card

    return model_card(metrics, description, reproduce_command(metrics, args))


def test_model_card_states_data_scores_and_limits():
    from types import SimpleNamespace

    from pastacore.actions.train_default import reproduce_command
    from pastacore.training.default_card import model_card, model_description

    metrics = {
        "backgrounds": ["lung1"],
        "synthetic_lesions": 80,
        "steps": 2000,
        "patch": [96, 96, 96],
        "base_features": 8,
        "seed": 1,
        "spatial_augmentation": 0.5,
        "pleura_mm": 2,
        "train_seconds": 100,
        "total_seconds": 120,
        "machine": "x86_64, 2 threads",
        "evaluation": [
            {"case": "lung2", "dice": 0.41, "detected": True, "false_positive_ml": 12.5, "tumour_ml": 48.5, "tta": False},
            {"case": "lung2", "dice": 0.52, "detected": True, "false_positive_ml": 9.0, "tumour_ml": 48.5, "tta": True},
        ],
    }
    description = model_description(metrics)
    description["files"][0]["sha256"] = "ab" * 32
    args = SimpleNamespace(lesions=80, patch=96, base_features=8, seed=1, evaluate_on="lung2", spatial_augmentation=0.5)
    card = model_card(metrics, description, reproduce_command(metrics, args))
    assert "Research use only" in card and "lung1" in card and "50 %" in card
    assert "| lung2 | none (default) | 0.410 | yes | 12.5 | 48.5 | no |" in card
    assert "| lung2 | 8 mirrorings (--tta) | 0.520 | yes | 9.0 | 48.5 | no |" in card
    assert "--steps 2000" in card and "--seed 1" in card and "--spatial-augmentation 0.5" in card
    assert "vary widely with the seed" in card and "RESULTS.md" in card  # one run is not the recipe
    assert "mean lesion probability under 0.7 are listed apart" in card  # the floor its model.json sets
    assert "--pleura-mm 2" in card and "lung mask grown 2 mm" in card
    older_metrics = {k: v for k, v in metrics.items() if k != "pleura_mm"}
    older = model_card(older_metrics, description, reproduce_command(older_metrics, args))
    assert "--pleura-mm 0" in older and "clipped by the air-based lung mask" in older  # how 0.3 was made
    assert "--hard-negative-steps" not in card and "false positives in the backgrounds" not in card
    second = _card(dict(metrics, hard_negative_steps=600, mined_false_positive_ml=[12.8]), description, args)
    assert "--hard-negative-steps 600" in second
    assert "then 600 steps" in second and "own false positives in the backgrounds (13 mL)" in second
    assert "--elastic-mm" not in card and "tiles at" not in card
    assert "--zone-mm" not in card and "tumour box + half a patch + 10 mm" in card
    narrow = _card(dict(metrics, zone_mm=10), description, args)
    assert "--zone-mm 10" in narrow and "tumour box + 10 mm is excluded" in narrow
    assert "--zone-mm" not in _card(dict(metrics, zone_mm=58), description, args)  # the default, stated plainly
    tiled = _card(
        dict(
            metrics,
            elastic_mm=3.0,
            evaluation_tilings=[
                {
                    "case": "lung2",
                    "dice": [0.41, 0.35, 0.39],
                    "dice_mean": 0.383,
                    "dice_min": 0.35,
                    "dice_max": 0.41,
                    "detected": 3,
                    "false_positive_ml": [46.2, 61.0, 57.9],
                }
            ],
        ),
        description,
        args,
    )
    assert "--elastic-mm 3" in tiled and "smoothly warped, 3 mm" in tiled
    assert "| lung2 | 0.383 | 0.350-0.410 | 3 of 3 | 46.2-61.0 |" in tiled


# --- report-attribute heads on synthetic lesions ------------------------------------------------


@pytest.fixture(scope="module")
def attribute_sets(background):
    import torch

    from pastacore.networks.unet import PastaUNet
    from pastacore.training.attribute_heads import synthetic_attribute_set

    torch.manual_seed(0)
    network = PastaUNet(num_classes=3, base_features=4, num_pool=4)
    return (synthetic_attribute_set([background], network, 10, seed=1), synthetic_attribute_set([background], network, 6, seed=2))


def test_attribute_set_has_known_targets_for_every_group(attribute_sets):
    from pastacore.training.attribute_heads import LUNG_GROUPS

    train, test = attribute_sets
    assert train.features.shape == (10, 4 * 2**3) and test.features.shape[0] == 6
    assert np.isfinite(train.features).all()
    assert train.targets.shape == (10, len(LUNG_GROUPS))
    for g, (_name, _attribute, options) in enumerate(LUNG_GROUPS):
        assert ((train.targets[:, g] >= 0) & (train.targets[:, g] < len(options))).all()


def test_combined_head_equals_the_five_separate_heads(attribute_sets):
    from pastacore.classify.fewshot import fit_head
    from pastacore.training.attribute_heads import LUNG_GROUPS, fit_attribute_heads, score_heads

    train, test = attribute_sets
    head = fit_attribute_heads(train)
    assert [g.name for g in head.groups] == ["shape", "density", "heterogeneity", "surface", "invasion"]
    combined = head.probabilities(test.features)
    for g, (_name, _attribute, options) in enumerate(LUNG_GROUPS):
        alone = fit_head(train.features, train.targets[:, g], options, "linear", 1.0, 0)
        assert np.allclose(alone.probabilities(test.features)[0][1], combined[g][1], atol=1e-5)
    scores = score_heads(head, test, train)
    for g, (name, _attribute, _options) in enumerate(LUNG_GROUPS):
        predicted = combined[g][1].argmax(1)
        assert scores[name]["accuracy"] == pytest.approx((predicted == test.targets[:, g]).mean())


def test_lesion_input_is_centred_on_the_lesion():
    from pastacore.training.attribute_heads import lesion_input

    hu = np.full((60, 70, 80), -800.0, np.float32)
    box = (slice(5, 25), slice(30, 50), slice(60, 80))
    image = np.full((20, 20, 20), 40.0, np.float32)
    lesion = np.zeros((20, 20, 20), bool)
    lesion[8:12, 8:12, 8:12] = True
    image[~lesion] = -800.0
    crop = lesion_input(hu, box, image, lesion)
    assert crop.shape == (96, 96, 96)
    bright = np.argwhere(crop > crop.min() + 0.5)
    centre = bright[(bright[:, 0] > 0)].mean(0)  # the lesion, not the zero padding
    assert np.allclose(centre, [47.5, 47.5, 47.5], atol=1.0)


def test_cli_train_attributes_refuses_bad_input_before_work(tmp_path, capsys):
    from pastacore.cli.main import main

    assert main(["train-attributes", "--train", "5", "--out", str(tmp_path / "head.pt")]) == 2
    assert "at least 10" in capsys.readouterr().err
    (tmp_path / "head.pt").write_text("keep me")
    assert main(["train-attributes", "--out", str(tmp_path / "head.pt")]) == 2
    assert "exists" in capsys.readouterr().err
    assert (tmp_path / "head.pt").read_text() == "keep me"


def test_cli_train_default_refuses_a_negative_zone_before_work(tmp_path, capsys):
    from pastacore.cli.main import main

    out = tmp_path / "model"
    assert main(["train-default", "--backgrounds", "lung1", "--zone-mm", "-5", "--out", str(out)]) == 2
    assert "--zone-mm must be 0 or more" in capsys.readouterr().err
    assert not out.exists()


def test_acquired_slices_keep_smooth_values_and_blur_thin_ones():
    from pastacore.training.default_model import acquire_slices

    positions = np.arange(-3.0, 80.0, 5.0)  # 5 mm slices, not on the box's first voxel
    ramp = np.broadcast_to(np.arange(10, 60, dtype=np.float32)[:, None, None], (50, 3, 4)).copy()
    out = acquire_slices(ramp, 10, positions, 5.0)
    assert out.shape == ramp.shape
    assert np.allclose(out[5:-5], ramp[5:-5], atol=1e-4)  # a linear profile survives
    thin = np.zeros((50, 2, 2), np.float32)
    thin[22] = 100.0  # k = 32: exactly on a slice position
    out = acquire_slices(thin, 10, positions, 5.0)
    assert out.max() == pytest.approx(20.0, abs=1e-3)  # averaged over a 5 mm slice
    assert (out[:, 0, 0] > 0).sum() >= 9  # and spread over the neighbouring slices
    assert out.sum() == pytest.approx(thin.sum(), rel=0.05)
