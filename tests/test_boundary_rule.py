"""The boundary-fraction warning compares like with like: a network's predicted walls on the
target against the same, unadapted, network's predicted walls on the source (issue 25, item 5)."""

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from emseg_tutorial.adapt import adapt
from emseg_tutorial.adapt.diagnostics import (PRIOR_FACTOR, epoch_report, label_free_choice, reference_of,
                                              source_boundary_prior, source_reference, warnings_of)
from emseg_tutorial.data.synthetic import make_volume
from emseg_tutorial.labels import BOUNDARY
from emseg_tutorial.predict import predict_labels

from helpers import tiny_unet

CPU = torch.device("cpu")


def dark_walls(threshold: float = -0.9) -> torch.nn.Module:
    """An unadapted "network" that calls boundary every pixel darker than ``threshold`` (in
    standardised units): it draws walls far thicker than the labels, on any volume alike."""
    net = torch.nn.Conv2d(1, 2, 1)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([-8.0, 8.0]).view(2, 1, 1, 1))
        net.bias.copy_(torch.tensor([8.0 * threshold, -8.0 * threshold]))
    return net


@pytest.fixture(scope="module")
def source():
    return make_volume("fibsem", (4, 96, 96), seed=2)


def test_the_reference_is_the_unadapted_networks_source_fraction(source):
    net = dark_walls()
    ref = source_reference(net, source_boundary_prior(source.labels), CPU, source, stride=2)
    codes = predict_labels(net, source.image[::2], normalizer=source.normalizer, device=CPU)
    assert ref == {"source_boundary_fraction": pytest.approx(float((codes == BOUNDARY).mean())),
                   "source_label_fraction": pytest.approx(source_boundary_prior(source.labels))}
    label_only = source_reference(net, source_boundary_prior(source.labels), CPU)  # no source validation volume: the labels
    assert label_only["source_boundary_fraction"] == label_only["source_label_fraction"]


def test_an_unadapted_model_gives_no_warning_when_the_true_fractions_agree(source):
    # the same tissue as target: the true fractions agree exactly, the network's walls do not match
    # the labels' (it over-draws them by more than the band), so a rule against the labels would fire
    net = dark_walls()
    report = epoch_report(net, source.image, source_reference(net, source_boundary_prior(source.labels), CPU, source), CPU)
    assert report["target_boundary_fraction"] > PRIOR_FACTOR * report["source_label_fraction"]
    assert report["target_boundary_fraction"] == pytest.approx(report["source_boundary_fraction"], rel=1e-6)
    assert "boundary fraction" not in warnings_of(report, report)
    against_labels = {**report, "source_boundary_fraction": report["source_label_fraction"]}
    assert "boundary fraction" in warnings_of(against_labels, against_labels)  # the rule before
    assert label_free_choice([{**report, "epoch": 0}, {**report, "epoch": 1}]) == 1  # the epoch is kept


def test_a_mismatch_warns(source):
    net = dark_walls()
    reference = source_reference(net, source_boundary_prior(source.labels), CPU, source)
    thick = ndi.grey_erosion(source.image, size=(1, 3, 3))  # every dark wall two pixels wider
    report = epoch_report(net, thick, reference, CPU, normalizer=source.normalizer)  # on the source's scale
    assert report["target_boundary_fraction"] > PRIOR_FACTOR * report["source_boundary_fraction"]
    before = epoch_report(net, source.image, reference, CPU)
    assert warnings_of(report, before) >= {"boundary fraction"}
    assert label_free_choice([{**before, "epoch": 0}, {**report, "epoch": 1}]) == 0  # rejected


@pytest.mark.parametrize("fractions, warns", [((0.12, 0.12), False), ((0.16, 0.12), False), ((0.20, 0.12), True),
                                              ((0.07, 0.12), True)])
def test_the_band_is_on_the_recorded_reference(fractions, warns):
    target, source_predicted = fractions
    report = {"target_boundary_fraction": target, "source_boundary_fraction": source_predicted,
              "source_label_fraction": 0.05, "target_entropy": 0.5}  # the labels' share is not compared
    assert ("boundary fraction" in warnings_of(report, report)) is warns
    assert reference_of(report) == {"source_boundary_fraction": source_predicted, "source_label_fraction": 0.05}


def test_adapt_records_the_unadapted_models_source_fraction(adapt_volumes, ci_adapt_config):
    src, tgt = adapt_volumes
    net = tiny_unet()
    want = source_reference(net, source_boundary_prior(src.labels), CPU, src, stride=1)
    cfg = ci_adapt_config(epochs=1, steps_per_epoch=1, batch_size=2, patch=32, report_stride=1,
                          discriminator={"width": 4, "depth": 2})
    epochs = adapt(net, src.labels, tgt.image, cfg, source_val=src, progress=False).history["epochs"]
    for e in epochs:  # one reference for the whole run, taken before adaptation
        assert reference_of(e) == pytest.approx(want)
