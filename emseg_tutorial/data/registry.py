"""Public EM datasets: where they live, their checksums, licences and label codes, and a cache.

Every file is named by a URL and a SHA256 checksum. :func:`fetch` returns the file from the
cache folder, downloading it first when it is missing. The cache folder is ``EMSEG_CACHE``
when that environment variable is set, else ``pooch.os_cache("emseg-tutorial")`` (on Linux
``~/.cache/emseg-tutorial``); each dataset has a sub-folder, so a file lives at
``<cache>/<dataset>/<file>`` (see :func:`cache_path`).

Downloads are atomic: :func:`pooch.retrieve` streams into a temporary file in the same cache
folder (``pooch.utils.temporary_file``), checks its SHA256, and only then moves it onto the
final name; the temporary file is deleted in a ``finally`` clause whether the download failed
or the checksum did not match (pooch 1.9 ``core.stream_download``). A failed download
therefore never leaves a half-written file under the name :func:`fetch` looks for.

Offline use: put the file at the path :func:`cache_path` gives (the exact name the error
message of a failed download prints). :func:`fetch` hashes it and returns it without touching
the network; a file with the wrong checksum is deleted and reported (:class:`ChecksumError`).

The checksums below are copied from projects that download the same files (named in each
entry's ``checksum_source``); none was verified by a download from this project's build
machine, which has no network (``verified=False``). When a download succeeds, pooch compares
the file against them, so a wrong entry shows as a :class:`ChecksumError`, never as wrong data.

Examples
--------
>>> sorted(DATASETS)
['isbi2012', 'lucchi_pp', 'snemi3d', 'vnc']
>>> DATASETS["snemi3d"].voxel_size
(30.0, 6.0, 6.0)
>>> cache_path("isbi2012").name
'isbi2012.h5'
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ChecksumError, DownloadError

CACHE_ENV = "EMSEG_CACHE"



@dataclass(frozen=True)
class RemoteFile:
    """One downloadable file of a dataset.

    Attributes
    ----------
    name : str
        File name in the cache (``<cache>/<dataset>/<name>``).
    url : str
        Where it is downloaded from.
    sha256 : str or None
        Expected SHA256 (64 hex digits); None when unknown, in which case the file is used
        unchecked and pooch logs the hash of what it downloaded.
    checksum_source : str
        Where the checksum was copied from.
    verified : bool
        True only once someone downloaded the file and confirmed the checksum for this project.
    contents : str
        What is inside (datasets of an HDF5 file, folders of a zip).
    """

    name: str
    url: str
    sha256: str | None
    checksum_source: str
    verified: bool = False
    contents: str = ""


@dataclass(frozen=True)
class Dataset:
    """A public EM dataset and how its labels become this project's codes.

    Attributes
    ----------
    name : str
        Registry key (``fetch(name)``).
    title : str
        Human-readable name.
    files : tuple of RemoteFile
        The files; the first is the default of :func:`fetch`.
    licence : str
        Terms of use as stated by the data's authors.
    citation : str
        What to cite when using the data.
    voxel_size : tuple of float
        ``(z, y, x)`` in nm.
    description : str
        Tissue, microscope, size.
    label_mapping : dict
        ``{what the dataset stores: our code}`` with codes 0 unlabelled, 1 boundary,
        2 cytoplasm, 3 mitochondria, 4 glia (see :mod:`emseg_tutorial.labels`).
    homepage : str
        Page that describes the data.
    notes : str
        Anything a user should know (caveats about the checksum or the mapping).
    """

    name: str
    title: str
    files: tuple[RemoteFile, ...]
    licence: str
    citation: str
    voxel_size: tuple[float, float, float]
    description: str
    label_mapping: dict[str, int] = field(default_factory=dict)
    homepage: str = ""
    notes: str = ""

    def file(self, name: str | None = None) -> RemoteFile:
        """The file called ``name`` (default: the first), else ValueError listing the files."""
        if name is None:
            return self.files[0]
        for f in self.files:
            if f.name == name:
                return f
        raise ValueError(f"dataset {self.name!r} has no file {name!r}; files: {[f.name for f in self.files]}")


_TORCH_EM = "constantinpape/torch-em, torch_em/data/datasets/electron_microscopy/"

DATASETS: dict[str, Dataset] = {
    "snemi3d": Dataset(
        name="snemi3d",
        title="SNEMI3D (mouse somatosensory cortex, serial-section SEM)",
        files=(
            RemoteFile(
                name="snemi_train.h5",
                url="https://oc.embl.de/index.php/s/43iMotlXPyAB39z/download",
                sha256="5b130a24d9eb23d972fede0f1a403bc05f6808b361cfa22eff23b930b12f0615",
                checksum_source=_TORCH_EM + "snemi.py, CHECKSUMS['train'] (SHA256, torch_em util.get_checksum)",
                contents="HDF5: volumes/raw (100, 1024, 1024) uint8, volumes/labels/neuron_ids (neuron ids)"),
            RemoteFile(
                name="snemi_test.h5",
                url="https://oc.embl.de/index.php/s/aRhphk35H23De2s/download",
                sha256="3df3920a0ddec6897105845f842b2665d37a47c2d1b96d4f4565682e315a59fa",
                checksum_source=_TORCH_EM + "snemi.py, CHECKSUMS['test'] (SHA256)",
                contents="HDF5: volumes/raw (100, 1024, 1024) uint8, no labels"),
        ),
        licence="No licence stated; released for research as the SNEMI3D challenge (ISBI 2013) data. "
                "Cite the paper below.",
        citation="N. Kasthuri et al., Saturated reconstruction of a volume of neocortex. Cell 162(3):648-661, "
                 "2015. doi:10.1016/j.cell.2015.06.054 (SNEMI3D challenge: http://brainiac2.mit.edu/SNEMI3D/)",
        voxel_size=(30.0, 6.0, 6.0),
        description="Two 100 x 1024 x 1024 stacks of mouse cortex (ATUM serial-section SEM, 6 x 6 x 30 nm); "
                    "the train stack has dense neuron ids. The paper's adaptation target.",
        label_mapping={"wall between two neuron ids (find_boundaries mode='thick', per 2D slice)": 1,
                       "inside one neuron id": 2, "id 0 (no neuron)": 0},
        homepage="https://snemi3d.grand-challenge.org/",
        notes="The files are torch-em's HDF5 repackaging of the challenge tifs (hosted by EMBL).",
    ),
    "isbi2012": Dataset(
        name="isbi2012",
        title="ISBI 2012 EM segmentation challenge (Drosophila first instar larva VNC, ssTEM)",
        files=(
            RemoteFile(
                name="isbi2012.h5",
                url="https://oc.embl.de/index.php/s/h0TkwqxU0PJDdMd/download",
                sha256="0e10fe909a1243084d91773470856993b7d40126a12e85f0f1345a7a9e512f29",
                checksum_source=_TORCH_EM + "isbi2012.py, CHECKSUM (SHA256)",
                contents="HDF5: raw (30, 512, 512) uint8, labels/membranes (255 interior, 0 membrane), "
                         "labels/gt_segmentation"),
        ),
        licence="No licence stated; the organisers ask users to cite both papers below.",
        citation="A. Cardona et al., An integrated micro- and macroarchitectural analysis of the Drosophila "
                 "brain by computer-assisted serial section electron microscopy. PLoS Biol 8(10):e1000502, 2010; "
                 "I. Arganda-Carreras et al., Crowdsourcing the creation of image segmentation algorithms for "
                 "connectomics. Front. Neuroanat. 9:142, 2015. doi:10.3389/fnana.2015.00142",
        voxel_size=(50.0, 4.0, 4.0),
        description="30 sections of 512 x 512 pixels (4 x 4 x 50 nm) with membrane / interior labels.",
        label_mapping={"0 (membrane)": 1, "255 (cell interior)": 2},
        homepage="https://imagej.net/events/isbi-2012-segmentation-challenge",
    ),
    "vnc": Dataset(
        name="vnc",
        title="Segmented anisotropic ssTEM dataset of neural tissue (Drosophila larva VNC)",
        files=(
            RemoteFile(
                name="groundtruth-drosophila-vnc-master.zip",
                url="https://github.com/unidesigner/groundtruth-drosophila-vnc/archive/refs/heads/master.zip",
                sha256="f7bd0db03c86b64440a16b60360ad60c0a4411f89e2c021c7ee2c8d6af3d7e86",
                checksum_source=_TORCH_EM + "vnc.py, CHECKSUM (SHA256)",
                contents="zip of the GitHub repository: stack1/raw/*.tif (20 slices 1024 x 1024), "
                         "stack1/labels/*.png (merged labels), stack1/{membranes,mitochondria,synapses}/*.png, "
                         "stack2/raw/*.tif (unlabelled)"),
        ),
        licence="CC BY-NC-SA 3.0 (non-commercial; cite the figshare record).",
        citation="S. Gerhard, J. Funke, J. Martel, A. Cardona, R. Fetter. Segmented anisotropic ssTEM dataset of "
                 "neural tissue. figshare, 2013. doi:10.6084/m9.figshare.856713",
        voxel_size=(50.0, 4.6, 4.6),
        description="Stack 1: 20 ssTEM sections of the Drosophila third instar larva ventral nerve cord "
                    "(4.6 x 4.6 nm pixels, 45-50 nm sections) labelled membrane, mitochondria, synapse, "
                    "glia/extracellular and intracellular: the public 4-class stand-in for the paper's FIBSEM "
                    "source (anisotropic, unlike the paper's isotropic volume).",
        label_mapping={"0, 32, 64, 96 (oriented membrane), 128 (membrane junction)": 1,
                       "255 (intracellular), 223 (synapse)": 2, "191 (mitochondria)": 3,
                       "159 (glia/extracellular)": 4},
        homepage="https://github.com/unidesigner/groundtruth-drosophila-vnc",
        notes="GitHub builds branch archives on request: a new commit on master (or a change of GitHub's "
              "archiver) changes the checksum; download the zip and compare before updating the entry.",
    ),
    "lucchi_pp": Dataset(
        name="lucchi_pp",
        title="Lucchi++ (mouse hippocampus CA1, FIB-SEM, mitochondria)",
        files=(
            RemoteFile(
                name="lucchi_pp.zip",
                url="http://www.casser.io/files/lucchi_pp.zip",
                sha256="770ce9e98fc6f29c1b1a250c637e6c5125f2b5f1260e5a7687b55a79e2e8844d",
                checksum_source=_TORCH_EM + "lucchi.py, CHECKSUM (SHA256); the same hash is used by "
                                "empanada-napari's pooch.retrieve of this URL",
                contents="zip: Lucchi++/{Train_In,Test_In}/mask%04d.png (images, 165 slices 768 x 1024), "
                         "Lucchi++/{Train_Out,Test_Out}/%d.png (mitochondria 255)"),
        ),
        licence="No licence stated on the Lucchi++ page; the underlying EPFL volume is offered for research.",
        citation="V. Casser, K. Kang, H. Pfister, D. Haehn. Fast mitochondria detection for connectomics. "
                 "MIDL 2020, arXiv:1812.06024; A. Lucchi, Y. Li, P. Fua. Learning for structured prediction "
                 "using approximate subgradient descent with working sets. CVPR 2013",
        voxel_size=(5.0, 5.0, 5.0),
        description="Two 165 x 768 x 1024 FIB-SEM stacks (isotropic, about 5 nm) with re-annotated mitochondria.",
        label_mapping={"255 (mitochondria)": 3, "0 (everything else: not annotated)": 0},
        homepage="https://sites.google.com/view/connectomics/",
        notes="Served over plain http only; the SHA256 check protects the content. Only mitochondria are "
              "labelled, so the rest is code 0 (ignored) unless the loader is told otherwise.",
    ),
}


# --------------------------------------------------------------------------- cache


def cache_dir(cache: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``cache`` if given (the session's, from ``EMSEG_CACHE``), else
    ``pooch.os_cache("emseg-tutorial")``."""
    if cache is not None and str(cache).strip():
        return Path(cache).expanduser()
    import pooch

    return Path(pooch.os_cache("emseg-tutorial"))


def get_dataset(name: str) -> Dataset:
    """The registry entry ``name``, else ValueError listing the known names."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {sorted(DATASETS)}") from None


def cache_path(name: str, file: str | None = None, cache: str | os.PathLike | None = None) -> Path:
    """Where :func:`fetch` keeps (and looks for) a file: ``<cache>/<dataset>/<file>``.

    Examples
    --------
    >>> cache_path("snemi3d", "snemi_test.h5").relative_to(cache_dir()).parts
    ('snemi3d', 'snemi_test.h5')
    """
    return cache_dir(cache) / name / get_dataset(name).file(file).name


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """SHA256 of a file as 64 hex digits, read in chunks (bounded memory).

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "x")
    >>> _ = open(p, "wb").write(b"abc")
    >>> file_sha256(p)[:16]
    'ba7816bf8f01cfea'
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- fetching


def _downloader(url: str, progress: bool):
    """The pooch downloader for ``url`` (a seam the tests replace to simulate the network)."""
    import pooch

    return pooch.HTTPDownloader(progressbar=progress)


def _hint(name: str, remote: RemoteFile, target: Path) -> str:
    sha = f"sha256 {remote.sha256}" if remote.sha256 else "checksum unknown"
    return (f"download it by hand from {remote.url} and save it as {target} ({sha}), "
            f"or set {CACHE_ENV} to a folder that holds {name}/{remote.name}")


def _reason(err: Exception) -> str:
    """A short reason for a failed download: the error class and, for requests, its root cause."""
    text = str(err)
    cause = re.search(r"Caused by (\w+)", text)
    if cause:
        return f"{err.__class__.__name__}, caused by {cause.group(1)}"
    first = text.splitlines()[0][:120] if text else ""
    return f"{err.__class__.__name__}: {first}" if first else err.__class__.__name__


def fetch(name: str, file: str | None = None, *, cache: str | os.PathLike | None = None,
          progress: bool = True) -> Path:
    """Path of a dataset file in the cache, downloaded and checksum-verified when missing.

    Parameters
    ----------
    name : str
        Registry key (see :data:`DATASETS`).
    file : str, optional
        File name within the dataset (default: its first file).
    cache : str or path, optional
        Cache folder (default: :func:`cache_dir`).
    progress : bool
        Show a download progress bar.

    Returns
    -------
    Path
        ``cache_path(name, file)``, holding a file with the expected SHA256.

    Raises
    ------
    DownloadError
        The download failed (no network, server error); the one-line message names the
        dataset, the URL, the exact path where a hand-downloaded copy is accepted and the
        ``EMSEG_CACHE`` variable. Nothing is left in the cache.
    ChecksumError
        The file (downloaded or placed by hand) has another SHA256; the message names the
        file and both checksums, and the file has been deleted.

    Examples
    --------
    A file put in the cache by hand is checked without network access (a wrong one is deleted):

    >>> import tempfile
    >>> cache = tempfile.mkdtemp()
    >>> target = cache_path("isbi2012", cache=cache)
    >>> target.parent.mkdir(parents=True)
    >>> _ = target.write_bytes(b"not the real file")
    >>> fetch("isbi2012", cache=cache)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    emseg_tutorial.data.errors.ChecksumError: isbi2012: .../isbi2012/isbi2012.h5 has sha256 ... but the registry expects 0e10fe909a1243084d91773470856993b7d40126a12e85f0f1345a7a9e512f29; the file was deleted; ...
    >>> target.exists()
    False
    """
    entry = get_dataset(name)
    remote = entry.file(file)
    target = cache_path(name, remote.name, cache)
    if target.is_dir():
        raise DownloadError(f"{name}: {target} is a folder, where the dataset file {remote.name} belongs; "
                            f"remove or rename that folder (nothing was downloaded)")
    if target.exists():
        if remote.sha256 is None:
            return target
        actual = file_sha256(target)
        if actual == remote.sha256.lower():
            return target
        target.unlink()
        raise ChecksumError(f"{name}: {target} has sha256 {actual} but the registry expects {remote.sha256}; "
                            f"the file was deleted; {_hint(name, remote, target)}")
    try:  # a cache that cannot hold the file is the user's to fix, before any download
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".emseg-probe.", dir=target.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise DownloadError(f"{name}: the cache folder {target.parent} cannot be made or written "
                            f"({err.strerror or err}); set {CACHE_ENV} to a writable folder "
                            f"(nothing was downloaded)") from None
    import pooch

    known = f"sha256:{remote.sha256}" if remote.sha256 else None
    try:
        path = pooch.retrieve(remote.url, known_hash=known, fname=remote.name, path=target.parent,
                              downloader=_downloader(remote.url, progress), progressbar=progress)
    except ValueError as err:
        got = re.search(r"but got ([0-9a-fA-F]{64})", str(err))
        if got is None:
            raise DownloadError(f"{name}: could not download {remote.url} ({err}); "
                                f"{_hint(name, remote, target)}") from None
        raise ChecksumError(f"{name}: the download of {remote.name} from {remote.url} has sha256 {got.group(1)} "
                            f"but the registry expects {remote.sha256}; the file was deleted; "
                            f"{_hint(name, remote, target)}") from None
    except Exception as err:  # requests' ConnectionError, Timeout, HTTPError; OSError; ...
        raise DownloadError(f"{name}: could not download {remote.url} ({_reason(err)}). Without network, "
                            f"{_hint(name, remote, target)}") from None
    return Path(path)


def fetch_all(names, *, cache: str | os.PathLike | None = None, progress: bool = True,
              why: str = "this run") -> list[Path]:
    """:func:`fetch` the default file of every dataset of ``names``; every missing one in one error.

    Raises
    ------
    DownloadError
        One line naming ``why``, and for each file that is neither cached nor downloadable the
        URL and the exact path where a hand-downloaded copy is accepted (as :func:`fetch` does for
        one), so an offline machine learns at once everything to place where. A
        :class:`ChecksumError` of a file is reported as it is.

    Examples
    --------
    >>> import tempfile
    >>> cache = tempfile.mkdtemp()
    >>> target = cache_path("isbi2012", cache=cache)
    >>> target.parent.mkdir(parents=True)
    >>> _ = target.write_bytes(b"not the real file")
    >>> fetch_all(["isbi2012"], cache=cache)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    emseg_tutorial.data.errors.ChecksumError: isbi2012: .../isbi2012.h5 has sha256 ... the file was deleted; ...
    """
    paths, missing = [], []
    for name in names:
        try:
            paths.append(fetch(name, cache=cache, progress=progress))
        except ChecksumError:
            raise
        except DownloadError:
            remote = get_dataset(name).file()
            missing.append(f"{name}: download {remote.url} and save it as {cache_path(name, cache=cache)}")
    if missing:
        raise DownloadError(f"{why} needs {len(missing)} file{'s' if len(missing) > 1 else ''} that could not be "
                            f"downloaded: " + "; ".join(missing) + f" (or set {CACHE_ENV} to a folder that holds "
                            "them as <dataset>/<file>)")
    return paths


def describe(name: str) -> str:
    """A plain-text description of a dataset: files, checksums, licence, citation, label codes.

    Examples
    --------
    >>> print(describe("isbi2012").splitlines()[0])
    ISBI 2012 EM segmentation challenge (Drosophila first instar larva VNC, ssTEM) [isbi2012]
    """
    d = get_dataset(name)
    z, y, x = d.voxel_size
    lines = [f"{d.title} [{d.name}]", d.description, f"voxel size (z, y, x): {z:g} x {y:g} x {x:g} nm",
             f"licence: {d.licence}", f"cite: {d.citation}"]
    if d.homepage:
        lines.append(f"homepage: {d.homepage}")
    lines.append("label codes: " + "; ".join(f"{k} -> {v}" for k, v in d.label_mapping.items()))
    for f in d.files:
        state = "verified" if f.verified else "not verified by this project"
        lines.append(f"file {f.name}: {f.url}")
        lines.append(f"  sha256 {f.sha256 or 'unknown'} (from {f.checksum_source}; {state})")
        if f.contents:
            lines.append(f"  contents: {f.contents}")
    if d.notes:
        lines.append(f"note: {d.notes}")
    return "\n".join(lines)
