"""Chapter timings (measured, never typed), the session's clock, and chapter 3's step by hand."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from emseg_tutorial import setup, timings
from emseg_tutorial.train.by_hand import library_step, parameter_difference

ROOT = Path(__file__).resolve().parents[1]


def test_missing_file_reads_not_measured(tmp_path):
    table = timings.chapter_time_table("03_experiment1", tmp_path / "none.json")
    assert list(table.index) == list(timings.PRESETS)
    assert set(table["time"]) == {"not measured"}


def test_recorded_times_come_back_per_preset_and_chapter(tmp_path):
    path = tmp_path / "_data" / "timings.json"
    timings.record_timings(path, "cpu", {"01_data": 6.04, "03_experiment1": 254.4}, machine="m", date="2026-01-02")
    timings.record_timings(path, "ci", {"01_data": 3.0}, machine="n", date="2026-01-03", mode="alone")
    data = json.loads(path.read_text())
    assert data["presets"]["cpu"]["seconds"]["03_experiment1"] == 254.4
    table = timings.chapter_time_table("03_experiment1", path)
    assert table.loc["cpu", "time"] == "4 min 14 s" and table.loc["cpu", "measured on"] == "m"
    assert table.loc["ci", "time"] == "not measured" and table.loc["gpu", "time"] == "not measured"
    book = timings.book_time_table(path)
    assert book.loc["01_data", "ci"] == "3 s" and book.loc["whole book", "cpu"] == "4 min 20 s"
    assert book.loc["whole book", "gpu"] == "not measured"
    assert timings.find_timings(tmp_path) == path   # a folder above _data/ finds it
    timings.record_timings(path, "cpu", {"01_data": 7.0}, machine="m", date="2026-01-04", merge=True)
    assert timings.load_timings(path)["presets"]["cpu"]["seconds"] == {"01_data": 7.0, "03_experiment1": 254.4}
    timings.record_timings(path, "cpu", {"01_data": 8.0}, machine="other", date="2026-01-05", merge=True)
    assert timings.load_timings(path)["presets"]["cpu"]["seconds"] == {"01_data": 8.0}


def test_the_package_ships_its_measurements(tmp_path, monkeypatch):
    """find_timings() is the installed copy; the copy holds a measured time of every chapter for
    each preset it names, with where and when it was measured."""
    assert timings.find_timings() == timings.PACKAGE_TIMINGS and timings.PACKAGE_TIMINGS.is_file()
    chapters = {p.stem for p in (ROOT / "book").glob("[0-9][0-9]_*.ipynb")}
    presets = timings.load_timings()["presets"]
    assert presets and set(presets) <= set(timings.PRESETS)
    for name, entry in presets.items():
        assert set(entry["seconds"]) == chapters, name
        assert all(s > 0 for s in entry["seconds"].values()) and entry["machine"] and entry["date"], name
    monkeypatch.setattr(timings, "PACKAGE_TIMINGS", tmp_path / "missing.json")
    assert timings.find_timings() is None and timings.load_timings() == {"presets": {}}


def test_bad_file_is_refused(tmp_path):
    path = tmp_path / "t.json"
    path.write_text('{"presets": [1, 2]}')
    with pytest.raises(ValueError, match="presets"):
        timings.load_timings(path)


def test_every_chapter_shows_its_times_and_closes_with_its_own_clock():
    import nbformat

    for path in sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        sources = [c.source for c in nb.cells]
        assert any(f'chapter_time_table("{path.stem}")' in s for s in sources), path.name
        assert "session.elapsed()" in sources[-1], path.name
        assert any(s.startswith("## Setup") for s in sources) and any("## Recap" in s for s in sources), path.name


def test_session_clock_runs():
    session = setup(preset="ci", verbose=False)
    assert 0 <= session.elapsed() < 60
    import dataclasses

    later = dataclasses.replace(session, started=session.started + 100)
    assert later == session and later.elapsed() < session.elapsed()  # the clock takes no part in equality


def test_step_by_hand_equals_the_library_step():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 3, 1))
    rng = np.random.default_rng(0)
    batch = {"image": rng.normal(size=(2, 1, 8, 8)).astype(np.float32),
             "target": rng.integers(-1, 3, size=(2, 8, 8)),
             "weight": rng.random((2, 8, 8)).astype(np.float32)}
    start = copy.deepcopy(net)
    stepped, loss = library_step(start, batch, lr=1e-2)
    assert parameter_difference(start, net) == 0     # the argument is left untouched
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    image, target, weight = (torch.as_tensor(batch[k]) for k in ("image", "target", "weight"))
    per_pixel = torch.nn.functional.cross_entropy(net(image), target, ignore_index=-1, reduction="none")
    labelled = target >= 0
    by_hand = (weight * per_pixel)[labelled].sum() / weight[labelled].sum()
    optimizer.zero_grad()
    by_hand.backward()
    optimizer.step()
    assert loss == pytest.approx(by_hand.item(), rel=1e-6)
    assert parameter_difference(net, stepped) < 1e-6
    with pytest.raises(ValueError, match="parameter shapes"):
        parameter_difference(net, torch.nn.Conv2d(1, 1, 1))
