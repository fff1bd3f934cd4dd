"""Shared fixtures: real sample CTs (fetched once into the per-user cache) and headless scenes."""

from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.fixture(scope="session")
def sample_dir():
    from pastacore.samples import ensure_samples

    return ensure_samples()


@pytest.fixture(scope="session")
def lung1(sample_dir):
    from pastacore.fileio import read_volume

    return read_volume(sample_dir / "lung1_image.nrrd"), read_volume(sample_dir / "lung1_label.nrrd", is_label=True)


@pytest.fixture(scope="session")
def lung2(sample_dir):
    from pastacore.fileio import read_volume

    return read_volume(sample_dir / "lung2_image.nrrd"), read_volume(sample_dir / "lung2_label.nrrd", is_label=True)


def pasta(*argv) -> int:
    """The exit code of ``pasta ARGV`` run in this process (arguments may be paths)."""
    from pastacore.cli.main import main

    return main([str(a) for a in argv])


def run_cli(capsys, *argv) -> tuple:
    """``(exit code, stdout, stderr)`` of ``pasta ARGV`` run in this process (arguments may be paths)."""
    from pastacore.cli.main import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def one_torch_thread():
    """Tiny networks run as fast on one thread, and one thread does not spin against other jobs
    on a shared CPU (two did: 10x slower under load)."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def scene():
    pytest.importorskip("slicer")
    from pastacore.mrml.scene import new_scene

    return new_scene()


def make_volume(shape=(12, 14, 16), spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=None, seed=0, is_label=False):
    """A CT-like random volume (or a label map with a few blobs) on a chosen grid."""
    from pastacore.geometry import Grid, Volume

    rng = np.random.default_rng(seed)
    if is_label:
        array = np.zeros(shape, np.uint8)
        array[2:-2, 3:-3, 4:-4] = 1
        array[shape[0] // 2 :, shape[1] // 2 :, : shape[2] // 2] = 2
    else:
        array = rng.normal(0, 300, shape).astype(np.float32)
        array[0] = -1000
    return Volume(array, Grid(shape, spacing, origin, np.eye(3) if direction is None else direction), is_label=is_label)


def sphere_organ_ct(n=48, spacing=(1.0, 1.0, 1.0), direction=None, organ_radius=0.4, seed=5):
    """``(CT, organ labels)``: an n^3 int16 body (20 HU) holding a spherical organ (label 1, 60 HU,
    radius ``organ_radius`` * n voxels) with noise (SD 8 HU), centred on the origin."""
    from pastacore.geometry import Grid, Volume

    rng = np.random.default_rng(seed)
    k, j, i = np.indices((n, n, n))
    c = (n - 1) / 2
    r = np.sqrt((k - c) ** 2 + (j - c) ** 2 + (i - c) ** 2)
    array = np.full((n, n, n), -1000.0)
    array[r < n * 0.48] = 20
    array[r < n * organ_radius] = 60
    array = (array + rng.normal(0, 8, array.shape)).astype(np.int16)
    direction = np.eye(3) if direction is None else direction
    origin = -(direction @ (np.asarray(spacing) * c))
    grid = Grid((n, n, n), spacing, tuple(origin), direction)
    return Volume(array, grid), Volume((r < n * organ_radius).astype(np.uint8), grid, is_label=True)


def rotation(ax: float, ay: float, az: float, left_handed: bool = False) -> np.ndarray:
    """A rotation matrix (degrees about x, y, z); optionally with the k axis flipped."""
    a, b, c = np.radians([ax, ay, az])
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    m = rz @ ry @ rx
    if left_handed:
        m[:, 2] *= -1
    return m


def phantom_ct():
    """A small chest phantom: body (40 HU) with two air-filled lungs (-850 HU), 3 x 3 x 4 mm voxels,
    centred on the origin; the right lung is at R = +48 mm, the left at R = -48 mm."""
    from pastacore.geometry import Grid, Volume

    shape = (24, 80, 80)
    k, j, i = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
    array = np.full(shape, -1000.0, np.float32)
    array[((i - 40) / 36) ** 2 + ((j - 40) / 30) ** 2 <= 1] = 40
    for centre in (24, 56):
        array[((i - centre) / 8) ** 2 + ((j - 40) / 11) ** 2 + ((k - 12) / 8) ** 2 <= 1] = -850
    return Volume(array.astype(np.int16), Grid(shape, (3.0, 3.0, 4.0), (-117.0, -117.0, -46.0)))


@pytest.fixture(scope="module")
def tiny_lung_model(tmp_path_factory):
    """A model folder as `pasta train-default --out` writes it: random tiny weights, lung labels."""
    import torch

    from pastacore.networks.unet import PastaUNet

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-lung-model")
    torch.save(PastaUNet(num_classes=3, base_features=4, num_pool=2).state_dict(), folder / "model.pth")
    (folder / "model.json").write_text(
        json.dumps(
            {
                "name": "tiny-lung",
                "version": "test",
                "task": "segmentation",
                "patch_size": [32, 32, 32],
                "architecture": {"type": "pasta_generic_unet", "base_features": 4, "num_pool": 2, "input_channels": 1},
                "labels": [{"value": 1, "term": "lung"}, {"value": 2, "term": "tumor@lung"}],
                "weights": "model.pth",
            }
        )
    )
    return str(folder)


@pytest.fixture(scope="session")
def lung2_segmented(lung2, tmp_path_factory):
    """lung2 segmented by the built-in model in a 90 mm box around its tumour (on slicer-core, as
    the Segment module does it), saved as a .mrb: the real segmentation several tests share."""
    pytest.importorskip("slicer")
    from pastacore.mrml import roi, volumes
    from pastacore.mrml.scene import new_scene
    from pastacore.mrml.scene_io import save_mrb
    from pastacore.tasks import InlineRunner
    from PastaSlicerLib.controllers import SegmentController, SegmentRequest

    image, tumour = lung2
    scene = new_scene().scene
    ct = volumes.node_from_volume(scene, image, "lung2 CT")
    centre = image.grid.ijk_to_ras() @ np.array([*np.argwhere(tumour.array > 0).mean(axis=0)[::-1], 1.0])
    box = roi.add_roi(scene, centre[:3], (90.0, 90.0, 90.0), name="tumour box")
    outcomes = []
    SegmentController(scene, InlineRunner()).start(SegmentRequest(ct, roi=box), on_finished=outcomes.append)
    assert outcomes[0].ok, outcomes[0].error
    path = tmp_path_factory.mktemp("scene") / "lung2.mrb"
    save_mrb(scene, path)
    return path
