"""Prediction spread over a dask cluster: slabs of slices as tasks, zarr in and out.

``python -m emseg_tutorial predict --cluster local:N`` (a :class:`dask.distributed.LocalCluster`
of N worker processes on this machine) or ``--cluster tcp://HOST:PORT`` (a running dask
scheduler: on an HPC cluster through dask-jobqueue, on GPUs through dask-cuda) runs
:func:`predict_distributed`:

1. **Statistics, once.** The intensity limits come from a bounded sample read by the client
   (:func:`~emseg_tutorial.data.normalize.intensity_limits`); the per-slice moments of the
   [0, 1] values are computed by the workers, one task per slab, and merged on the client
   in z order (:func:`~emseg_tutorial.data.normalize.merge_moments`): the very
   :class:`~emseg_tutorial.data.normalize.Normalizer` single-process prediction uses.
2. **Prediction.** The weights are sent to every worker once (``scatter(broadcast=True)``)
   with the normaliser; each task reads its slab of slices, predicts it with
   :func:`~emseg_tutorial.predict.tiled.predict_slices` (slabs are whole multiples of the
   single-process block, so the batches are the same and so are the numbers) and writes its
   chunks of the zarr outputs (:class:`~emseg_tutorial.data.zarr_format.ZarrOutput`).
   No two tasks share a chunk (chunks are one slice deep).
3. **Interruption.** Ctrl-C or SIGTERM on the client closes the cluster; with ``local:N``
   the temporary chunk files of workers stopped mid-write are then removed
   (:func:`remove_partial_chunks`); the chunks are unmarked, so a resumed run writes them.
4. **Resume.** The outputs carry the job key of
   :func:`~emseg_tutorial.predict.stream.job_key`; slabs written by an earlier run of the
   same job are not submitted again.

Workers must see the input and output paths (one machine, or a shared file system).

Examples
--------
>>> parse_cluster("local:2", cores=4), parse_cluster("tcp://10.0.0.5:8786")
(('local', 2), ('address', 'tcp://10.0.0.5:8786'))
"""

from __future__ import annotations

import logging
import math
import os
import re
import signal
import threading
from pathlib import Path

import numpy as np
import torch

from ..data.outputs import check_outputs
from ..data.readers import open_volume
from ..data.specs import split_spec
from ..data.normalize import SAMPLE_BUDGET, intensity_limits, merge_moments, slab_moments
from ..data.zarr_format import ZarrOutput, is_zarr, split_zarr, staging_folder
from ..devices import pick_device, usable_cpus
from ..models import arch_of, build, check_model
from ..progress import progress as progress_bar
from .stream import StreamedPrediction, job_key
from .tiled import check_tiling, predict_slices, prepare_model, probabilities_to_codes, slices_per_step

EXTRA_HINT = "pip install 'emseg-tutorial[scale]'"
#: seconds to wait for a scheduler to answer
CONNECT_TIMEOUT = 10.0
_MODELS: dict[str, torch.nn.Module] = {}  # per worker process: job key -> prepared network


def import_distributed():
    """The ``dask.distributed`` module, else a one-line ValueError naming the ``scale`` extra."""
    try:
        import distributed
    except ImportError:
        raise ValueError(f"--cluster needs dask.distributed; install it with {EXTRA_HINT} "
                         f"(or 'pip install \"dask[distributed]\"')") from None
    return distributed


def parse_cluster(text: str, cores: int | None = None) -> tuple[str, int | str]:
    """``"local:N"`` -> ``("local", N)``; ``"tcp://HOST:PORT"`` (any ``scheme://``) -> ``("address", text)``.

    ``N`` is at most ``cores`` (default :func:`~emseg_tutorial.devices.usable_cpus`): local
    workers are processes of this machine, each on a core of its own.
    """
    if text.startswith("local:"):
        try:
            n = int(text.split(":", 1)[1])
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"--cluster {text}: local:N needs a number of workers N >= 1")
        cores = usable_cpus() if cores is None else cores
        if n > cores:
            raise ValueError(f"--cluster {text}: local:N is at most {cores}, the CPU cores this process may use "
                             f"(one worker process per core); for more workers give a scheduler address")
        return "local", n
    if "://" in text and text.split("://", 1)[1]:
        return "address", text
    raise ValueError(f"--cluster {text}: expected local:N or a scheduler address such as tcp://HOST:8786")


def connect(cluster: str, timeout: float = CONNECT_TIMEOUT, processes: bool = True):
    """A :class:`distributed.Client` of ``cluster`` (see :func:`parse_cluster`) and the
    LocalCluster it started (None for an address); close both when done.

    Raises
    ------
    ValueError
        One line when no scheduler answers at the address within ``timeout`` seconds.
    """
    distributed = import_distributed()
    kind, value = parse_cluster(cluster)
    if kind == "local":  # worker processes run dask_setup below (a dask preload)
        extra = {"preload": [__name__]} if processes else {}
        local = distributed.LocalCluster(n_workers=value, threads_per_worker=1, processes=processes,
                                         dashboard_address=None, silence_logs=logging.ERROR, **extra)
        return distributed.Client(local, set_as_default=False), local
    try:
        return distributed.Client(value, timeout=timeout, set_as_default=False), None
    except (OSError, TimeoutError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else err.__class__.__name__
        raise ValueError(f"--cluster {value}: no dask scheduler answered within {timeout:g} s ({reason[:120]})") \
            from None


# --------------------------------------------------------------------------- tasks (run on workers)


def dask_setup(worker) -> None:
    """Run by each local worker process as it starts (a dask preload of this module).

    Ctrl-C at a terminal reaches the whole process group; the client handles it (it closes the
    cluster), so a worker process ignores SIGINT instead of printing its own traceback.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)



def _moments_task(z0: int, z1: int, image: str, limits) -> list:
    with open_volume(image) as volume:
        return slab_moments(volume, z0, z1, limits)


def _worker_model(key: str, payload: dict, device: str) -> torch.nn.Module:
    if key not in _MODELS:
        model = build(payload["arch"], payload["model"])
        model.load_state_dict(payload["state"])
        model.checkpoint = payload.get("name")  # a message on the worker names the file, as on the client
        _MODELS.clear()
        _MODELS[key] = prepare_model(model, torch.device(device))
    return _MODELS[key]


def _predict_task(z0: int, z1: int, job: dict, payload: dict) -> tuple[int, int]:
    """Predict slices ``z0:z1`` and write them; ``job`` holds the settings (plain names, since
    ``Client.map`` keeps ``key`` and ``batch_size`` for itself)."""
    image, outputs, key, norm, device = job["image"], job["outputs"], job["job_key"], job["norm"], job["device"]
    tile, overlap, batch_size, threads = job["tile"], job["overlap"], job["batch"], job["threads"]
    if threads:
        torch.set_num_threads(threads)
    model = _worker_model(key, payload, device)
    with open_volume(image) as volume:
        block = volume.read(z0, z1)
    probs = predict_slices(model, torch.from_numpy(norm(block)), tile=tile, overlap=overlap,
                           batch_size=batch_size, device=torch.device(device))
    for spec, channels in outputs:
        out = ZarrOutput.attach(spec)
        out.write_at(probs.astype(np.float32) if channels else probabilities_to_codes(probs), z0)
    return z0, z1


# --------------------------------------------------------------------------- client


def predict_distributed(model: torch.nn.Module, image: str | os.PathLike, out: str | os.PathLike | None = None,
                        probabilities: str | os.PathLike | None = None, *, cluster: str = "local:2",
                        tile: int = 512, overlap: int = 32, batch_size: int = 4, slab: int | None = None,
                        device: str = "cpu", timeout: float = CONNECT_TIMEOUT, processes: bool = True,
                        progress: bool = False, sample_budget: int = SAMPLE_BUDGET,
                        model_name: str | None = None) -> StreamedPrediction:
    """Predict ``image`` on a dask cluster into zarr outputs (module docstring).

    Parameters
    ----------
    model : torch.nn.Module
        A network of this library (it is rebuilt on the workers from its arch and weights).
    image : str or path
        Input spec every worker can open (zarr, tif, ``FILE.h5:dataset``, ``.npy``, folder).
    out, probabilities : str or path
        ``.zarr`` outputs (label codes; float32 ``(C, Z, Y, X)`` probabilities); at least one.
    cluster : str
        ``local:N`` or a scheduler address (``tcp://HOST:PORT``).
    tile, overlap, batch_size
        As in :func:`~emseg_tutorial.predict.predict_file`.
    slab : int, optional
        Slices per task, rounded up to a multiple of the single-process block (default about 8).
    device : str
        Device the workers predict on (``"cuda"`` on dask-cuda workers).
    timeout : float
        Seconds to wait for a scheduler at an address.
    processes : bool
        ``local:N`` workers as processes (True; each gets ``cores / N`` torch threads) or
        threads of this process (False: quicker to start, for tests).
    model_name : str, optional
        How messages name the model (default: its checkpoint file). The model, the outputs,
        the tiling and the input are checked on the client before any cluster starts.

    Returns
    -------
    StreamedPrediction
        As :func:`~emseg_tutorial.predict.predict_file`; ``slices_per_read`` is the slab.
    """
    outputs = [(spec, channels) for spec, channels in ((out, False), (probabilities, True)) if spec is not None]
    if not outputs:
        raise ValueError("give at least one output: out (label codes) or probabilities")
    check_outputs({"out": out, "probabilities": probabilities}, {"image": image})  # none is, holds or sits in it
    name = model_name or getattr(model, "checkpoint", None) or "model"
    check_model(model, name)  # on the client, before any cluster starts: no worker traceback, no zarr
    if parse_cluster(cluster)[0] == "local":
        pick_device(device)  # the workers run here: a device this machine lacks is refused once, up front
    for spec, _ in outputs:
        if not is_zarr(split_spec(spec)[0]):
            raise ValueError(f"{spec}: prediction on a cluster writes zarr (PRED.zarr), each worker its own chunks")
    check_tiling(tile, overlap, batch_size)
    image = os.fspath(Path(image).resolve()) if ":" not in os.fspath(image) else os.fspath(image)
    payload = {"arch": arch_of(model), "model": dict(model.init_kwargs), "name": name,
               "state": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    classes = int(model.init_kwargs["out_channels"])
    finished = False
    with open_volume(image) as volume:
        shape, voxel = volume.shape, volume.voxel_size
        limits = intensity_limits(volume, sample_budget)
        nz = shape[0]
        step = slices_per_step(shape, tile, batch_size)
        slab = step * math.ceil((slab or 8) / step)
        slabs = [(z0, min(z0 + slab, nz)) for z0 in range(0, nz, slab)]
        client, local = connect(cluster, timeout, processes)
        try:
            moments = client.gather(client.map(_moments_task, *zip(*slabs), image=image, limits=limits,
                                               pure=False))
            norm = merge_moments([m for part in moments for m in part], limits)
            key = job_key(model, volume, norm, tile=tile, overlap=overlap)
            writers = [ZarrOutput.create(spec, (classes,) + shape if channels else shape,
                                         np.float32 if channels else np.uint8, voxel, key, labels=not channels)
                       for spec, channels in outputs]
            pending = [(z0, z1) for z0, z1 in slabs if not all(w.is_written(z0, z1) for w in writers)]
            threads = max(1, usable_cpus() // len(client.scheduler_info()["workers"] or [0])) \
                if local is not None and processes else None
            if pending:
                shipped = client.scatter(payload, broadcast=True)
                job = {"image": image, "outputs": [(os.fspath(s), c) for s, c in outputs], "job_key": key,
                       "norm": norm, "tile": tile, "overlap": overlap, "batch": batch_size, "device": device,
                       "threads": threads}
                futures = client.map(_predict_task, *zip(*pending), job=job, payload=shipped, pure=False)
                for future in progress_bar(futures, desc="predict", unit="slab", enabled=progress):
                    future.result()  # in z order; a failed task raises its error here
            for w in writers:
                w.finish()
            finished = True
        finally:  # any exit, Ctrl-C and SIGTERM (Interrupted) included
            client.close()
            if local is not None:
                local.close()
                if not finished:  # no worker is left to write: remove the chunks killed workers left half done
                    remove_partial_chunks([spec for spec, _ in outputs])
    return StreamedPrediction(shape, classes, norm, slab)


#: zarr's temporary chunk files: ``NAME.<uuid4 hex>.partial`` beside the chunk being written
_PARTIAL = re.compile(r"\.[0-9a-f]{32}\.partial$")


def remove_partial_chunks(specs) -> int:
    """Remove the temporary chunk files (``*.<hex>.partial``) that workers stopped mid-write left
    in the zarr outputs ``specs``; returns how many. Call only when no worker writes them any more.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp()) / "p.zarr"
    >>> (folder / "0").mkdir(parents=True)
    >>> _ = (folder / "0" / f"3.{'a' * 32}.partial").write_bytes(b"half")
    >>> remove_partial_chunks([folder]), sorted(p.name for p in folder.rglob("*"))
    (1, ['0'])
    """
    removed = 0
    for spec in specs:
        store, inner = split_zarr(spec)
        target = store / inner if inner else store
        for root in dict.fromkeys((store, staging_folder(target))):  # an image replacing another is staged beside it
            for path in root.rglob("*.partial") if root.is_dir() else ():
                if _PARTIAL.search(path.name) and path.is_file():
                    path.unlink(missing_ok=True)
                    removed += 1
    return removed
