"""The synthetic twins: determinism, codes, class fractions, anisotropy, drift, speed path."""

import dataclasses

import numpy as np
import pytest

from emseg_tutorial.data.stats import neighbour_boundary_dice, slice_means
from emseg_tutorial.data.synthetic import blocks
from emseg_tutorial.data.synthetic import FIBSEM, SNEMI, iter_blocks, make_volume, parameter_table
from emseg_tutorial.labels import class_fractions


@pytest.mark.parametrize("domain", ["fibsem", "snemi"])
def test_same_seed_same_volume(domain):
    a = make_volume(domain, (5, 64, 80), seed=7)
    b = make_volume(domain, (5, 64, 80), seed=7)
    c = make_volume(domain, (5, 64, 80), seed=8)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.image, c.image)
    assert a.image.shape == (5, 64, 80) and a.image.dtype == np.uint8 and a.labels.dtype == np.uint8


@pytest.mark.parametrize("domain", ["fibsem", "snemi"])
def test_blocks_concatenate_to_the_volume(domain):
    whole = make_volume(domain, (7, 48, 48), seed=2)
    parts = list(iter_blocks(domain, (7, 48, 48), seed=2, block=3))
    assert [z0 for z0, *_ in parts] == [0, 3, 6]
    assert np.array_equal(np.concatenate([p[1] for p in parts]), whole.image)
    assert np.array_equal(np.concatenate([p[2] for p in parts]), whole.labels)


@pytest.mark.parametrize("case", ["fibsem", "snemi", "snemi z-blurred"])
def test_threads_render_the_same_volume(case, monkeypatch):
    # 40 slices = 3 blocks of 16: with 2 and 3 threads a run starts mid-volume and the runs finish
    # in any order. Neither twin blurs in z; "z-blurred" (the target with a z blur) checks that
    # the halo a block shares with the one before is rendered again, the same, after a gap.
    domain = case.split()[0]
    if case.endswith("z-blurred"):
        blurred = dataclasses.replace(SNEMI, psf_sigma=(1.5, 1.2, 1.2))
        plain = make_volume(domain, (40, 40, 48), seed=5, workers=1)
        monkeypatch.setattr(blocks, "domain_params", lambda name: blurred)
    one = make_volume(domain, (40, 40, 48), seed=5, with_cells=True, workers=1)
    if case.endswith("z-blurred"):  # the patch reached the renderer
        assert not np.array_equal(one.image, plain.image)
    for workers in (2, 3, 8):
        many = make_volume(domain, (40, 40, 48), seed=5, with_cells=True, workers=workers)
        assert np.array_equal(many.image, one.image) and np.array_equal(many.labels, one.labels)
        assert np.array_equal(many.extra["cells"], one.extra["cells"])


def test_bad_workers():
    with pytest.raises(ValueError, match="workers"):
        make_volume("fibsem", (2, 32, 32), workers=0)


def test_codes(fibsem_small, snemi_small):
    assert set(np.unique(fibsem_small.labels)) == {1, 2, 3, 4}
    assert set(np.unique(snemi_small.labels)) == {1, 2, 3}  # no glia in the target


def test_class_fractions_in_documented_ranges(fibsem_small, snemi_small):
    src = class_fractions(fibsem_small.labels)
    tgt = class_fractions(snemi_small.labels)
    # The paper: boundary is about 10 % of the source pixels.
    assert 0.08 <= src["boundary"] <= 0.16
    assert 0.02 <= src["mitochondria"] <= 0.10
    assert 0.02 <= src["glia"] <= 0.40  # few, large cells on 128 x 128: wide spread
    assert 0.50 <= src["cytoplasm"] <= 0.85
    assert 0.07 <= tgt["boundary"] <= 0.18
    assert tgt["glia"] == 0.0


def test_true_boundary_fractions_agree():
    """Walls labelled at one width in nm: the twins' true boundary fractions are close (the rule
    of :mod:`emseg_tutorial.adapt.diagnostics` compares within a factor 1.5), same tissue area."""
    src = np.mean([class_fractions(make_volume("fibsem", (6, 192, 192), seed=s).labels)["boundary"]
                   for s in (0, 1)])
    tgt = np.mean([class_fractions(make_volume("snemi", (4, 320, 320), seed=s).labels)["boundary"]
                   for s in (0, 1)])
    assert 0.8 <= tgt / src <= 1.25  # with 4-pixel target walls (version 3) about 1.15 to 1.36


def test_voxel_sizes(fibsem_small, snemi_small):
    assert fibsem_small.voxel_size == (10.0, 10.0, 10.0) and fibsem_small.anisotropy == 1.0
    assert snemi_small.voxel_size == (30.0, 6.0, 6.0) and snemi_small.anisotropy == 5.0


def test_target_is_anisotropic(fibsem_small, snemi_small):
    # Walls move far more between neighbouring target sections than between source slices.
    src, tgt = neighbour_boundary_dice(fibsem_small.labels), neighbour_boundary_dice(snemi_small.labels)
    assert src > 0.5
    assert tgt < 0.7 * src


def test_target_drifts_source_is_stable():
    src = make_volume("fibsem", (24, 96, 96), seed=3)
    tgt = make_volume("snemi", (24, 96, 96), seed=3)
    assert slice_means(src.image).std() < 2.0
    assert slice_means(tgt.image).std() > 2 * slice_means(src.image).std()


def test_neurites_have_the_same_physical_size_in_both_twins():
    """Same tissue lengths in nm: target neurites (6 nm pixels) span about 10 / 6 times the
    pixels of source cells (10 nm pixels). Equivalent diameter = sqrt(4 area / pi) per cell, on
    slices that cover the same 1.92 um square."""

    def diameter(v):
        c = v.extra["cells"]
        return np.mean([np.sqrt(4 * c[z].size / len(np.unique(c[z])) / np.pi) for z in range(len(c))])

    ratios = []
    for seed in (0, 1):
        src = make_volume("fibsem", (4, 192, 192), seed=seed, with_cells=True)
        tgt = make_volume("snemi", (4, 320, 320), seed=seed, with_cells=True)
        ratios.append(diameter(tgt) / diameter(src))
    assert 1.3 <= np.mean(ratios) <= 2.2  # pixel-size ratio 10 / 6 = 1.67


def test_membranes_are_dark(fibsem_small, snemi_small):
    for v in (fibsem_small, snemi_small):
        assert v.image[v.labels == 1].mean() < v.image[v.labels == 2].mean() - 20


def test_misalignment_shifts_whole_slices():
    v = make_volume("snemi", (40, 64, 64), seed=0)
    assert SNEMI.misalign_prob > 0 and FIBSEM.misalign_prob == 0
    assert v.labels.shape == v.image.shape


@pytest.mark.parametrize("shape", [(0, 64, 64), (4, 8, 64), (4, 64), "abc"])
def test_bad_shapes(shape):
    with pytest.raises(ValueError, match="shape|slices"):
        make_volume("fibsem", shape)


def test_bad_domain():
    with pytest.raises(ValueError, match="unknown domain"):
        make_volume("isbi", (2, 32, 32))


def test_parameter_table_lists_both_domains():
    table = parameter_table()
    assert list(table.columns) == ["fibsem", "snemi"]
    assert table.loc["z_factor", "snemi"] == "5"
