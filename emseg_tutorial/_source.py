"""A short hash of the package source: what every cached result is keyed by besides its settings.

Stages, adaptation runs and synthetic twins are kept in the runs folder and reused when they
match. Their fingerprints hold :func:`source_hash`, so editing the code that produced them
(``losses.py``, say) gives other keys and a fresh run instead of the old result. The files are
read once per process and remembered: a running kernel keeps the code it imported, and its
results stay keyed by that code.

Examples
--------
>>> len(source_hash()), source_hash() == source_hash()
(12, True)
>>> source_hash("emseg_tutorial.data.synthetic") != source_hash()
True
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

PACKAGE_DIR = Path(__file__).parent
PACKAGE = PACKAGE_DIR.name

__all__ = ["source_hash", "source_files"]


@lru_cache(maxsize=1)
def _digests() -> dict[str, str]:
    """``{dotted module name: BLAKE2b of its bytes}`` for every ``.py`` file of the package."""
    out = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
    return out


def source_files(modules: str | tuple[str, ...] | None = None) -> list[str]:
    """The dotted names :func:`source_hash` covers: every module, or those under ``modules``.

    ``modules`` is a dotted prefix, or a tuple of them: the module of that name and, when it is
    a package, every module inside it (so a module split into a sub-package keeps its prefix).

    Examples
    --------
    >>> source_files("emseg_tutorial.data.synthetic")[0].startswith("emseg_tutorial.data.synthetic")
    True
    >>> source_files("emseg_tutorial.no_such_module")
    []
    """
    names = sorted(_digests())
    if modules is None:
        return names
    prefixes = (modules,) if isinstance(modules, str) else tuple(modules)
    return [n for n in names if any(n == p or n.startswith(p + ".") for p in prefixes)]


@lru_cache(maxsize=None)
def source_hash(modules: str | tuple[str, ...] | None = None) -> str:
    """Twelve hex digits hashing the source of every module of the package, or of ``modules``.

    Parameters
    ----------
    modules : str or tuple of str, optional
        A dotted prefix (``"emseg_tutorial.data.synthetic"``), or a tuple of them (hashable, as
        the result is remembered): only the modules under them count,
        so a cache of what they make (the twins) survives edits elsewhere. Default: the whole
        package (stages and adaptations, which depend on nearly all of it).

    Raises
    ------
    ValueError
        If ``modules`` names no module of the package.
    """
    names = source_files(modules)
    if not names:
        raise ValueError(f"modules: {modules!r} names no module of {PACKAGE}")
    digests = _digests()
    h = hashlib.blake2b(digest_size=6)
    for name in names:
        h.update(f"{name}:{digests[name]}\n".encode())
    return h.hexdigest()
