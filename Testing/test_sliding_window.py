"""Sliding-window inference: exact blending, skipped empty patches, mirroring, cancelling."""

import numpy as np
import pytest
import torch

from pastacore.errors import CancelledError, PastaError
from pastacore.inference.sliding_window import WindowSettings, gaussian_weights, predict_logits, tile_starts


def pointwise_network(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Conv3d(1, 3, kernel_size=1)


@pytest.fixture()
def image():
    return np.random.default_rng(0).normal(size=(1, 40, 50, 60)).astype(np.float32)


def test_tiles_cover_the_volume_evenly():
    assert tile_starts(100, 32, 0.5) == [0, 14, 27, 41, 54, 68]
    assert tile_starts(20, 32, 0.5) == [0]
    for size in (33, 64, 100, 257):
        starts = tile_starts(size, 32, 0.5)
        assert starts[0] == 0 and starts[-1] == size - 32 and max(np.diff(starts)) <= 16


def test_gaussian_weights_peak_in_the_centre():
    weights = gaussian_weights((16, 16, 16))
    assert weights.max() == pytest.approx(1.0) and weights.min() > 0
    assert weights[8, 8, 8] > weights[0, 8, 8] > weights[0, 0, 0]


def test_blending_a_pointwise_network_is_exact(image):
    network = pointwise_network()
    logits, box, run, total = predict_logits(network, image, WindowSettings((16, 16, 16), 0.5, 3, amp=False))
    with torch.no_grad():
        expected = network(torch.from_numpy(image)[None])[0].numpy()
    assert box == ((0, 40), (0, 50), (0, 60)) and run == total
    assert np.abs(logits - expected).max() < 1e-5


def test_agrees_with_monai_sliding_window(image):
    monai = pytest.importorskip("monai.inferers")
    torch.manual_seed(1)
    network = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.LeakyReLU(), torch.nn.Conv3d(4, 3, 3, padding=1))
    ours, *_ = predict_logits(network, image, WindowSettings((16, 16, 16), 0.5, 4, amp=False))
    with torch.no_grad():
        theirs = monai.sliding_window_inference(
            torch.from_numpy(image)[None], (16, 16, 16), 4, network, overlap=0.5, mode="gaussian", sigma_scale=0.125
        )[0].numpy()
        whole = network(torch.from_numpy(image)[None])[0].numpy()
    scale = whole.std()
    # both approximate the whole-image forward; ours (nnU-Net tiling) is at least as close as MONAI's
    assert np.abs(ours - theirs).mean() < 0.05 * scale
    assert np.abs(ours - whole).mean() <= np.abs(theirs - whole).mean() + 1e-6


def test_only_patches_touching_the_region_run(image):
    region = np.zeros(image.shape[1:], bool)
    region[30:34, 40:44, 50:54] = True
    region[1:3, 1:3, 1:3] = True  # two far-apart spots: the patches between them are skipped
    calls = []
    network = pointwise_network()

    def counting(x):
        calls.append(x.shape[0])
        return network(x)

    logits, box, run, total = predict_logits(counting, image, WindowSettings((16, 16, 16), 0.5, 1, amp=False), region)
    assert run == sum(calls) and run < total
    assert all(b - a >= 16 for a, b in box)  # the box grows to at least one patch
    with torch.no_grad():
        expected = network(torch.from_numpy(image)[None])[0].numpy()
    inner = tuple(slice(a - lo, b - lo) for (a, b), (lo, _) in zip(((30, 34), (40, 44), (50, 54)), box))
    assert (
        np.abs(logits[(slice(None),) + inner] - expected[(slice(None), slice(30, 34), slice(40, 44), slice(50, 54))]).max() < 1e-5
    )


def test_mirroring_of_a_symmetric_network_changes_nothing(image):
    network = pointwise_network()
    plain, *_ = predict_logits(network, image, WindowSettings((16, 16, 16), 0.5, 2, amp=False))
    mirrored, *_ = predict_logits(network, image, WindowSettings((16, 16, 16), 0.5, 2, (0, 1, 2), amp=False))
    assert np.abs(plain - mirrored).max() < 1e-5


def test_cancel_and_empty_region(image):
    with pytest.raises(CancelledError):
        predict_logits(pointwise_network(), image, WindowSettings((16, 16, 16)), is_cancelled=lambda: True)
    with pytest.raises(PastaError, match="empty"):
        predict_logits(pointwise_network(), image, WindowSettings((16, 16, 16)), np.zeros(image.shape[1:], bool))


# -- the pieces: tiling + blending runs any predictor; TTA and the OOM fallback wrap it -------------


def test_blend_tiles_runs_a_plain_callable_and_the_result_is_named(image):
    from pastacore.inference.sliding_window import blend_tiles, plan_tiles

    region = np.ones(image.shape[1:], bool)
    tiles, total = plan_tiles(region, (16, 16, 16), 0.5)
    assert len(tiles) == total
    blended = blend_tiles(lambda batch: batch * 2.0, image, tiles, (16, 16, 16), batch_size=5)
    assert np.abs(blended - 2 * image).max() < 1e-5  # an identity-like predictor blends back to itself
    result = predict_logits(pointwise_network(), image, WindowSettings((16, 16, 16), 0.5, 3, amp=False))
    assert (result.tiles_run, result.tiles_total) == (total, total) and result.logits.shape[0] == 3


def test_mirrored_wrapper_averages_every_flip():
    from pastacore.inference.sliding_window import mirrored

    batch = torch.arange(2 * 1 * 4 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4, 4)
    seen = []

    def predictor(x):
        seen.append(x.clone())
        return x[:, :, :1].expand(-1, -1, 4, -1, -1)  # not flip-equivariant along axis 0

    out = mirrored(predictor, (0, 1))(batch)
    assert len(seen) == 4  # identity, flip 0, flip 1, flip 0+1
    expected = sum(torch.flip(predictor(torch.flip(batch, d)), d) if d else predictor(batch) for d in ([], [2], [3], [2, 3])) / 4
    assert torch.allclose(out, expected)


class _GpuThatFills:
    """A device predictor whose 'GPU' runs out of memory above ``limit`` patches per batch."""

    def __init__(self, limit):
        self.device, self.limit, self.sizes, self.moved = torch.device("cuda"), limit, [], False

    def __call__(self, batch):
        if self.device.type == "cuda" and len(batch) > self.limit:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.sizes.append((self.device.type, len(batch)))
        return batch + 1

    def to_cpu(self):
        self.device, self.moved = torch.device("cpu"), True


def test_out_of_memory_splits_the_batch_then_moves_to_the_cpu():
    from pastacore.inference.sliding_window import with_oom_fallback

    batch = torch.zeros(4, 1, 2, 2, 2)
    said = []
    gpu = _GpuThatFills(limit=1)
    out = with_oom_fallback(gpu, gpu, say=said.append)(batch)
    assert torch.equal(out, batch + 1) and gpu.sizes == [("cuda", 1)] * 4 and not gpu.moved
    assert said and "batches of 2" in said[0]
    full = _GpuThatFills(limit=0)
    out = with_oom_fallback(full, full, say=said.append)(batch[:1])
    assert torch.equal(out, batch[:1] + 1) and full.moved and full.sizes == [("cpu", 1)]
    assert said[-1] == "GPU memory full: continuing on the CPU"
    other = _GpuThatFills(limit=0)
    with pytest.raises(RuntimeError, match="something else"):  # only out-of-memory is caught
        with_oom_fallback(lambda b: (_ for _ in ()).throw(RuntimeError("something else")), other)(batch)
    other.device = torch.device("cpu")
    with pytest.raises(RuntimeError, match="out of memory"):  # and only on a GPU
        with_oom_fallback(_GpuThatFills(limit=0), other)(batch)
