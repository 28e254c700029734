"""Whole-slice and tiled prediction: shapes, probabilities, tiling against whole slices."""

import numpy as np
import pytest
import torch

from emseg_tutorial.data.normalize import standardize, to_unit_range
from emseg_tutorial.models import UNet2d
from emseg_tutorial.predict import predict_labels, predict_probabilities, probabilities_to_codes


def _image(shape=(2, 70, 70), seed=0):
    return np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)


def _pointwise(seed=0, classes=3):
    torch.manual_seed(seed)
    return torch.nn.Conv2d(1, classes, kernel_size=1)


def _unet(depth=2, norm=None, seed=0):
    torch.manual_seed(seed)
    return UNet2d(out_channels=2, depth=depth, base_width=4, norm=norm)


def test_shape_dtype_and_sum_to_one():
    probs = predict_probabilities(_unet(), _image((3, 40, 52)))
    assert probs.shape == (2, 3, 40, 52) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(0), 1, atol=1e-5)
    assert probs.min() >= 0 and probs.max() <= 1


def test_pointwise_model_matches_softmax_of_the_standardised_volume():
    img = _image((2, 30, 30))
    model = _pointwise()
    probs = predict_probabilities(model, img)
    x = torch.from_numpy(standardize(to_unit_range(img)))[:, None]   # the volume's own statistics
    with torch.no_grad():
        expected = torch.softmax(model(x), 1).permute(1, 0, 2, 3).numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-6)


@pytest.mark.parametrize("shape, tile, overlap", [((2, 70, 70), 32, 8), ((1, 37, 53), 16, 7),
                                                   ((3, 100, 40), 32, 0), ((1, 65, 200), 64, 31)])
def test_tiled_equals_whole_slice_for_a_pointwise_model(shape, tile, overlap):
    # a 1x1 convolution sees one pixel, so tiling and blending must not change anything; the
    # only difference left is float rounding of the blend ((p w1 + p w2) / (w1 + w2) vs p)
    img = _image(shape)
    model = _pointwise()
    whole = predict_probabilities(model, img, tile=512)
    tiled = predict_probabilities(model, img, tile=tile, overlap=overlap, batch_size=3)
    assert tiled.shape == whole.shape == (3,) + shape
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-6)


def test_tiled_close_to_whole_slice_for_a_unet():
    img = _image((2, 70, 70))
    model = _unet(depth=2)
    whole = predict_probabilities(model, img, tile=512)
    tiled = predict_probabilities(model, img, tile=32, overlap=12)
    diff = np.abs(tiled - whole)
    # tile borders see zero padding instead of the neighbouring pixels: small, local differences
    assert diff.max() < 0.05
    assert diff.mean() < 2e-3
    np.testing.assert_allclose(tiled.sum(0), 1, atol=1e-5)


def test_tiled_unet_agrees_away_from_tile_borders():
    # depth 1: pooling grid 2, receptive radius about 10 px. On 56 px, tiles of 40 with overlap
    # 16 start at 0 and 16 (even, so on the whole slice's pooling grid). Pixel 27 is 12 px from
    # tile 0's inner edge (39) and 11 px from tile 1's (16): both tiles see all its context.
    img = _image((1, 56, 56))
    model = _unet(depth=1)
    whole = predict_probabilities(model, img, tile=512)
    tiled = predict_probabilities(model, img, tile=40, overlap=16)
    centre = (slice(None), slice(None), slice(27, 28), slice(27, 28))
    np.testing.assert_allclose(tiled[centre], whole[centre], atol=1e-5)
    # far from any inner tile edge in one direction as well: the first 5 rows/columns are
    # only in tile 0, more than 10 px from its inner edge at 39
    np.testing.assert_allclose(tiled[:, :, :5, :5], whole[:, :, :5, :5], atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 37, 53), (2, 17, 16), (3, 99, 21)])
def test_odd_slice_sizes(shape):
    img = _image(shape)
    for tile in (16, 512):
        probs = predict_probabilities(_unet(), img, tile=tile, overlap=4)
        assert probs.shape == (2,) + shape
        np.testing.assert_allclose(probs.sum(0), 1, atol=1e-5)


def test_2d_image_is_one_slice():
    probs = predict_probabilities(_unet(), _image((1, 24, 24))[0])
    assert probs.shape == (2, 1, 24, 24)


def test_batch_size_does_not_change_the_result():
    img = _image((5, 24, 24))
    model = _unet(norm="batch")
    a = predict_probabilities(model, img, batch_size=1)
    b = predict_probabilities(model, img, batch_size=4)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_model_is_put_in_eval_mode():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.Dropout2d(0.9))
    img = _image((2, 20, 20))
    a = predict_probabilities(model, img)
    b = predict_probabilities(model.train(), img)
    np.testing.assert_array_equal(a, b)   # dropout off both times
    assert not model.training


def test_probabilities_to_codes_is_argmax_plus_one():
    probs = np.zeros((3, 1, 2, 2), np.float32)
    probs[0, 0, 0, 0] = probs[1, 0, 0, 1] = probs[2, 0, 1, 0] = probs[2, 0, 1, 1] = 1
    codes = probabilities_to_codes(probs)
    assert codes.dtype == np.uint8 and codes.shape == (1, 2, 2)
    np.testing.assert_array_equal(codes, [[[1, 2], [3, 3]]])


def test_predict_labels_matches_probabilities():
    img = _image((2, 30, 30))
    model = _unet()
    codes = predict_labels(model, img, tile=16, overlap=4)
    probs = predict_probabilities(model, img, tile=16, overlap=4)
    np.testing.assert_array_equal(codes, probs.argmax(0) + 1)
    assert set(np.unique(codes)) <= {1, 2}


@pytest.mark.parametrize("tile, overlap", [(8, 0), (15, 2), (32, 16), (32, 20), (32, -1), (64, 32)])
def test_bad_tile_or_overlap_raise(tile, overlap):
    with pytest.raises(ValueError, match="tile"):
        predict_probabilities(_pointwise(), _image((1, 20, 20)), tile=tile, overlap=overlap)


def test_bad_image_raises():
    with pytest.raises(ValueError):
        predict_probabilities(_pointwise(), np.zeros((2, 2, 8, 8)))
