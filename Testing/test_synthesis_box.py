"""Nothing outside the drawn box changes (issue 32): every voxel outside the box is compared with
the source, for several boxes, lesion types and voxel grids, with every synthesis backend (the
LesionDiffusion ones with small seeded networks); a box partly outside the image holds the
lesion in its in-image part."""

import numpy as np
import pytest
from conftest import phantom_ct, rotation, sphere_organ_ct

from pastacore.geometry.boxes import VoxelBox
from pastacore.synthesis import synthesize_lesion

CUT_NOTE = "beyond the box were left unchanged"


organ_ct = sphere_organ_ct


def outside_of(box, shape):
    outside = np.ones(shape, bool)
    outside[box.slices] = False
    return outside


def check_inside(volume, box, result):
    """The lesion and every changed voxel lie in the (in-image part of the) box."""
    outside = outside_of(box, volume.array.shape)
    assert np.array_equal(result.image.array[outside], volume.array[outside])
    assert result.lesion.any() and not (result.lesion & outside).any()
    assert (result.image.array != volume.array).any()


ORGAN_CASES = [  # (spacing, direction, box, lesion type, description)
    ((1.0, 1.0, 1.0), None, VoxelBox((14, 14, 14), (34, 34, 34)), "liver_tumor", "14 mm irregular hypodense ill-defined"),
    ((1.0, 1.0, 1.0), None, VoxelBox((17, 16, 15), (31, 30, 29)), "liver_tumor", "10 mm round hyperdense well-defined"),
    ((0.8, 0.8, 2.5), None, VoxelBox((16, 14, 14), (30, 34, 34)), "liver_cyst", "round cyst"),
    ((1.2, 1.0, 1.5), rotation(12, -8, 20), VoxelBox((12, 12, 12), (36, 36, 36)), "kidney_tumor", "spiculated mass"),
]


@pytest.mark.parametrize("spacing, direction, box, kind, text", ORGAN_CASES)
def test_procedural_lesions_stay_in_the_box(spacing, direction, box, kind, text):
    volume, organ = organ_ct(spacing=spacing, direction=direction)
    organ_name = {"liver_tumor": "liver", "liver_cyst": "liver", "kidney_tumor": "kidney"}[kind]
    result = synthesize_lesion(
        volume=volume, organ_labels=organ, organ_names={1: organ_name}, roi_box=box, lesion_type=kind, attributes=text, seed=11
    )
    check_inside(volume, box, result)
    if "round" in text:  # a round lesion is fitted, not cut: nothing had to be put back
        assert not any(CUT_NOTE in note for note in result.plan.notes), result.plan.notes


def test_a_requested_size_too_large_for_the_edge_is_reduced_and_said():
    volume, organ = organ_ct()
    box = VoxelBox((13, 13, 13), (35, 35, 35))  # 22 mm: a 20 mm lesion fits, its edge does not
    result = synthesize_lesion(
        volume=volume,
        organ_labels=organ,
        organ_names={1: "liver"},
        roi_box=box,
        lesion_type="liver_tumor",
        attributes="20 mm round hypodense well-defined",
        seed=2,
    )
    check_inside(volume, box, result)
    assert max(result.plan.size_mm) < 20
    assert any("requested size 20 x 20 x 20 mm was reduced" in note for note in result.plan.notes)
    assert any("reduced" in line for line in result.report["plan_text"])


def test_lung_nodules_in_boxes_of_the_chest_phantom():
    volume = phantom_ct()  # 3 x 3 x 4 mm voxels, lungs found without a model
    for box, text in (
        (VoxelBox((4, 28, 14), (20, 52, 34)), "12 mm round-like solid nodule"),
        (VoxelBox((8, 30, 16), (16, 50, 32)), "spiculated solid nodule"),
    ):
        result = synthesize_lesion(volume=volume, roi_box=box, lesion_type="lung_tumor", attributes=text, seed=4)
        check_inside(volume, box, result)


def test_a_box_partly_outside_the_image_holds_the_lesion_in_its_in_image_part():
    volume, organ = organ_ct()
    box = VoxelBox((16, 16, 30), (32, 32, 70))  # i from 30 to 69: the image ends at 47
    result = synthesize_lesion(
        volume=volume, organ_labels=organ, organ_names={1: "liver"}, roi_box=box, lesion_type="liver_tumor", seed=6
    )
    in_image = VoxelBox((16, 16, 30), (32, 32, 48))
    check_inside(volume, in_image, result)
    i = np.argwhere(result.lesion)[:, 2]
    centre = (i.min() + i.max()) / 2
    assert 30 < centre < 47 and abs(centre - 38.5) <= 3  # in the middle of the in-image part, not on the box's edge
    assert i.max() < 47  # not cut by the image's border


# -- the LesionDiffusion backends, with small seeded networks ---------------------------------------


@pytest.fixture(scope="module")
def tiny_networks(tmp_path_factory):
    pytest.importorskip("torch")
    from test_lesiondiffusion import make_models

    folder = tmp_path_factory.mktemp("ld-box")
    make_models(folder)
    return folder


@pytest.mark.parametrize(
    "backend, spacing, box",
    [
        ("lesiondiffusion", (1.25, 1.0, 2.0), VoxelBox((8, 8, 6), (18, 26, 26))),
        ("lesiondiffusion-hybrid", (1.0, 1.0, 1.0), VoxelBox((8, 8, 9), (24, 25, 24))),
    ],
)
def test_diffusion_lesions_stay_in_the_box(tiny_networks, backend, spacing, box):
    from test_lesiondiffusion import fake_text

    volume, organ = organ_ct(n=32, spacing=spacing)
    result = synthesize_lesion(
        volume=volume,
        organ_labels=organ,
        organ_names={1: "liver"},
        roi_box=box,
        lesion_type="liver_tumor",
        attributes="irregular hypodense liver lesion",
        seed=3,
        backend=backend,
        backend_options={
            "models": str(tiny_networks),
            "text_encoder": fake_text,
            "steps": 1,
            "device": "cpu",
            "allow_slow": True,
        },
    )
    check_inside(volume, box, result)
    assert result.report["backend"] == backend
