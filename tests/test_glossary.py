"""The glossary (book/glossary.md): every term the chapters use is there, in order, and the
entries that describe code agree with it (issue 25, item 7)."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GLOSSARY = ROOT / "book" / "glossary.md"

#: Terms the chapters rely on (issue 25 added the last six).
REQUIRED = ["AdaBN", "ARAND", "boundary F1", "conditional discriminator", "domain shift", "FIB-SEM",
            "generator step", "Jaccard index", "jitter", "label-free selection", "M1", "M2", "M3", "oracle",
            "PatchGAN", "preset", "source", "ssTEM", "target", "twin", "VOI", "weight map",
            "Dice", "focal loss", "logits", "non-saturating loss", "straight-through", "mean teacher"]


def entries() -> dict[str, str]:
    """Term -> its definition, from the ``{glossary}`` block (terms sharing a definition share it)."""
    block = re.search(r"```\{glossary\}\n(.*?)\n```", GLOSSARY.read_text(), flags=re.S).group(1)
    found, pending = {}, []
    for line in block.splitlines():
        if line and not line[0].isspace():
            if pending and found.get(pending[-1]):
                pending = []
            pending.append(line.strip())
            found[line.strip()] = ""
        elif line.strip():
            for term in pending:
                found[term] += line.strip() + " "
    return found


def test_every_required_term_has_a_definition():
    glossary = entries()
    missing = [t for t in REQUIRED if t not in glossary]
    assert not missing, f"book/glossary.md lacks {missing}"
    empty = [t for t, text in glossary.items() if len(text.split()) < 8]
    assert not empty, f"terms without a real definition: {empty}"


def test_terms_are_in_alphabetical_order():
    terms = list(entries())
    assert terms == sorted(terms, key=str.lower), "book/glossary.md: keep the terms in alphabetical order"


def test_every_term_role_of_the_book_has_an_entry():
    """``{term}`x``` and ``{term}`text <x>``` in chapters and glossary name a defined term."""
    glossary = entries()
    used = set()
    for path in [*sorted((ROOT / "book").glob("*.ipynb")), *sorted((ROOT / "book").glob("*.md"))]:
        for text in re.findall(r"\{term\}`([^`]+)`", path.read_text()):
            used.add(re.sub(r"^.*<(.+)>$", r"\1", text).strip())
    assert not used - set(glossary), f"{{term}} roles without a glossary entry: {sorted(used - set(glossary))}"


def test_preset_entry_names_every_preset_and_how_one_is_chosen():
    from emseg_tutorial.presets import PRESETS

    text = entries()["preset"]
    assert all(f"`{name}`" in text for name in PRESETS), sorted(PRESETS)
    assert "EMSEG_PRESET" in text and "setup(preset=" in text


def test_jitter_entry_names_the_transforms_of_the_code():
    pytest.importorskip("torch")
    from emseg_tutorial.data.augment import Jitter

    text = entries()["jitter"].lower()
    transforms = [f.name for f in fields(Jitter) if f.name not in ("p", "contrast_centre", "gamma_centre")]
    assert transforms == ["brightness", "contrast", "gamma", "blur", "noise"]
    assert all(name in text for name in transforms)
    assert f"{len(transforms)} transforms".replace("5", "five") in text and "from_source" in text
