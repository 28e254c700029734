"""Tests for emseg_tutorial.models: shapes, rebuilding from init_kwargs, head swap, checks."""

import json

import pytest
import torch

from emseg_tutorial.models import UNet2d, build_model

SMALL = {"depth": 3, "base_width": 4}


def _net(seed=0, **kwargs):
    torch.manual_seed(seed)
    return UNet2d(**{**SMALL, **kwargs})


@pytest.mark.parametrize("size", [(37, 53), (32, 32), (500, 500), (1, 1), (5, 130), (64, 7)])
def test_output_keeps_input_size(size):
    net = _net(out_channels=3).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 1, *size))
    assert out.shape == (2, 3, *size)


@pytest.mark.parametrize("size", [(37, 53), (500, 500), (48, 48)])
def test_depth4_output_keeps_input_size(size):
    net = _net(depth=4).eval()
    with torch.no_grad():
        out = net(torch.rand(1, 1, *size))
    assert out.shape == (1, 4, *size)


@pytest.mark.parametrize("norm", ["batch", "instance", "group", None])
@pytest.mark.parametrize("upsample", ["transpose", "bilinear"])
def test_norms_and_upsamplers_train_step(norm, upsample):
    net = _net(norm=norm, upsample=upsample, dropout=0.1, base_width=6)
    out = net(torch.rand(2, 1, 37, 53))
    out.mean().backward()
    assert out.shape == (2, 4, 37, 53)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_group_norm_groups_divide_width():
    for width in (1, 3, 4, 6, 12, 32):
        net = UNet2d(depth=1, base_width=width, norm="group")
        groups = [m for m in net.modules() if isinstance(m, torch.nn.GroupNorm)]
        assert groups and all(m.num_channels % m.num_groups == 0 for m in groups)
        assert all(m.num_groups <= 8 for m in groups)


def test_padding_does_not_leak_into_output():
    """The cropped logits of an image equal those of the same image reflect-padded by us."""
    net = _net().eval()
    x = torch.rand(1, 1, 37, 53)
    padded = torch.nn.functional.pad(x, (0, 3, 0, 3), mode="reflect")  # 40 x 56: multiples of 8
    with torch.no_grad():
        assert torch.allclose(net(x), net(padded)[..., :37, :53], atol=1e-6)


def test_init_kwargs_are_json_and_rebuild_the_model():
    net = _net(norm="group", dropout=0.25, out_channels=2)
    kwargs = json.loads(json.dumps(net.init_kwargs))
    assert kwargs == {"in_channels": 1, "out_channels": 2, "depth": 3, "base_width": 4,
                      "norm": "group", "dropout": 0.25, "upsample": "transpose"}
    rebuilt = build_model(kwargs)
    rebuilt.load_state_dict(net.state_dict(), strict=True)
    x = torch.rand(1, 1, 37, 53)
    net.eval(), rebuilt.eval()
    with torch.no_grad():
        assert torch.equal(net(x), rebuilt(x))


def test_state_dict_roundtrip_with_weights_only(tmp_path):
    net = _net()
    # one train-mode forward so batch-norm running statistics are not the defaults
    net(torch.rand(4, 1, 32, 32))
    net.eval()
    path = tmp_path / "model.pt"
    torch.save({"model": net.init_kwargs, "state": net.state_dict()}, path)
    ckpt = torch.load(path, weights_only=True)
    rebuilt = build_model(ckpt["model"])
    rebuilt.load_state_dict(ckpt["state"], strict=True)
    rebuilt.eval()
    x = torch.rand(2, 1, 45, 60)
    with torch.no_grad():
        assert torch.equal(net(x), rebuilt(x))


def test_same_seed_same_model_and_output():
    a, b, c = _net(seed=3), _net(seed=3), _net(seed=4)
    x = torch.rand(2, 1, 33, 33)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert torch.equal(a(x), b(x))
    assert not torch.equal(a(x), c(x))


def test_replace_head_keeps_everything_but_the_head():
    net = _net(out_channels=4)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    old_head = net.head.weight.clone()
    net.replace_head(2)
    after = net.state_dict()
    assert net.init_kwargs["out_channels"] == 2
    assert net.head.out_channels == 2 and net.head.weight.shape == (2, 4, 1, 1)
    assert old_head.shape == (4, 4, 1, 1)
    body = [k for k in before if not k.startswith("head.")]
    assert body and set(body) == {k for k in after if not k.startswith("head.")}
    assert all(torch.equal(before[k], after[k]) for k in body)
    assert net(torch.rand(1, 1, 20, 20)).shape == (1, 2, 20, 20)
    # the new shape survives a rebuild from init_kwargs
    build_model(net.init_kwargs).load_state_dict(net.state_dict(), strict=True)


def test_replace_head_is_a_fresh_init():
    net = _net(out_channels=2)
    old = net.head.weight.clone()
    net.replace_head(2)
    assert not torch.equal(old, net.head.weight)


@pytest.mark.parametrize("kwargs", [
    {"depth": 0}, {"depth": -1}, {"base_width": 0}, {"out_channels": 0}, {"in_channels": 0},
    {"norm": "layer"}, {"norm": "Batch"}, {"dropout": 1.0}, {"dropout": -0.1},
    {"upsample": "nearest"}, {"depth": 2.0}, {"base_width": "32"},
])
def test_invalid_kwargs_raise_value_error(kwargs):
    with pytest.raises(ValueError):
        UNet2d(**kwargs)


def test_build_model_rejects_unknown_keys_and_non_dicts():
    with pytest.raises(ValueError, match="unknown"):
        build_model({"depth": 2, "channels": 3})
    with pytest.raises(ValueError):
        build_model([("depth", 2)])


def test_replace_head_rejects_bad_out_channels():
    net = _net()
    with pytest.raises(ValueError):
        net.replace_head(0)
    assert net.init_kwargs["out_channels"] == 4


def test_wrong_input_shape_is_a_clear_error():
    net = _net(in_channels=1)
    with pytest.raises(ValueError, match="expected input"):
        net(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="expected input"):
        net(torch.rand(32, 32))


# --------------------------------------------------------------------------- sizes bounded before a build (issue 24)


@pytest.mark.parametrize("arch, kwargs, match", [
    ("unet2d", {"depth": 40}, r"depth 40 \(unet2d takes 1 to 8\)"),
    ("unet2d", {"depth": 0}, r"depth 0 \(unet2d takes 1 to 8\)"),
    ("unet2d", {"base_width": 10**6}, r"base_width 1000000 \(unet2d takes 1 to 512\)"),
    ("unet2d", {"out_channels": 1000}, r"out_channels 1000"),
    ("unet2d", {"depth": "4"}, r"depth must be an integer from 1 to 8, got '4'"),
    ("unet2d", {"depth": 8, "base_width": 512}, r"describe \d+ weights .*more than the 500000000"),
    ("patch_discriminator", {"width": 10**6}, r"width 1000000 \(patch_discriminator takes 1 to 512\)"),
    ("unet2d", {"depth": 2, "colour": 1}, r"do not build a unet2d \(unknown UNet2d arguments"),
])
def test_network_sizes_are_bounded_before_anything_is_allocated(arch, kwargs, match):
    from emseg_tutorial._validate import InputError
    from emseg_tutorial.models import build
    from emseg_tutorial.models.build import check_kwargs

    with pytest.raises(InputError, match=rf"^stored.pt: .*{match}"):
        check_kwargs(arch, kwargs, "stored.pt")
    with pytest.raises(InputError, match=match):
        build(arch, kwargs)


def test_a_small_checkpoint_with_a_huge_network_is_refused_at_once(tmp_path):
    """A 1-2 kB file saying depth 40 used to allocate until the kernel killed the process."""
    from emseg_tutorial._validate import InputError
    from emseg_tutorial.store import load_checkpoint

    path = tmp_path / "deep.pt"
    torch.save({"arch": "unet2d", "model": {"out_channels": 2, "depth": 40, "base_width": 32}, "state": {},
                "config": {}, "history": {}}, path)
    assert path.stat().st_size < 4000
    with pytest.raises(InputError, match=r"deep\.pt: its network settings are out of range: depth 40"):
        load_checkpoint(path)
    # within the ranges, but its weights are not those the settings describe: refused before the build
    torch.save({"arch": "unet2d", "model": {"out_channels": 2, "depth": 5, "base_width": 64}, "state": {},
                "config": {}, "history": {}}, path)
    with pytest.raises(ValueError, match=r"deep\.pt: its weights do not fit the network its settings describe"):
        load_checkpoint(path)


def test_the_meta_network_has_the_real_shapes():
    from emseg_tutorial.models.build import meta_network

    net = _net(out_channels=2)
    meta = meta_network("unet2d", net.init_kwargs)
    assert {k: tuple(v.shape) for k, v in meta.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert all(p.device.type == "meta" for p in meta.parameters())


def test_the_size_check_draws_no_random_numbers():
    """build() checks on the meta device first; the weights and the stream after are those of a plain build."""
    from emseg_tutorial.models import PatchDiscriminator, build

    for cls, kwargs in ((UNet2d, {"out_channels": 2, "depth": 3, "base_width": 8}),
                        (PatchDiscriminator, {"in_channels": 2, "width": 4, "depth": 2})):
        torch.manual_seed(0)
        plain, after_plain = cls(**kwargs), torch.rand(3)
        torch.manual_seed(0)
        built, after_built = build(cls.arch, kwargs), torch.rand(3)
        assert all(torch.equal(v, built.state_dict()[k]) for k, v in plain.state_dict().items())
        assert torch.equal(after_plain, after_built)
