"""Dataset registry: well-formed entries, checksums, offline messages, hand-placed files (no network)."""

import hashlib
import re

import pytest
import requests

from emseg_tutorial.data import registry
from emseg_tutorial.data.registry import (CACHE_ENV, DATASETS, ChecksumError, Dataset, DownloadError, RemoteFile,
                                          cache_dir, cache_path, describe, fetch)
from emseg_tutorial.data.sources import DataSourceError

CONTENT = b"a tiny stand-in for a dataset file\n"
SHA = hashlib.sha256(CONTENT).hexdigest()


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def toy(monkeypatch):
    entry = Dataset(name="toy", title="Toy", licence="CC0", citation="nobody", voxel_size=(1.0, 1.0, 1.0),
                    description="test", label_mapping={"1": 1},
                    files=(RemoteFile("toy.bin", "https://example.org/toy.bin", SHA, "computed in the test"),))
    monkeypatch.setitem(DATASETS, "toy", entry)
    return entry


def network(monkeypatch, body: bytes | None = None, partial: bytes = b"half a fi"):
    """Replace the downloader: write ``body``, or write ``partial`` then fail like a dropped connection."""
    calls = []

    def download(url, output_file, pooch):
        calls.append(url)
        with open(output_file, "wb") as f:
            f.write(body if body is not None else partial)
        if body is None:
            raise requests.exceptions.ConnectionError(
                "HTTPSConnectionPool(host='example.org', port=443): Max retries exceeded\nwith url ...")

    monkeypatch.setattr(registry, "_downloader", lambda url, progress: download)
    return calls


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_entries_are_well_formed(name):
    d = DATASETS[name]
    assert d.name == name and d.title and d.description and d.licence and d.citation
    assert len(d.voxel_size) == 3 and all(isinstance(v, float) and v > 0 for v in d.voxel_size)
    assert d.label_mapping and all(code in range(0, 5) for code in d.label_mapping.values())
    assert d.files and len({f.name for f in d.files}) == len(d.files)
    for f in d.files:
        # https, or plain http only where the content is pinned by a checksum (Lucchi++'s host)
        assert f.url.startswith("https://") or (f.url.startswith("http://") and f.sha256), f.url
        assert f.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", f.sha256), f.sha256
        assert f.checksum_source and "/" not in f.name
        assert f.verified is False          # nobody has downloaded them for this project yet
    text = describe(name)
    assert d.title in text and d.citation in text and all(f.url in text for f in d.files)


def test_cache_dir_from_the_session(cache, monkeypatch):
    from emseg_tutorial.session import from_env

    assert cache_dir(from_env().cache) == cache                      # EMSEG_CACHE, read by the session
    assert cache_path("snemi3d", "snemi_test.h5", cache) == cache / "snemi3d" / "snemi_test.h5"
    monkeypatch.delenv(CACHE_ENV)
    assert from_env().cache is None and "emseg-tutorial" in str(cache_dir())


def test_unknown_dataset_or_file():
    with pytest.raises(ValueError, match="known datasets"):
        fetch("nope", cache=cache)
    with pytest.raises(ValueError, match="snemi_train.h5"):
        cache_path("snemi3d", "missing.h5")


def test_download_is_verified_and_cached(toy, cache, monkeypatch):
    calls = network(monkeypatch, body=CONTENT)
    path = fetch("toy", cache=cache, progress=False)
    assert path == cache / "toy" / "toy.bin" and path.read_bytes() == CONTENT
    assert fetch("toy", cache=cache) == path and len(calls) == 1          # second call: from the cache
    assert [p.name for p in path.parent.iterdir()] == ["toy.bin"]


def test_offline_is_one_clear_line_and_leaves_nothing(toy, cache, monkeypatch):
    network(monkeypatch, body=None)
    with pytest.raises(DownloadError) as info:
        fetch("toy", cache=cache)
    msg = str(info.value)
    assert len(msg.splitlines()) == 1
    for part in ("toy", "https://example.org/toy.bin", str(cache / "toy" / "toy.bin"), CACHE_ENV, SHA,
                 "ConnectionError"):
        assert part in msg, (part, msg)
    assert info.value.__cause__ is None and info.value.__suppress_context__   # no requests traceback
    assert isinstance(info.value, RuntimeError) and isinstance(info.value, DataSourceError)
    assert not (cache / "toy").exists() or list((cache / "toy").iterdir()) == []   # no half-written file


def test_real_entry_offline_message_names_its_address(monkeypatch, cache):
    network(monkeypatch, body=None)
    with pytest.raises(DownloadError) as info:
        fetch("snemi3d", "snemi_test.h5", cache=cache)
    msg = str(info.value)
    assert msg.startswith("snemi3d:") and DATASETS["snemi3d"].files[1].url in msg
    assert str(cache / "snemi3d" / "snemi_test.h5") in msg and CACHE_ENV in msg


def test_wrong_checksum_of_download_is_reported_and_removed(toy, cache, monkeypatch):
    network(monkeypatch, body=b"something else")
    with pytest.raises(ChecksumError) as info:
        fetch("toy", cache=cache)
    msg = str(info.value)
    assert "toy.bin" in msg and SHA in msg and hashlib.sha256(b"something else").hexdigest() in msg
    assert len(msg.splitlines()) == 1
    assert not any((cache / "toy").iterdir())


def test_hand_placed_file_is_accepted_without_network(toy, cache, monkeypatch):
    calls = network(monkeypatch, body=None)
    target = cache_path("toy", cache=cache)
    target.parent.mkdir(parents=True)
    target.write_bytes(CONTENT)
    assert fetch("toy", cache=cache) == target and calls == []


def test_hand_placed_file_with_wrong_checksum_is_removed(toy, cache, monkeypatch):
    calls = network(monkeypatch, body=None)
    target = cache_path("toy", cache=cache)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"corrupt")
    with pytest.raises(ChecksumError) as info:
        fetch("toy", cache=cache)
    assert str(target) in str(info.value) and SHA in str(info.value)
    assert hashlib.sha256(b"corrupt").hexdigest() in str(info.value)
    assert not target.exists() and calls == []


def test_unknown_checksum_accepts_any_cached_file(monkeypatch, cache):
    entry = Dataset(name="loose", title="Loose", licence="?", citation="?", voxel_size=(1.0, 1.0, 1.0),
                    description="?", files=(RemoteFile("f.bin", "https://example.org/f", None, "unknown"),))
    monkeypatch.setitem(DATASETS, "loose", entry)
    target = cache_path("loose", cache=cache)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"anything")
    assert fetch("loose", cache=cache) == target
