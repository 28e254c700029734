"""Tests of emseg_tutorial.weights: hand-checked values, skimage agreement, slice independence,
and the errors for bad input.

The public functions take label codes 0..4 (``labels.check_codes``); the entropy algorithm
itself works for any non-negative integers, which the tests with more codes check on the
private core ``W._label_entropy``."""

import math

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.filters.rank import entropy as rank_entropy

from emseg_tutorial import weights as W
from emseg_tutorial.viz.weights import DISTANCE_READINGS, distance_readings
from emseg_tutorial.weight_schemes import parse_weight_scheme, weight_map
from emseg_tutorial.weights import (
    border_weight_map,
    class_ratio,
    distance_weight_map,
    entropy_weight_map,
    label_entropy,
    ratio_weight_map,
    smoothed_distance_map,
)


def h2(*probabilities):
    """Entropy in bits of a discrete distribution."""
    return -sum(p * math.log2(p) for p in probabilities if p > 0)


def wall_7x7(left=2, right=2):
    labels = np.full((7, 7), left, dtype=np.uint8)
    labels[:, 4:] = right
    labels[:, 3] = 1
    return labels


def voronoi_labels(shape, n_cells, seed, mito=False):
    """Boundary-task-like codes: Voronoi cells (2) separated by 2-pixel walls (1)."""
    rng = np.random.default_rng(seed)
    seeds = np.zeros(shape, dtype=np.int32)
    points = rng.integers(0, shape, (n_cells, 2))
    seeds[points[:, 0], points[:, 1]] = np.arange(1, n_cells + 1)
    iy, ix = ndi.distance_transform_edt(seeds == 0, return_distances=False, return_indices=True)
    cells = seeds[iy, ix]
    wall = np.zeros(shape, dtype=bool)
    wall[:, 1:] |= cells[:, 1:] != cells[:, :-1]
    wall[1:] |= cells[1:] != cells[:-1]
    labels = np.where(wall, 1, 2).astype(np.uint8)
    if mito:
        labels[(cells % 3 == 0) & ~ndi.binary_dilation(wall, iterations=3)] = 3
        labels[(cells % 7 == 0) & ~wall] = 4
    return labels


@pytest.fixture(scope="module")
def stack():
    """(3, 48, 56) codes: two Voronoi slices and one with no boundary, some code 0."""
    labels = np.stack([voronoi_labels((48, 56), 8, 1, mito=True),
                       voronoi_labels((48, 56), 5, 2),
                       np.full((48, 56), 2, dtype=np.uint8)])
    labels[0, :5, :7] = 0
    labels[2, 10:20, 10:20] = 0
    return labels


ALL_MAPS = {
    "entropy": entropy_weight_map,
    "distance": lambda x: distance_weight_map(x, 4.0),
    "distance-ratio": lambda x: distance_weight_map(x, 4.0, ratio=10),
    "ratio": lambda x: ratio_weight_map(x, 5),
    "border": border_weight_map,
}


# ------------------------------------------------------------------------------ entropy
def test_entropy_wall_hand_values():
    h = label_entropy(wall_7x7(), 5)
    assert h.dtype == np.float32 and h.shape == (7, 7)
    # centre: window columns 1..5 hold 5 wall pixels of 25
    assert h[3, 3] == pytest.approx(h2(0.2, 0.8), abs=1e-6)
    # clipped windows: top row sees 3 rows (15 pixels), 3 of them wall
    assert h[0, 3] == pytest.approx(h2(0.2, 0.8), abs=1e-6)
    # columns 0 and 6 see no wall: exactly 0 in the uniform regions
    assert (h[:, 0] == 0).all() and (h[:, 6] == 0).all()
    three = label_entropy(wall_7x7(2, 3), 5)
    assert three[3, 3] == pytest.approx(h2(0.4, 0.2, 0.4), abs=1e-6)
    assert three[3, 2] == pytest.approx(h2(0.6, 0.2, 0.2), abs=1e-6)


def test_entropy_uniform_and_maximal():
    assert (label_entropy(np.full((9, 9), 3), 5) == 0).all()
    distinct = np.arange(25).reshape(5, 5)
    assert W._label_entropy(distinct, 5)[2, 2] == pytest.approx(math.log2(25), abs=1e-5)
    with pytest.raises(ValueError, match="codes must be 0-4"):
        label_entropy(distinct, 5)  # the public function takes label codes only


@pytest.mark.parametrize("size", [3, 5, 7])
@pytest.mark.parametrize("n_codes", [2, 4, 9])
def test_entropy_matches_skimage(size, n_codes):
    rng = np.random.default_rng(size * 10 + n_codes)
    labels = rng.integers(0, n_codes, (3, 37, 45)).astype(np.uint8)
    ours = W._label_entropy(labels, size)  # 9 codes: more than labels.check_codes allows
    if n_codes <= 5:
        np.testing.assert_array_equal(label_entropy(labels, size), ours)
    ref = np.stack([rank_entropy(s, np.ones((size, size), dtype=np.uint8)) for s in labels])
    r = size // 2
    np.testing.assert_allclose(ours[:, r:-r, r:-r], ref[:, r:-r, r:-r], atol=1e-5)
    # the border rule (windows clipped to the image) is skimage's too
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_entropy_many_codes_and_dtypes():
    rng = np.random.default_rng(3)
    labels = rng.permutation(256).reshape(16, 16).astype(np.uint8)
    labels = np.kron(labels, np.ones((2, 2), dtype=np.uint8))[:24, :20]
    ref = rank_entropy(labels, np.ones((5, 5), dtype=np.uint8))
    np.testing.assert_allclose(W._label_entropy(labels, 5), ref, atol=1e-5)
    # codes beyond uint8 give the same entropy (the core; the public function takes 0..4)
    big = labels.astype(np.int64) * 1000 + 70_000
    np.testing.assert_allclose(W._label_entropy(big, 5), ref, atol=1e-5)
    # whole-number floats are label codes too; bool is not (labels.check_codes)
    codes = labels % 5
    np.testing.assert_array_equal(label_entropy(codes.astype(np.float32)), label_entropy(codes))
    with pytest.raises(ValueError, match="whole numbers .* got dtype bool"):
        label_entropy(labels > 128)


def test_entropy_ignore_label():
    labels = np.full((5, 7), 2, dtype=np.uint8)
    labels[:, :3] = 0
    counted = label_entropy(labels, 5)
    ignored = label_entropy(labels, 5, ignore_label=0)
    assert counted[2, 3] == pytest.approx(h2(0.4, 0.6), abs=1e-6)  # 2 of 5 columns are 0
    assert (ignored == 0).all()  # only one labelled class in every window
    labels[2, 5] = 3
    ignored = label_entropy(labels, 5, ignore_label=0)
    assert ignored[2, 3] == pytest.approx(h2(1 / 15, 14 / 15), abs=1e-6)
    assert (W._label_entropy(np.zeros((4, 4), np.uint8), 3, 0) == 0).all()
    with pytest.raises(ValueError, match="every pixel is 0"):
        label_entropy(np.zeros((4, 4), np.uint8), 3, ignore_label=0)


# ------------------------------------------------------------------------------ entropy weights
def test_entropy_weight_formula_and_zero_code():
    labels = wall_7x7()
    w = entropy_weight_map(labels, 5, normalize=False)
    assert w[3, 0] == pytest.approx(1.0)  # interior: w_min
    assert w[3, 3] == pytest.approx(1 + 9 * h2(0.2, 0.8) / 2.0, abs=1e-5)  # H_max = log2 4
    w2 = entropy_weight_map(labels, 5, w_min=0.5, scale=3.0, n_classes=2, normalize=False)
    assert w2[3, 3] == pytest.approx(0.5 + 3 * h2(0.2, 0.8) / 1.0, abs=1e-5)
    w3 = entropy_weight_map(labels, 3, n_classes=25, normalize=False)  # H_max = log2(3 * 3)
    assert w3[3, 3] == pytest.approx(1 + 9 * h2(1 / 3, 2 / 3) / math.log2(9), abs=1e-5)
    labels[0, 0] = 0
    w = entropy_weight_map(labels, 5)
    assert w[0, 0] == 0 and (w[labels > 0] > 0).all()
    assert w[labels > 0].mean() == pytest.approx(1.0, abs=1e-5)


def test_entropy_weights_favour_walls_5_to_10x():
    labels = voronoi_labels((96, 96), 8, 0, mito=True)
    w = entropy_weight_map(labels, normalize=False)
    interior = w[label_entropy(labels) == 0]
    assert np.allclose(interior, 1.0)
    assert 5 <= w[labels == 1].mean() / interior.mean() <= 10


# ------------------------------------------------------------------------------ distance
def test_smoothed_distance_raw_and_smoothed():
    wall = np.zeros((5, 11), dtype=bool)
    wall[:, 4:7] = True
    raw = smoothed_distance_map(wall, sigma=0)
    np.testing.assert_array_equal(raw[2], [0, 0, 0, 0, 1, 2, 1, 0, 0, 0, 0])
    smooth = smoothed_distance_map(wall, sigma=2.0)
    np.testing.assert_allclose(smooth, ndi.gaussian_filter(raw, 2.0), atol=1e-6)
    assert (smooth > 0).all()  # smoothing reaches the non-boundary pixels


def test_distance_weights_decay_away_from_wall():
    labels = np.full((9, 41), 2, dtype=np.uint8)
    labels[:, 20] = 1
    w = distance_weight_map(labels, sigma=4.0, normalize=False)
    row = w[4]
    assert row.argmax() == 20 and row[20] == pytest.approx(10.0)  # w_min + scale at the peak
    # strictly decreasing over 3 sigma, then flat at w_min once the Gaussian underflows
    assert (np.diff(row[20:33]) < 0).all() and (np.diff(row[8:21]) > 0).all()
    assert (np.diff(row[20:]) <= 0).all() and (np.diff(row[:21]) >= 0).all()
    np.testing.assert_allclose(row, row[::-1], rtol=1e-6)
    assert row.min() >= 1.0 and (w > 0).all()
    np.testing.assert_array_equal(w, distance_weight_map(labels == 1, sigma=4.0, normalize=False))


def test_distance_weights_unlabelled_ratio_and_normalize(stack):
    w = distance_weight_map(stack, 4.0)
    assert (w[stack == 0] == 0).all() and (w[stack > 0] > 0).all()
    for z in range(3):
        assert w[z][stack[z] > 0].mean() == pytest.approx(1.0, abs=1e-5)
    w10 = distance_weight_map(stack[:2], 4.0, ratio=10)
    for z in range(2):
        assert class_ratio(w10[z], stack[z]) == pytest.approx(10.0, rel=1e-4)
    flat = distance_weight_map(stack[2], 4.0, normalize=False)  # no boundary: all w_min
    assert np.allclose(flat[stack[2] > 0], 1.0)
    every = distance_weight_map(np.ones((6, 6), bool), 2.0, normalize=False)
    assert np.allclose(every, 10.0)


# ------------------------------------------------------------------------------ ratio
def test_ratio_weights_exact():
    labels = np.array([[0, 1, 2], [3, 1, 4]], dtype=np.uint8)
    np.testing.assert_array_equal(ratio_weight_map(labels, 10, normalize=False),
                                  [[0, 10, 1], [1, 10, 1]])
    w = ratio_weight_map(labels, 2)
    np.testing.assert_allclose(w, np.array([[0, 2, 1], [1, 2, 1]]) / 1.4, rtol=1e-6)
    assert class_ratio(w, labels) == pytest.approx(2.0)
    np.testing.assert_array_equal(ratio_weight_map(labels == 1, 5, normalize=False),
                                  [[1, 5, 1], [1, 5, 1]])


# ------------------------------------------------------------------------------ U-Net border
def test_border_narrow_gap_beats_wide_gap():
    labels = np.full((12, 40), 2, dtype=np.uint8)
    labels[:, 10] = 1        # narrow wall between cells A and B
    labels[:, 25:33] = 1     # wide wall between cells B and C
    w = border_weight_map(labels, w0=10, sigma=5, class_balance=False, normalize=False)
    assert w[6, 10] == pytest.approx(1 + 10 * math.exp(-(1 + 1) ** 2 / 50), rel=1e-5)
    assert w[6, 28] == pytest.approx(1 + 10 * math.exp(-(4 + 5) ** 2 / 50), rel=1e-5)
    assert w[6, 10] > w[6, 28] + 5
    # inside cell A, d1 = 0 and d2 = distance to cell B
    assert w[6, 5] == pytest.approx(1 + 10 * math.exp(-(0 + 6) ** 2 / 50), rel=1e-5)


def brute_force_d1_d2(labels):
    cells, n = ndi.label(labels == 2)
    d = np.sort(np.stack([ndi.distance_transform_edt(cells != i) for i in range(1, n + 1)]), 0)
    return d[0], d[1]


@pytest.mark.parametrize("seed", range(6))
def test_border_colouring_is_exact(seed):
    labels = voronoi_labels((64, 64), 14, seed)
    w0, sigma = 10.0, 5.0
    d1, d2 = brute_force_d1_d2(labels)
    expected = 1 + w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2))
    w = border_weight_map(labels, w0, sigma, class_balance=False, normalize=False)
    np.testing.assert_allclose(w, expected, rtol=1e-5)


def test_colour_graph_separates_neighbours():
    rng = np.random.default_rng(0)
    u, v = rng.integers(0, 200, 800), rng.integers(0, 200, 800)
    keep = u != v
    colour = W._colour_graph(200, u[keep], v[keep])
    assert (colour >= 0).all() and (colour[u[keep]] != colour[v[keep]]).all()


def test_border_class_balance_and_single_cell():
    labels = voronoi_labels((40, 40), 6, 4)
    w = border_weight_map(labels, w0=0.0, normalize=False)  # only w_c
    n_b, n_rest = (labels == 1).sum(), (labels == 2).sum()
    assert w[labels == 1][0] == pytest.approx(labels.size / (2 * n_b), rel=1e-5)
    assert w[labels == 2][0] == pytest.approx(labels.size / (2 * n_rest), rel=1e-5)
    assert w.mean() == pytest.approx(1.0, rel=1e-5)
    one = np.full((8, 8), 2, np.uint8)
    one[0] = 1
    w = border_weight_map(one, class_balance=False, normalize=False)
    assert np.allclose(w, 1.0)  # one cell: no second-nearest cell, no gap term


# ------------------------------------------------------------------------------ all maps
@pytest.mark.parametrize("name", sorted(ALL_MAPS))
def test_maps_are_slicewise_float32_and_zero_on_unlabelled(name, stack):
    make = ALL_MAPS[name]
    volume = make(stack)
    assert volume.dtype == np.float32 and volume.shape == stack.shape
    np.testing.assert_allclose(volume, np.stack([make(s) for s in stack]), rtol=1e-6, atol=1e-7)
    assert (volume[stack == 0] == 0).all() and (volume[stack > 0] > 0).all()
    assert np.isfinite(volume).all()
    for z in range(stack.shape[0]):
        assert volume[z][stack[z] > 0].mean() == pytest.approx(1.0, abs=1e-4)


def test_label_entropy_is_slicewise(stack):
    np.testing.assert_array_equal(label_entropy(stack), np.stack([label_entropy(s) for s in stack]))


def test_class_ratio_edge_cases():
    assert math.isnan(class_ratio(np.ones((2, 2)), np.full((2, 2), 2)))
    with pytest.raises(ValueError, match="same shape"):
        class_ratio(np.ones((2, 3)), np.ones((2, 2), np.uint8))


def test_weight_map_dispatch():
    labels = np.array([[0, 1, 2, 2], [2, 1, 2, 2]], dtype=np.uint8)
    assert parse_weight_scheme("ratio:2.5") == ("ratio", 2.5)
    assert parse_weight_scheme("border") == ("border", None)
    np.testing.assert_array_equal(weight_map(labels, "none"), labels > 0)
    np.testing.assert_array_equal(weight_map(labels, "ratio:3"), ratio_weight_map(labels, 3))
    np.testing.assert_array_equal(weight_map(labels, "entropy"), entropy_weight_map(labels))
    for bad in ["ratio", "ratio:0", "ratio:-2", "ratio:x", "entropy:2", "gauss", "", None]:
        with pytest.raises(ValueError, match="weights"):
            parse_weight_scheme(bad)


# ------------------------------------------------------------------------------ bad input
GOOD = np.array([[1, 2, 2], [2, 1, 2], [2, 2, 1]], dtype=np.uint8)


@pytest.mark.parametrize("fn", [label_entropy, entropy_weight_map, smoothed_distance_map,
                                distance_weight_map, lambda x: ratio_weight_map(x, 2),
                                border_weight_map])
@pytest.mark.parametrize("bad, error, match", [
    (np.ones(5, np.uint8), ValueError, "2D .* or 3D .* got 1D"),
    (np.ones((2, 2, 2, 2), np.uint8), ValueError, "got 4D"),
    (np.zeros((0, 4), np.uint8), ValueError, "empty"),
    (np.array([[1.0, 2.5], [2.0, 1.0]]), ValueError, "non-integer"),
    (np.array([[1.0, np.nan], [2.0, 1.0]]), ValueError, "NaN"),
    (np.array([[1, -1], [2, 1]]), ValueError, "codes must be 0-4.*found -1"),
    (np.array([["a", "b"], ["c", "d"]]), ValueError, "integer"),
])
def test_bad_labels(fn, bad, error, match):
    with pytest.raises(error, match=match):
        fn(bad)


@pytest.mark.parametrize("call, error, match", [
    (lambda: label_entropy(GOOD, -5), ValueError, "odd integer >= 3"),
    (lambda: label_entropy(GOOD, 4), ValueError, "odd integer >= 3.*got 4"),
    (lambda: label_entropy(GOOD, 1), ValueError, "odd integer >= 3"),
    (lambda: label_entropy(GOOD, 5.0), TypeError, "size"),
    (lambda: label_entropy(GOOD, ignore_label=0.5), TypeError, "ignore_label"),
    (lambda: entropy_weight_map(GOOD, w_min=0), ValueError, "w_min must be .* > 0"),
    (lambda: entropy_weight_map(GOOD, scale=-1), ValueError, "scale must be .* >= 0"),
    (lambda: entropy_weight_map(GOOD, n_classes=1), ValueError, "n_classes"),
    (lambda: smoothed_distance_map(GOOD, sigma=-1), ValueError, "sigma"),
    (lambda: distance_weight_map(GOOD, sigma=0), ValueError, "sigma must be .* > 0.*0.0"),
    (lambda: distance_weight_map(GOOD, sigma=float("nan")), ValueError, "sigma"),
    (lambda: distance_weight_map(GOOD, ratio=0), ValueError, "ratio must be .* > 0"),
    (lambda: distance_weight_map(GOOD, w_min=-1), ValueError, "w_min"),
    (lambda: ratio_weight_map(GOOD, 0), ValueError, "ratio must be .* > 0"),
    (lambda: ratio_weight_map(GOOD, -3), ValueError, "ratio"),
    (lambda: ratio_weight_map(GOOD, "10"), ValueError, "ratio must be a real number"),
    (lambda: border_weight_map(GOOD, sigma=0), ValueError, "sigma"),
    (lambda: border_weight_map(GOOD, w0=-1), ValueError, "w0"),
])
def test_bad_parameters(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("scheme, make", [
    ("entropy", entropy_weight_map),
    ("distance", distance_weight_map),
    ("distance:10", lambda x: distance_weight_map(x, ratio=10)),
    ("ratio:5", lambda x: ratio_weight_map(x, 5)),
    ("border", border_weight_map),
])
def test_weight_map_equals_the_public_functions(scheme, make, stack):
    """weight_map calls the private cores directly: same defaults, same maps."""
    np.testing.assert_array_equal(weight_map(stack, scheme), make(stack))


def test_weight_map_refuses_bool_masks():
    """weight_map takes label codes (labels.check_codes); the mask functions take bool too."""
    mask = GOOD == 1
    with pytest.raises(ValueError, match="labels: .*got dtype bool"):
        weight_map(mask, "ratio:5")
    assert ratio_weight_map(mask, 5).shape == mask.shape


# ------------------------------------------------------------------------ distance readings
def test_distance_readings_side_by_side():
    labels = np.full((2, 20, 24), 2, dtype=np.uint8)
    labels[:, :, 8] = 1
    labels[:, 10, :] = 1
    labels[1, :2] = 0                                        # some unlabelled pixels
    maps = distance_readings(labels, sigma=3)
    assert tuple(maps) == DISTANCE_READINGS
    for name, w in maps.items():
        assert w.shape == labels.shape and w.dtype == np.float32, name
        assert (w[labels == 0] == 0).all() and (w[labels > 0] > 0).all(), name
        np.testing.assert_allclose(w.reshape(2, -1).sum(1) / (labels > 0).reshape(2, -1).sum(1), 1, rtol=1e-5)
    np.testing.assert_array_equal(maps["distance"], distance_weight_map(labels, 3))
    np.testing.assert_array_equal(maps["distance:10"], distance_weight_map(labels, 3, ratio=10))
    np.testing.assert_array_equal(maps["border"], border_weight_map(labels))
    ratios = {k: class_ratio(v, labels) for k, v in maps.items()}
    assert ratios["distance:10"] == pytest.approx(10, rel=1e-2)     # exactly 10 in each slice
    assert ratios["distance to wall"] < 1 < ratios["wall proximity"]          # opposite directions
    # a 3D result is the stack of the 2D results
    for name, w in distance_readings(labels[1], sigma=3).items():
        np.testing.assert_allclose(w, maps[name][1], rtol=1e-6)


def test_distance_readings_without_walls_and_bad_sigma():
    labels = np.full((6, 6), 2, dtype=np.uint8)
    for w in distance_readings(labels, sigma=2).values():
        np.testing.assert_allclose(w, 1)
    with pytest.raises(ValueError, match="sigma"):
        distance_readings(labels, sigma=0)
