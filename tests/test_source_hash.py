"""The package-source hash (emseg_tutorial._source) that keys every cache: stages and adaptations
on the whole package, twins on their own modules (tests of the caches: test_train.py,
test_adapt_runs.py, test_twins_fast.py)."""

import pytest

from emseg_tutorial import _source
from emseg_tutorial.data import sources


def test_source_hash_covers_a_module_or_a_package_by_prefix(monkeypatch):
    fake = {"emseg_tutorial.data.synthetic": "1", "emseg_tutorial.data.synthetic_notes": "2",
            "emseg_tutorial.losses": "3"}
    monkeypatch.setattr(_source, "_digests", lambda: dict(fake))
    source_hash = _source.source_hash.__wrapped__          # past the per-process cache
    twins, everything = source_hash("emseg_tutorial.data.synthetic"), source_hash()
    assert _source.source_files("emseg_tutorial.data.synthetic") == ["emseg_tutorial.data.synthetic"]
    fake["emseg_tutorial.losses"] = "edited"               # losses.py edited: the twins keep their hash
    assert source_hash("emseg_tutorial.data.synthetic") == twins and source_hash() != everything
    del fake["emseg_tutorial.data.synthetic"]              # synthetic.py became a package
    fake.update({"emseg_tutorial.data.synthetic": "1", "emseg_tutorial.data.synthetic.render": "4"})
    assert _source.source_files("emseg_tutorial.data.synthetic") == ["emseg_tutorial.data.synthetic",
                                                                     "emseg_tutorial.data.synthetic.render"]
    assert source_hash("emseg_tutorial.data.synthetic") != twins
    with pytest.raises(ValueError, match="modules: 'emseg_tutorial.nothing' names no module"):
        source_hash("emseg_tutorial.nothing")


def test_source_hash_reads_the_package_files_once_per_process():
    for modules in (None, sources.TWIN_MODULES, "emseg_tutorial.losses", None):
        _source.source_hash(modules)
    assert _source._digests.cache_info().misses == 1
    assert "emseg_tutorial.losses" in _source.source_files()
    assert set(_source.source_files(sources.TWIN_MODULES)) < set(_source.source_files())
