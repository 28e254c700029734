"""The fast twin renderer: its parts against the reference operations, and the twin cache."""

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries

from emseg_tutorial.data import sources
from emseg_tutorial.data import synthetic as S
from emseg_tutorial.data.synthetic import geometry, numerics, renderer
from emseg_tutorial.data.sources import cached_twin, load_domain, twin_cache_path
from emseg_tutorial.presets import get_preset

RNG = np.random.default_rng(0)


def test_thick_boundaries_match_find_boundaries():
    ids = ndi.zoom(RNG.integers(0, 6, (12, 15)), 4, order=0)
    assert np.array_equal(numerics._thick_boundaries(ids), find_boundaries(ids, mode="thick"))


def test_walls_of_every_width():
    ids = ndi.zoom(RNG.integers(0, 6, (12, 15)), 4, order=0)
    thick = find_boundaries(ids, mode="thick")
    one = np.zeros(ids.shape, bool)  # the pixel below / right of a change of id
    one[1:] |= ids[1:] != ids[:-1]
    one[:, 1:] |= ids[:, 1:] != ids[:, :-1]
    cross = ndi.generate_binary_structure(2, 1)
    for width, want in [(1, one), (2, thick), (3, ndi.binary_dilation(one, cross)),
                        (4, ndi.binary_dilation(thick, cross)), (5, ndi.binary_dilation(one, cross, 2))]:
        assert np.array_equal(numerics._walls(ids, width), want), width
        across = numerics._walls(np.repeat([[1] * 8 + [2] * 8], 3, 0), width)
        assert (across.sum(1) == width).all()  # a straight wall is ``width`` pixels across
    with pytest.raises(ValueError, match="at least 1"):
        numerics._walls(ids, 0)


def test_wall_widths_are_one_physical_width():
    assert S.FIBSEM.wall_nm == S.SNEMI.wall_nm
    assert (S.FIBSEM.wall_px, S.SNEMI.wall_px) == (2, 3)  # 20 nm at 10 nm and at 6 nm


@pytest.mark.parametrize("sigma", [0.6, 1.2, 2.0])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_blur_matches_scipy_nearest(sigma, axis):
    a = RNG.random((5, 9, 23)).astype(np.float32)
    taps = numerics._gauss_taps(sigma)
    want = ndi.gaussian_filter1d(a, sigma, axis=axis, mode="nearest")
    np.testing.assert_allclose(numerics._conv_axis(a, taps, axis), want, atol=1e-6)
    out, tmp = np.empty_like(a), np.empty_like(a)
    np.testing.assert_allclose(numerics._conv_axis(a, taps, axis, out=out, tmp=tmp), want, atol=1e-6)


def test_disc_pixels_are_the_pixels_of_the_discs():
    cy, cx, r = np.array([5.3, 0.0, 30.0]), np.array([7.7, 3.0, 10.0]), np.array([3.2, 2.5, 4.0])
    which, pix = numerics._disc_pixels(cy, cx, r, 20, 25)
    yy, xx = np.mgrid[0:20, 0:25]
    for i in range(3):
        want = np.flatnonzero(((yy - cy[i]) ** 2 + (xx - cx[i]) ** 2 <= r[i] ** 2).ravel())
        assert np.array_equal(np.sort(pix[which == i]), want)


@pytest.mark.parametrize("domain", ["fibsem", "snemi"])
def test_cells_are_the_nearest_seeds_in_displaced_coordinates(domain):
    """Exact on the node grid; elsewhere only pixels at or beside a wall may differ (there the
    displacement is interpolated bilinearly inside 4 x 4 blocks)."""
    p, shape = S.domain_params(domain), (3, 96, 112)
    geo = geometry._make_geometry(p, shape, np.random.default_rng([4, S.DOMAINS.index(domain), *shape]))
    rend = renderer._Renderer(p, geo, shape, 4)
    s = 7
    seeds = geo.seeds(s)
    cell = rend.cells(s, seeds)
    yy, xx = np.mgrid[0:shape[1], 0:shape[2]].astype(float)
    d = numerics._wave_points(geo.warp_k, geo.warp_phase, geo.warp_amp, s, yy.ravel(), xx.ravel())
    qy, qx = yy.ravel() + d[0], xx.ravel() + d[1]
    small = np.flatnonzero(geo.radius == 0)
    dist = (qy[:, None] - seeds[small, 0]) ** 2 + (qx[:, None] - seeds[small, 1]) ** 2
    want = small[dist.argmin(1)]
    for i in np.flatnonzero(geo.radius > 0):  # dendrites on top, later ones last
        inside = (qy - seeds[i, 0]) ** 2 + (qx - seeds[i, 1]) ** 2 <= geo.radius[i] ** 2
        want[inside] = i
    want = want.reshape(shape[1:])
    g = renderer._G
    assert np.array_equal(cell[::g, ::g], want[::g, ::g])
    differ = cell != want
    assert differ.mean() < 0.01
    assert not (differ & ~numerics._dilate_cross(numerics._thick_boundaries(want))).any()


@pytest.mark.parametrize("domain", ["fibsem", "snemi"])
@pytest.mark.parametrize("block", [1, 2, 5])
def test_any_block_size_gives_the_volume(domain, block):
    whole = S.make_volume(domain, (5, 40, 36), seed=3, with_cells=True)
    parts = list(S.iter_blocks(domain, (5, 40, 36), seed=3, block=block))
    assert np.array_equal(np.concatenate([p[1] for p in parts]), whole.image)
    assert np.array_equal(np.concatenate([p[2] for p in parts]), whole.labels)
    assert np.array_equal(np.concatenate([p[3] for p in parts]), whole.extra["cells"])


def test_version_is_named():
    assert S.TWIN_VERSION == 5
    versions = S.__doc__.split("Versions\n--------\n")[1].split("\n\n")[0]
    assert f"version {S.TWIN_VERSION} (now)" in versions  # the note names the current version
    assert len(versions.splitlines()) <= 12  # a note, not the history (that is in git)


# --------------------------------------------------------------------------- cache


class _Settings:
    """What load_domain reads of a session (synthetic data, a runs folder)."""

    def __init__(self, runs):
        self.preset, self.data, self.runs = get_preset("ci"), "synthetic", runs
        self.cache = self.fibsem_image = self.fibsem_labels = None


@pytest.fixture
def count_makes(monkeypatch):
    calls = []
    real = sources.make_volume

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(sources, "make_volume", counting)
    return calls


def test_cache_path_names_domain_shape_seed_version(tmp_path):
    path = twin_cache_path(tmp_path, "fibsem", (16, 128, 96), 3)
    assert path == tmp_path / "twins" / f"fibsem-16x128x96-seed3-v{S.TWIN_VERSION}.npz"
    others = {twin_cache_path(tmp_path, "fibsem", (16, 128, 96), 4),
              twin_cache_path(tmp_path, "fibsem", (16, 128, 128), 3),
              twin_cache_path(tmp_path, "snemi", (16, 128, 96), 3),
              twin_cache_path(tmp_path, "fibsem", (16, 128, 96), 3, version=S.TWIN_VERSION + 1)}
    assert path not in others and len(others) == 4


def test_second_load_reads_the_cache(tmp_path, count_makes):
    settings = _Settings(tmp_path)
    first = load_domain("snemi", settings, "test")
    path = twin_cache_path(tmp_path, "snemi", settings.preset.target_shape, settings.preset.seed + 1)
    assert path.exists() and len(count_makes) == 1
    second = load_domain("snemi", settings, "test")
    assert len(count_makes) == 1  # read, not made again
    assert np.array_equal(first.image, second.image) and np.array_equal(first.labels, second.labels)
    assert second.voxel_size == first.voxel_size and second.name == first.name
    direct = S.make_volume("snemi", settings.preset.target_shape, seed=settings.preset.seed + 1)
    assert np.array_equal(second.image, direct.image)
    load_domain("snemi", settings, "train")  # another seed: another file
    assert len(count_makes) == 2 and len(list((tmp_path / "twins").glob("*.npz"))) == 2


def test_a_bare_preset_writes_nothing(tmp_path, monkeypatch, count_makes):
    monkeypatch.chdir(tmp_path)
    load_domain("fibsem", get_preset("ci"), "train")
    assert len(count_makes) == 1 and not any(tmp_path.iterdir())


@pytest.mark.parametrize("damage", [b"", b"not a zip file", None])
def test_a_corrupt_cache_file_is_replaced(tmp_path, count_makes, damage):
    shape = (3, 32, 40)
    good = cached_twin("fibsem", shape, 5, tmp_path)
    path = twin_cache_path(tmp_path, "fibsem", shape, 5)
    if damage is None:  # readable, but not this volume's shape
        np.savez(path, image=good.image[:2], labels=good.labels[:2], version=S.TWIN_VERSION)
    else:
        path.write_bytes(damage)
    again = cached_twin("fibsem", shape, 5, tmp_path)
    assert len(count_makes) == 2
    assert np.array_equal(again.image, good.image) and np.array_equal(again.labels, good.labels)
    assert np.array_equal(np.load(path)["image"], good.image)  # the file was rewritten
    cached_twin("fibsem", shape, 5, tmp_path)
    assert len(count_makes) == 2
    assert not list(path.parent.glob("*.part"))


def test_a_cache_of_another_version_is_not_used(tmp_path, count_makes):
    shape = (2, 32, 32)
    path = twin_cache_path(tmp_path, "snemi", shape, 0)
    path.parent.mkdir(parents=True)
    zeros = np.zeros(shape, np.uint8)
    np.savez(path, image=zeros, labels=zeros + 1, version=S.TWIN_VERSION - 1)
    vol = cached_twin("snemi", shape, 0, tmp_path)
    assert len(count_makes) == 1 and vol.image.any()


# --------------------------------------------------------------------------- keyed by the twins' source


def test_a_reused_twin_says_so_and_edited_twin_code_redraws_it(tmp_path, count_makes, capsys, edit_source):
    settings = _Settings(tmp_path)
    load_domain("snemi", settings, "test")
    assert len(count_makes) == 1 and "reused" not in capsys.readouterr().out
    load_domain("snemi", settings, "test")
    path = twin_cache_path(tmp_path, "snemi", settings.preset.target_shape, settings.preset.seed + 1)
    z, y, x = settings.preset.target_shape
    assert capsys.readouterr().out == f"reused twin snemi {z}x{y}x{x} (seed {settings.preset.seed + 1}) from {path}\n"
    assert len(count_makes) == 1

    edit_source("emseg_tutorial.losses")
    load_domain("snemi", settings, "test")
    assert len(count_makes) == 1                      # the twins' own code is unchanged: reused
    capsys.readouterr()
    edit_source(sources.TWIN_MODULES[0] + ".renderer")   # a module of the twins edited
    load_domain("snemi", settings, "test")
    assert len(count_makes) == 2 and capsys.readouterr().out == ""   # drawn again
    assert str(np.load(path)["source"]) == sources.twin_source()   # the file now holds the new hash
    load_domain("snemi", settings, "test")
    assert len(count_makes) == 2
    edit_source("emseg_tutorial.labels")              # the label codes the twins write
    load_domain("snemi", settings, "test")
    assert len(count_makes) == 3


def test_a_reuse_is_said_even_with_progress_bars_off(tmp_path, count_makes, capsys):
    """EMSEG_PROGRESS=0 (make book, make test) switches bars off, not the line naming a reused file."""
    settings = _Settings(tmp_path)
    settings.progress = False
    load_domain("fibsem", settings, "test")
    assert capsys.readouterr().out == ""
    load_domain("fibsem", settings, "test")
    assert len(count_makes) == 1 and capsys.readouterr().out.startswith("reused twin fibsem ")
