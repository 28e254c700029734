"""How long each chapter runs at each preset, read from the book's measurement file.

``benchmarks/chapter_times.py`` executes the chapters at one preset (or reads a ``make book``
log) and writes what it measured into ``emseg_tutorial/_data/timings.json``, a file installed
with the package, so a chapter opened on Colab shows the same table; the chapters' opening
tables and the instructor guide read that file through :func:`chapter_time_table` and :func:`book_time_table`, so no running time is
ever typed into the book. A preset that was never measured shows as "not measured".

The file holds one record per preset::

    {"presets": {"cpu": {"machine": "...", "date": "2026-01-01T00:00:00Z", "mode": "book",
                         "seconds": {"01_data": 41.2, "02_weight_maps": 12.0, ...}}, ...}}

``mode`` says how the chapters ran: ``"book"`` in order, sharing trained stages (as ``make
book`` does), ``"alone"`` each in a fresh runs folder (retraining what it needs).

Examples
--------
>>> format_seconds(42.4), format_seconds(185), format_seconds(None)
('42 s', '3 min 5 s', 'not measured')
>>> data = {"presets": {"ci": {"machine": "laptop", "date": "2026-01-01", "mode": "book",
...                            "seconds": {"03_experiment1": 21.0}}}}
>>> chapter_time_table("03_experiment1", data)["time"].tolist()
['21 s', 'not measured', 'not measured', 'not measured']
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

__all__ = ["PRESETS", "TIMINGS_FILE", "find_timings", "load_timings", "format_seconds", "chapter_time_table",
           "book_time_table", "record_timings"]

#: The presets a table shows, in order.
PRESETS = ("ci", "lab", "cpu", "gpu")
#: Where the measurements live, relative to the repository root (package data: installed too).
TIMINGS_FILE = Path("emseg_tutorial") / "_data" / "timings.json"
#: The installed copy this package reads by default.
PACKAGE_TIMINGS = Path(__file__).resolve().parent / "_data" / "timings.json"
NOT_MEASURED = "not measured"


def find_timings(start: str | Path | None = None) -> Path | None:
    """The measurement file: the package's own (``start`` None), or the first
    ``emseg_tutorial/_data/timings.json`` or ``_data/timings.json`` in ``start`` or a folder
    above it. ``None`` when there is none.
    """
    if start is None:
        return PACKAGE_TIMINGS if PACKAGE_TIMINGS.is_file() else None
    here = Path(start).resolve()
    for folder in (here, *here.parents):
        for candidate in (folder / TIMINGS_FILE, folder / "_data" / "timings.json"):
            if candidate.is_file():
                return candidate
    return None


def load_timings(source: str | Path | Mapping | None = None) -> dict:
    """The measurements as a dict (``{"presets": {}}`` when there is no file).

    Parameters
    ----------
    source : path or mapping, optional
        A timings file, an already loaded mapping, or None to look for the file with
        :func:`find_timings`.
    """
    if isinstance(source, Mapping):
        data = dict(source)
    else:
        path = Path(source) if source is not None else find_timings()
        if path is None or not path.is_file():
            return {"presets": {}}
        data = json.loads(path.read_text())
    if not isinstance(data.get("presets", {}), Mapping):
        raise ValueError("a timings file holds {'presets': {preset: record}}")
    data.setdefault("presets", {})
    return data


def format_seconds(seconds: float | None) -> str:
    """``"42 s"``, ``"3 min 5 s"``, ``"1 h 2 min"``, or "not measured" for None."""
    if seconds is None:
        return NOT_MEASURED
    s = round(float(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def _record(data: Mapping, preset: str) -> Mapping:
    return data["presets"].get(preset) or {}


def chapter_time_table(chapter: str, source: str | Path | Mapping | None = None) -> pd.DataFrame:
    """One chapter's running time at every preset, with the machine and date of the measurement.

    Parameters
    ----------
    chapter : str
        The notebook's name without extension, e.g. ``"03_experiment1"``.
    source : path or mapping, optional
        See :func:`load_timings`.

    Returns
    -------
    pandas.DataFrame
        Index: the presets; columns ``time``, ``measured on``, ``date``, ``how``.
    """
    data = load_timings(source)
    rows = {}
    for preset in PRESETS:
        rec = _record(data, preset)
        seconds = rec.get("seconds", {}).get(chapter)
        rows[preset] = {"time": format_seconds(seconds),
                        "measured on": rec.get("machine", "") if seconds is not None else "",
                        "date": str(rec.get("date", ""))[:10] if seconds is not None else "",
                        "how": rec.get("mode", "") if seconds is not None else ""}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "preset"
    return table


def book_time_table(source: str | Path | Mapping | None = None) -> pd.DataFrame:
    """Every measured chapter (rows) at every preset (columns), plus a total row."""
    data = load_timings(source)
    chapters = sorted({c for p in PRESETS for c in _record(data, p).get("seconds", {})})
    table = pd.DataFrame({p: [format_seconds(_record(data, p).get("seconds", {}).get(c)) for c in chapters]
                          for p in PRESETS}, index=chapters)
    totals = {}
    for p in PRESETS:  # a total only where every chapter was measured
        seconds = _record(data, p).get("seconds", {})
        totals[p] = format_seconds(sum(seconds.values())) if seconds and set(seconds) >= set(chapters) \
            else NOT_MEASURED
    table.loc["whole book"] = totals
    table.index.name = "chapter"
    return table


def record_timings(path: str | Path, preset: str, seconds: Mapping[str, float], *, machine: str, date: str,
                   mode: str = "book", merge: bool = False) -> dict:
    """Write the record of ``preset`` in the timings file at ``path``; return the whole data.

    The preset's previous record is replaced, or, with ``merge``, kept for the chapters not in
    ``seconds`` when it was measured on the same machine in the same mode (a rerun of a few
    chapters).
    """
    path = Path(path)
    data = load_timings(path) if path.is_file() else {"presets": {}}
    old = data["presets"].get(preset) or {}
    kept = dict(old.get("seconds", {})) if merge and (old.get("machine"), old.get("mode")) == (machine, mode) else {}
    kept.update({k: round(float(v), 1) for k, v in seconds.items()})
    data["presets"][preset] = {"machine": machine, "date": date, "mode": mode, "seconds": kept}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)  # never a half-written file
    return data
