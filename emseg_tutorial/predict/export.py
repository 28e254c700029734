"""Export a trained U-Net as a bioimage.io model package (spec 0.5), runnable outside this library.

:func:`export_bioimageio` is what ``python -m emseg_tutorial export`` runs. The package (a
folder, or a ``.zip`` ready for the BioImage Model Zoo, which ilastik, deepImageJ, Fiji,
napari and QuPath run) holds

* ``rdf.yaml``: name, description, authors, citations (the paper: Roy & Chakraborty,
  arXiv:2004.02748, 2020, its title and authors as the paper gives them; and this package),
  licence BSD-3-Clause, input and output axes, the pre-processing, the halo and the weights;
* two weight formats of the same network, :class:`~emseg_tutorial.models.unet.ProbabilityUNet`
  (the U-Net followed by a softmax, so the output is class probabilities): ``weights.pt``
  (``pytorch_state_dict``, its architecture ``unet.py``, this library's
  :mod:`emseg_tutorial.models.unet` shipped with its sha256: it imports only ``math`` and
  ``torch``, so the package stands alone) and ``weights.torchscript.pt`` (TorchScript, traced:
  plain ``torch.jit.load``; heights and widths multiples of ``2 ** depth``, as the rdf's input
  axes say);
* ``test_input.npy`` / ``test_output.npy``: a synthetic FIBSEM-like twin (as float32
  intensities) and what this library predicts for it;
* ``cover.png`` (the twin, the prediction) and ``README.md``, the model card.

**Normalisation.** The network saw ``(unit - mean) / std``, ``unit`` being the volume
scaled to [0, 1] (:class:`~emseg_tutorial.data.normalize.Normalizer`: between its 0.5th and
99.5th percentiles and clipped, uint8 divided by 255) and ``mean``, ``std`` those of the
*whole volume*. A runner computes statistics per tensor it is given (a slice, a tile), so the
rdf fixes one volume's numbers instead (:func:`fixed_normalisation`: ``scale_linear``,
``clip``, ``scale_linear``): by default the test input's, so ``bioimageio test`` reproduces
``test_output.npy`` (to 1e-4, no element excepted); ``normalizer=`` (``--stats-of`` on the
command line) fixes those of the volume the package is for. The model card says so.

**Halo.** :func:`halo_pixels`: the U-Net's reach (:func:`~emseg_tutorial.models.unet.context_pixels`)
rounded up to a multiple of ``2 ** depth``, so a runner's tiles, padded by it and cropped
again, give the whole slice's probabilities: no seams.

**Validation** runs offline: :func:`validate_package` checks the rdf against the spec with
``perform_io_checks=False`` (no download, no hash of remote files: every file of the package
is local and hashed when written).

Examples
--------
>>> import os, tempfile
>>> from emseg_tutorial.models import UNet2d
>>> from emseg_tutorial.store import save_checkpoint
>>> folder = tempfile.mkdtemp()
>>> save_checkpoint(os.path.join(folder, "m.pt"), UNet2d(out_channels=2, depth=2, base_width=4))
>>> rdf = export_bioimageio(os.path.join(folder, "m.pt"), os.path.join(folder, "pkg"), shape=(1, 52, 52))
>>> os.path.basename(rdf), validate_package(rdf)
('rdf.yaml', 'valid-format')
"""

from __future__ import annotations

import hashlib
import os
import shutil
import string
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.normalize import Normalizer, check_normalizer
from ..data.outputs import check_file_target
from ..data.synthetic import make_volume
from ..models import check_model
from ..models import unet as unet_source
from ..models.unet import ProbabilityUNet, context_pixels
from ..labels import class_names, is_foreground_task
from ..store import checkpoint_task, load_checkpoint
from .tiled import predict_probabilities

__all__ = ["ProbabilityUNet", "export_bioimageio", "validate_package", "fixed_normalisation", "halo_pixels",
           "check_test_shape", "check_package_name", "check_export_target"]

#: the paper, its title and authors as the paper gives them (/work/shared/paper)
PAPER = ("Roy, S. & Chakraborty, A. (2020). Semantic Segmentation of highly class imbalanced fully labelled 3D "
         "volumetric biomedical images and unsupervised Domain Adaptation of the pre-trained Segmentation Network "
         "to segment another fully unlabelled Biomedical 3D Image stack. arXiv:2004.02748")
PAPER_URL = "https://arxiv.org/abs/2004.02748"
PAPER_DOI = "10.48550/arXiv.2004.02748"
PACKAGE_URL = "https://github.com/emseg-tutorial/emseg-tutorial"
EXTRA_HINT = "pip install 'emseg-tutorial[scale]'"
CLASS_NAMES = {2: ["boundary", "other"], 4: ["boundary", "cytoplasm", "mitochondria", "glia"],
               3: ["boundary", "cytoplasm", "mitochondria"]}
#: the characters of a bioimage.io model name (its spec, v0.5)
NAME_CHARACTERS = frozenset(string.ascii_letters + string.digits + "_+- ()")
#: absolute and relative tolerance of the rdf's test (bioimageio.core's default is 1e-3 and 100 ppm mismatched)
TOLERANCE = 1e-4


def import_spec():
    """The ``bioimageio.spec`` package, else a one-line ValueError naming the ``scale`` extra."""
    try:
        import bioimageio.spec as spec
    except ImportError:
        raise ValueError(f"export needs bioimageio.spec; install it with {EXTRA_HINT} "
                         f"(or 'pip install bioimageio.spec')") from None
    return spec


def load_unet(ckpt: str | os.PathLike) -> tuple[nn.Module, dict]:
    """The U-Net of a checkpoint; ValueError (one line) for anything else (a discriminator, say)."""
    model, data = load_checkpoint(ckpt)
    arch = data.get("arch", "unet2d")
    if arch != "unet2d":
        raise ValueError(f"{ckpt}: holds a {arch!r} network, not a segmentation U-Net; export the U-Net "
                         f"checkpoint (model.pt), not the adversarial discriminator")
    return model, data


def check_package_name(name: str, flag: str = "name") -> str:
    """``name`` if bioimage.io takes it as a model's name (5 to 128 letters, digits, ``_+- ()``), else
    a one-line ValueError naming ``flag``; checked before any package is built.

    Examples
    --------
    >>> check_package_name("EM boundaries (fibsem)")
    'EM boundaries (fibsem)'
    >>> check_package_name("a/b", "--name")
    Traceback (most recent call last):
    ...
    ValueError: --name 'a/b': a bioimage.io model name has 5 to 128 characters, letters, digits, spaces and _+-() only (not '/')
    """
    bad = sorted(set(c for c in name if c not in NAME_CHARACTERS))
    if bad or not 5 <= len(name) <= 128:
        not_these = f" (not {', '.join(repr(c) for c in bad)})" if bad else f" (this one has {len(name)})"
        raise ValueError(f"{flag} {name!r}: a bioimage.io model name has 5 to 128 characters, letters, digits, "
                         f"spaces and _+-() only{not_these}")
    return name


def halo_pixels(kwargs: dict) -> int:
    """The halo the package declares: the U-Net's one-sided context
    (:func:`~emseg_tutorial.models.unet.context_pixels`) rounded up to a multiple of ``2 ** depth``.

    A runner that predicts in tiles pads each tile by the halo and crops it again; outputs that
    far from a tile's edge are those of the whole slice (the multiple keeps every tile on the
    pooling grid of the whole slice), so the tiles show no seams.

    Examples
    --------
    >>> halo_pixels({"depth": 2}), halo_pixels({"depth": 4}), halo_pixels({"depth": 4, "upsample": "bilinear"})
    (24, 112, 128)
    """
    depth = int(kwargs.get("depth", 4))
    multiple = 2 ** depth
    context = context_pixels(depth, kwargs.get("upsample", "transpose"))
    return -(-context // multiple) * multiple


def smallest_side(kwargs: dict) -> int:
    """The smallest height and width the package takes: twice the halo and ``2 ** depth`` more
    (a bioimage.io output must keep a pixel after its halo is cropped).

    Examples
    --------
    >>> smallest_side({"depth": 2})
    52
    """
    return 2 * halo_pixels(kwargs) + 2 ** int(kwargs.get("depth", 4))


def fixed_normalisation(norm: Normalizer) -> dict[str, dict[str, float]]:
    """The library's normalisation ``norm`` as the rdf's three fixed steps.

    ``scale_linear`` (to [0, 1]: ``(x - lo) / (hi - lo)``, or ``x / 255`` for uint8), ``clip``
    (0, 1) and ``scale_linear`` again (``(unit - mean) / std``): plain multiply-adds every runner
    computes alike (``fixed_zero_mean_unit_variance`` would do for the last one, but
    bioimageio.core adds 1e-6 to its ``std``).

    Raises
    ------
    ValueError
        ``norm`` is of a flat volume (no intensity range to scale).

    Examples
    --------
    >>> fixed_normalisation(Normalizer(None, 0.5, 0.25))
    {'unit': {'gain': 0.00392156862745098, 'offset': 0.0}, 'standardise': {'gain': 4.0, 'offset': -2.0}}
    >>> fixed_normalisation(Normalizer((100.0, 300.0), 0.5, 0.25))["unit"]
    {'gain': 0.005, 'offset': -0.5}
    """
    norm = check_normalizer(norm)
    lo, hi = norm.limits if norm.limits is not None else (0.0, 255.0)
    if hi <= lo:
        raise ValueError(f"normalizer {norm}: the volume is flat (intensity limits {lo} to {hi}); its statistics cannot "
                         f"normalise another image")
    return {"unit": {"gain": 1.0 / (hi - lo), "offset": 0.0 - lo / (hi - lo)},
            "standardise": {"gain": 1.0 / norm.std, "offset": -norm.mean / norm.std}}


def check_test_shape(shape, depth: int, flag: str = "shape", smallest: int = 16) -> tuple[int, int, int]:
    """``shape`` as the ``(Z, Y, X)`` of a test input the package can hold, else a one-line
    ValueError naming ``flag``: three positive integers, slices at least ``smallest`` pixels on
    each side (:func:`smallest_side`) whose sides are multiples of ``2 ** depth`` (the package's
    input sizes).

    Examples
    --------
    >>> check_test_shape((1, 8, 8), 2, "--test-shape", 52)
    Traceback (most recent call last):
    ...
    ValueError: --test-shape 1 8 8: slices must be at least 52 x 52 pixels (the package's smallest input: twice its halo and 4 more)
    """
    try:
        z, y, x = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"{flag} {shape!r}: expected three whole numbers Z Y X") from None
    given = f"{flag} {z} {y} {x}"
    if min(z, y, x) < 1:
        raise ValueError(f"{given}: every size must be a positive integer")
    multiple = 2 ** depth
    if min(y, x) < smallest:
        raise ValueError(f"{given}: slices must be at least {smallest} x {smallest} pixels (the package's smallest "
                         f"input: twice its halo and {multiple} more)")
    if y % multiple or x % multiple:
        raise ValueError(f"{given}: Y and X must be multiples of {multiple} (2 ** the U-Net's depth {depth}, the "
                         f"input sizes the package declares)")
    return z, y, x


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _reason(err: Exception) -> str:
    """The whole reason of ``err`` on one line: each validation error as ``field: message``, else
    its lines joined."""
    errors = getattr(err, "errors", None)
    if callable(errors):
        try:
            found = [f"{'.'.join(str(p) for p in e.get('loc', ())) or 'package'}: {e.get('msg', '')}" for e in errors()]
        except Exception:  # noqa: BLE001 - not a pydantic error after all
            found = []
        if found:
            return "; ".join(found)
    return " ".join(line.strip() for line in str(err).splitlines() if line.strip()) or err.__class__.__name__


def _script(net: ProbabilityUNet, example: torch.Tensor):
    """TorchScript of ``net``, traced on ``example``.

    Traced rather than scripted (the U-Net's forward checks its input with Python values
    TorchScript does not type); the trace is valid for any batch size and for heights and
    widths that are multiples of ``2 ** depth`` (no padding branch), which is what the rdf's
    input axes allow.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarning: the input checks are constants in the trace
        return torch.jit.trace(net, example, check_trace=False)


def _cover(path: Path, image: np.ndarray, probs: np.ndarray) -> None:
    """Cover image, 2:1: the middle slice of the twin, and its boundary probability."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    z = image.shape[0] // 2
    fig, axes = plt.subplots(1, 2, figsize=(6, 3), dpi=100, layout="none")
    axes[0].imshow(image[z], cmap="gray")
    axes[1].imshow(probs[0, z], cmap="magma", vmin=0, vmax=1)
    for ax, title in zip(axes, ("input (synthetic twin)", "P(boundary)")):
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.9, wspace=0.05)
    fig.savefig(path)
    plt.close(fig)


def _model_card(kwargs: dict, classes: list[str], config: dict, norm: Normalizer, steps: dict,
                stats_of: str) -> str:
    unit = ("divided by 255 (uint8)" if norm.limits is None
            else f"scaled between {norm.limits[0]:.6g} and {norm.limits[1]:.6g} (the 0.5th and 99.5th percentiles) "
                 f"to [0, 1] and clipped")
    halo = halo_pixels(kwargs)
    multiple = 2 ** int(kwargs.get("depth", 4))
    return f"""# EM membrane / organelle segmentation U-Net (emseg-tutorial)

A 2D U-Net trained with the class-imbalance-aware losses of Roy & Chakraborty (2020,
[arXiv:2004.02748]({PAPER_URL})), exported by the `emseg-tutorial` package ({PACKAGE_URL}).

* **Input**: one EM slice per batch entry, axes `batch, channel (1), y, x`; heights and widths
  multiples of {multiple}, at least {smallest_side(kwargs)} (the TorchScript weights take only those;
  a tiling runner pads any image to them).
* **Output**: class probabilities, axes `batch, channel, y, x`; channels: {", ".join(classes)}.
  Label codes as this package writes them are `argmax + 1`.
* **Halo**: {halo} pixels in y and x (the U-Net's reach, rounded up to a multiple of {multiple}):
  a runner that predicts in tiles pads each by the halo and crops it again, so tiles show no seams.
  At the image's own border such a runner mirrors the image, where `emseg-tutorial` zero-pads
  inside the network: within {halo} pixels of the border the probabilities differ slightly.

## Normalisation: fixed statistics of one volume

The network expects intensities normalised with the statistics of the **whole volume**, as
`emseg-tutorial` computes them for every volume it predicts. The package fixes those of
{stats_of}: raw values are {unit}, then standardised with mean {norm.mean:.6g} and standard
deviation {norm.std:.6g}. The rdf says so as `scale_linear` (gain {steps["unit"]["gain"]:.6g},
offset {steps["unit"]["offset"]:.6g}) + `clip` (0, 1) + `scale_linear` (gain
{steps["standardise"]["gain"]:.6g}, offset {steps["standardise"]["offset"]:.6g}).

**For another volume** these numbers are wrong: a darker or brighter stack reaches the network
shifted. Either export a package with that volume's statistics,
`python -m emseg_tutorial export --model model.pt --stats-of your_volume.tif --out pkg.zip`
(or write its numbers into the rdf's three steps), or predict it with
`python -m emseg_tutorial predict`, which computes every volume's own statistics (streamed, two
passes over the data).

## Training

Configuration recorded in the checkpoint: `{ {k: config[k] for k in sorted(config)[:12]} }`.

## Limitations

Trained on the data named above (synthetic twins when the checkpoint came from the book's
CI runs); check the predictions on your own data. Domain shift between microscopes is the
subject of the paper's adaptation chapter.
"""


def check_export_target(out: str | os.PathLike, label: str | None = None) -> Path:
    """Check where a package may go, before anything is built; returns ``out`` as a Path.

    A ``.zip`` must not be a folder (an existing zip is replaced only by a complete, valid
    package); a folder must be new or empty (export never replaces a file in a folder); the
    nearest existing parent must be a folder that can be written.

    Raises
    ------
    ValueError
        One line naming ``out`` (and ``label``, the argument it came from).

    Examples
    --------
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> check_export_target(os.path.join(folder, "pkg")).name
    'pkg'
    >>> _ = open(os.path.join(folder, "README.md"), "w").write("mine")
    >>> check_export_target(folder, "--out")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: --out ...: is a folder that is not empty (README.md); export writes only into a new or empty folder, so no file of yours is replaced; name a new folder or a .zip
    """
    out = Path(out)
    who = f"{label} {os.fspath(out)}" if label else os.fspath(out)
    if out.suffix.lower() == ".zip":
        if out.is_dir():
            raise ValueError(f"{who}: is a folder; a .zip package is a file (name a new .zip, or a folder "
                             f"without the .zip suffix)")
    elif out.exists() and not out.is_dir():
        raise ValueError(f"{who}: exists and is not a folder; give a new or empty folder, or a .zip")
    elif out.is_dir() and any(out.iterdir()):
        names = sorted(p.name for p in out.iterdir())
        shown = ", ".join(names[:3]) + (f", ... ({len(names)} entries)" if len(names) > 3 else "")
        raise ValueError(f"{who}: is a folder that is not empty ({shown}); export writes only into a new or empty "
                         f"folder, so no file of yours is replaced; name a new folder or a .zip")
    check_file_target(out.parent / f".{out.name}.emseg-probe", who)  # a VolumeError, hence a ValueError
    return out


def _missing_parents(path: Path) -> list[Path]:
    """The folders above ``path`` that do not exist yet, deepest first (removed again after a failure)."""
    missing = []
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    return missing


def _commit(built: Path, out: Path) -> None:
    """Rename the finished, validated package ``built`` to ``out`` (a zip replaces an old one; a
    folder takes the place of a missing or empty folder, never of one with files)."""
    if built.is_dir() and out.is_dir():
        if any(out.iterdir()):
            raise ValueError(f"{out}: files appeared in the folder during the export; nothing of them was replaced, "
                             f"and the package was not written")
        out.rmdir()
    os.replace(built, out)


def export_bioimageio(ckpt: str | os.PathLike, out: str | os.PathLike, *, name: str | None = None,
                      shape: tuple[int, int, int] | None = None, seed: int = 0,
                      normalizer: Normalizer | None = None, stats_of: str | None = None,
                      flags: dict[str, str] | None = None) -> Path:
    """Write the U-Net of checkpoint ``ckpt`` as a bioimage.io model package.

    Parameters
    ----------
    ckpt : str or path
        A checkpoint written by ``train`` or ``adapt`` (``model.pt``).
    out : str or path
        A new or empty folder (made if missing; its ``rdf.yaml`` is returned) or a ``.zip``
        file; the package is built and validated beside it and renamed into place only then,
        so a failed export leaves an old zip as it was (:func:`check_export_target`).
    name : str, optional
        The model's name (letters, digits, ``_+- ()``); default from the checkpoint.
    shape : tuple of int, optional
        ``(Z, Y, X)`` of the synthetic twin used as test input; default two slices of the
        smallest size the package takes (:func:`smallest_side`).
    seed : int
        Seed of the twin.
    normalizer : Normalizer, optional
        The statistics the package fixes (:func:`fixed_normalisation`): those of the volume it
        is for (:func:`~emseg_tutorial.data.normalize.streaming_stats`, what ``predict``
        computes for a file). Default: the test input's own.
    stats_of : str, optional
        What ``normalizer`` is of, for the model card (default "the test input").
    flags : dict, optional
        How messages name the ``name`` and ``shape`` arguments (the command line passes
        ``--name`` and ``--test-shape``).

    Returns
    -------
    Path
        ``rdf.yaml`` in the folder, or the ``.zip``.

    Raises
    ------
    ValueError
        Not a checkpoint, not a U-Net (e.g. an adversarial discriminator), a model
        :func:`~emseg_tutorial.models.check_model` refuses, a test shape or name the package cannot
        hold (:func:`check_test_shape`, :func:`check_package_name`): all before anything is built;
        or an invalid package, with the whole reason; one line.
    """
    spec = import_spec()
    from bioimageio.spec.model import v0_5 as m

    out = check_export_target(out)  # before any work: a folder with files, a .zip that is a folder, ...
    flags = {"name": "name", "shape": "shape", **(flags or {})}
    model, data = load_unet(ckpt)
    check_model(model, str(ckpt))  # finite weights, one input channel, a task's head: before any building
    kwargs = dict(model.init_kwargs)
    depth = int(kwargs.get("depth", 4))
    smallest, halo, multiple = smallest_side(kwargs), halo_pixels(kwargs), 2 ** depth
    shape = check_test_shape((2, smallest, smallest) if shape is None else shape, depth, flags["shape"], smallest)
    if name is not None:
        check_package_name(name, flags["name"])
    task = checkpoint_task(data)
    classes = (list(class_names(task).values()) if is_foreground_task(task) else
               CLASS_NAMES.get(kwargs["out_channels"], [f"class{i + 1}" for i in range(kwargs["out_channels"])]))
    net = ProbabilityUNet(**kwargs)
    net.unet.load_state_dict(model.state_dict())
    net.eval()

    twin = make_volume("fibsem", tuple(shape), seed=seed).image.astype(np.float32)  # 0 .. 255
    if normalizer is None:
        image = twin * 16.0 + 1000.0  # float intensities: percentile scaling applies
        norm = Normalizer.from_volume(image)
    else:  # the twin in that volume's range, as the rdf's clip and the library's scaling agree there
        norm = check_normalizer(normalizer)
        lo, hi = norm.limits if norm.limits is not None else (0.0, 255.0)
        image = (lo + twin * np.float32((hi - lo) / 255.0)).astype(np.float32)
    steps = fixed_normalisation(norm)
    probs = predict_probabilities(model, image, normalizer=norm, tile=max(shape[1:]), overlap=0, device="cpu")
    test_in = image[:, None]  # (batch = z, channel, y, x)
    test_out = probs.transpose(1, 0, 2, 3).astype(np.float32)

    zipped = out.suffix.lower() == ".zip"
    work = Path(tempfile.mkdtemp(prefix="emseg-export-"))
    made = _missing_parents(out)
    stage = None
    done = False
    try:
        np.save(work / "test_input.npy", test_in)
        np.save(work / "test_output.npy", test_out)
        torch.save(net.state_dict(), work / "weights.pt")
        with torch.no_grad():
            scripted = _script(net, torch.from_numpy(test_in[:1]))
        scripted.save(str(work / "weights.torchscript.pt"))
        source = work / "unet.py"  # the architecture, standalone: it imports math and torch only
        shutil.copyfile(unet_source.__file__, source)
        _cover(work / "cover.png", image, probs)
        config = data.get("config") or {}
        (work / "README.md").write_text(_model_card(kwargs, classes, config, norm, steps,
                                                    stats_of or "the test input (a synthetic twin)"))

        size = m.ParameterizedSize(min=smallest, step=multiple)
        axes_in = [m.BatchAxis(), m.ChannelAxis(channel_names=[m.Identifier("raw")]),
                   m.SpaceInputAxis(id=m.AxisId("y"), size=size), m.SpaceInputAxis(id=m.AxisId("x"), size=size)]
        preprocessing = [
            m.ScaleLinearDescr(kwargs=m.ScaleLinearKwargs(**steps["unit"])),
            m.ClipDescr(kwargs=m.ClipKwargs(min=0.0, max=1.0)),
            m.ScaleLinearDescr(kwargs=m.ScaleLinearKwargs(**steps["standardise"])),
        ]
        inputs = [m.InputTensorDescr(id=m.TensorId("raw"), axes=axes_in,
                                     test_tensor=m.FileDescr(source=work / "test_input.npy"),
                                     data=m.IntervalOrRatioDataDescr(type="float32"),
                                     preprocessing=preprocessing,
                                     description="EM slices (batch = z); normalised with fixed statistics "
                                                 "(see the model card)")]
        axes_out = [m.BatchAxis(), m.ChannelAxis(channel_names=[m.Identifier(c) for c in classes])] + [
            m.SpaceOutputAxisWithHalo(id=m.AxisId(a), halo=halo,
                                      size=m.SizeReference(tensor_id=m.TensorId("raw"), axis_id=m.AxisId(a)))
            for a in ("y", "x")]
        outputs = [m.OutputTensorDescr(id=m.TensorId("probabilities"), axes=axes_out,
                                       test_tensor=m.FileDescr(source=work / "test_output.npy"),
                                       data=m.IntervalOrRatioDataDescr(type="float32"),
                                       description="class probabilities (softmax); codes = argmax + 1")]
        torch_version = torch.__version__.split("+")[0]
        weights = m.WeightsDescr(
            pytorch_state_dict=m.PytorchStateDictWeightsDescr(
                source=work / "weights.pt", pytorch_version=m.Version(torch_version),
                architecture=m.ArchitectureFromFileDescr(source=source, sha256=_sha256(source),
                                                         callable=m.Identifier("ProbabilityUNet"),
                                                         kwargs=kwargs)),
            torchscript=m.TorchscriptWeightsDescr(source=work / "weights.torchscript.pt",
                                                  pytorch_version=m.Version(torch_version),
                                                  parent="pytorch_state_dict"))
        with spec.validation_context.ValidationContext(perform_io_checks=False):
            descr = m.ModelDescr(
                name=name or f"emseg-tutorial U-Net ({task})",
                description=(f"2D U-Net segmenting {', '.join(classes)} in electron microscopy volumes, trained "
                             f"with class-imbalance-aware loss weights (Roy & Chakraborty 2020); "
                             f"normalised with one volume's fixed statistics (see the model card)."),
                authors=[m.Author(name="emseg-tutorial developers")],
                cite=[m.CiteEntry(text=PAPER, doi=m.Doi(PAPER_DOI), url=m.HttpUrl(PAPER_URL)),
                      m.CiteEntry(text="emseg-tutorial: Class-imbalanced semantic segmentation of 3D electron "
                                       "microscopy and unsupervised domain adaptation, a Jupyter Book tutorial "
                                       "and its library", url=m.HttpUrl(PACKAGE_URL))],
                license=m.LicenseId("BSD-3-Clause"),
                documentation={"source": work / "README.md"},
                covers=[{"source": work / "cover.png"}],
                tags=["electron-microscopy", "segmentation", "unet", "2d", "pytorch", "membranes",
                      "mitochondria", "domain-adaptation"],
                git_repo=m.HttpUrl(PACKAGE_URL),
                inputs=inputs, outputs=outputs, weights=weights,
                config={"bioimageio": {"reproducibility_tolerance": [
                            {"absolute_tolerance": TOLERANCE, "relative_tolerance": TOLERANCE,
                             "mismatched_elements_per_million": 0}]},
                        "emseg_tutorial": {"arch": "unet2d", "model": kwargs, "halo": halo, "normalisation": {
                            "limits": None if norm.limits is None else list(norm.limits), "mean": norm.mean,
                            "std": norm.std, "of": stats_of or "the test input"}}},
            )
        # built and validated in a hidden folder beside the target, renamed into place only then
        out.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent))
        built = stage / out.name
        if zipped:
            spec.save_bioimageio_package(descr, output_path=built)
        else:
            spec.save_bioimageio_package_as_folder(descr, output_path=built)
        try:
            validate_package(built if zipped else built / "rdf.yaml")
        except ValueError as err:
            reason = str(err).split(": ", 1)[-1]
            raise ValueError(f"{out}: {reason}; nothing was written (a package already there is unchanged)") from None
        _commit(built, out)
        done = True
        return out if zipped else out / "rdf.yaml"
    except Exception as err:
        if isinstance(err, ValueError) and "\n" not in str(err):
            raise
        text = _reason(err)
        if stage is not None:
            text = text.replace(os.fspath(stage / out.name), os.fspath(out))
        raise ValueError(f"{out}: export failed ({err.__class__.__name__}: {text})") from err
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
        for folder in made if not done else ():  # folders this export made for a package it did not write
            try:
                folder.rmdir()
            except OSError:
                break


def validate_package(rdf: str | os.PathLike) -> str:
    """Validate an exported package offline; returns the status (``"valid-format"``).

    The format is checked (every field, the files present, their sha256) with
    ``perform_io_checks=False``: nothing is downloaded. What that leaves out is running the
    model on its test tensors in the bioimage.io way (``bioimageio.core``, not a dependency
    here); the tests of this library do that part with plain torch.

    Raises
    ------
    ValueError
        The package is not valid; the first error in one line.
    """
    spec = import_spec()
    rdf = Path(rdf)
    with spec.validation_context.ValidationContext(perform_io_checks=False):
        descr = spec.load_description(rdf, perform_io_checks=False)
    summary = descr.validation_summary
    if summary.status == "failed":
        errors = [f"{'.'.join(str(p) for p in e.loc)}: {e.msg}" for d in summary.details for e in d.errors]
        raise ValueError(f"{rdf}: not a valid bioimage.io package: {errors[0] if errors else summary.status}")
    return summary.status
