"""Every exception of the data layer, in one module that imports nothing else of ``data``.

* :class:`VolumeError`: a volume file is missing, unreadable or holds data that cannot be used
  (an :class:`~emseg_tutorial._validate.InputError`, hence a ``ValueError``); the one-line
  message starts with the file.
* :class:`DataSourceError`: the requested data source cannot provide a volume (a
  ``RuntimeError``), with :class:`DownloadError` (a dataset file is neither cached nor
  downloadable) and :class:`ChecksumError` (a file has the wrong SHA256) below it.

Readers (:mod:`.readers`), writers (:mod:`.writers`), the registry, the real-data loaders and the source switch all raise
these, so none of them has to import another to name an error.

Examples
--------
>>> issubclass(VolumeError, ValueError), issubclass(ChecksumError, DataSourceError)
(True, True)
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from .._validate import InputError

__all__ = ["VolumeError", "DataSourceError", "DownloadError", "ChecksumError", "as_volume_error"]


class VolumeError(InputError):
    """A volume file is missing, unreadable or holds data that cannot be used (names the file)."""


class DataSourceError(RuntimeError):
    """The requested data source cannot provide the volume."""


class DownloadError(DataSourceError):
    """A dataset file is not in the cache and could not be downloaded (one-line message).

    A :class:`DataSourceError`, hence a ``RuntimeError``.
    """


class ChecksumError(DownloadError):
    """A dataset file does not have the SHA256 checksum the registry expects (it was deleted)."""


@contextmanager
def as_volume_error() -> Iterator[None]:
    """Turn the :class:`~emseg_tutorial._validate.InputError` of a shared check into a VolumeError.

    The readers run the core's array checks inside it, so a bad file is a VolumeError whose
    message starts with the file.

    Examples
    --------
    >>> with as_volume_error():
    ...     raise InputError("img.tif: is empty")
    Traceback (most recent call last):
    ...
    emseg_tutorial.data.errors.VolumeError: img.tif: is empty
    """
    try:
        yield
    except VolumeError:
        raise
    except InputError as err:
        raise VolumeError(str(err)) from None
