"""PASTA's intensity normalisations and classification crops, with their maps back."""

import json

import numpy as np
import pytest

from pastacore.errors import PastaError
from pastacore.preprocessing.crops import lesion_crop, mask_box, organ_crop
from pastacore.preprocessing.normalize import ct_statistics, nnunet_ct, pasta_slf


def test_slf_breakpoints():
    hu = np.array([-3000, -1000, -600, -200, 0, 200, 600, 1000, 3000], np.float32)
    expected = [0, 0, 0.1, 0.2, 0.55, 0.9, 0.95, 1.0, 1.0]
    assert np.allclose(pasta_slf(hu), expected)
    assert pasta_slf(hu).dtype == np.float32


def test_nnunet_ct_normalisation_from_plans(tmp_path):
    plans = {
        "foreground_intensity_properties_per_channel": {
            "0": {"mean": 50.0, "std": 100.0, "percentile_00_5": -900.0, "percentile_99_5": 1200.0, "median": 40.0}
        }
    }
    stats = ct_statistics(json.loads(json.dumps(plans)))
    out = nnunet_ct(np.array([-2000, 50, 150, 5000], np.float32), stats)
    assert np.allclose(out, [(-900 - 50) / 100, 0, 1, (1200 - 50) / 100])
    with pytest.raises(PastaError, match="lacks the CT intensity statistics"):
        ct_statistics({"configurations": {}})


def test_organ_crop_is_128_cubed_and_maps_back(lung2):
    image, label = lung2
    crop = organ_crop(image.array.astype(np.float32), label.array > 0)
    assert crop.array.shape == (128, 128, 128)
    box = mask_box(label.array > 0, 32)
    lo, hi = np.argwhere(label.array > 0).min(0), np.argwhere(label.array > 0).max(0)
    for axis in range(3):
        assert box[axis][0] == max(lo[axis] - 32, 0) and box[axis][1] == min(hi[axis] + 33, label.array.shape[axis])
    # a mask computed on the crop (here: the resampled tumour itself) lands on the tumour again
    cropped_mask = organ_crop((label.array > 0).astype(np.float32), label.array > 0).array > 0.5
    back = crop.to_source(cropped_mask.astype(np.uint8), is_label=True)
    a, b = back > 0, label.array > 0
    assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.85


def test_small_organ_is_padded_not_stretched():
    image = np.zeros((200, 200, 200), np.float32)
    mask = np.zeros_like(image, bool)
    mask[100:110, 100:110, 100:110] = True
    image[mask] = 1.0
    crop = organ_crop(image, mask)  # box is 74^3 -> padded to 128^3, no resize
    assert crop.pad[0] == (27, 27)
    assert crop.array.sum() == pytest.approx(1000)
    back = crop.to_source(crop.array > 0.5)
    assert np.array_equal(back, mask)


def test_lesion_crop_centred_and_padded_at_the_border(lung1):
    image, label = lung1
    crop = lesion_crop(image.array, label.array > 0)
    assert crop.array.shape == (96, 96, 96)
    assert crop.pad[0][0] + crop.pad[0][1] == 96 - 48  # only 48 slices: padded along k
    back = crop.to_source(np.zeros((96, 96, 96), np.uint8))
    assert back.shape == image.array.shape
    # the lesion mask cut out and put back is identical
    cut = lesion_crop(label.array, label.array > 0)
    assert np.array_equal(cut.to_source(cut.array), label.array)


def test_empty_or_mismatched_masks():
    with pytest.raises(PastaError, match="mask is empty"):
        organ_crop(np.zeros((10, 10, 10)), np.zeros((10, 10, 10), bool))
    with pytest.raises(PastaError, match="does not match"):
        lesion_crop(np.zeros((10, 10, 10)), np.ones((9, 10, 10), bool))
