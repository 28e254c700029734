"""Every exception of the data layer, in one module that imports nothing else of ``data``.

* :class:`VolumeError`: a volume file is missing, unreadable or holds data that cannot be used
  (an :class:`~emseg_tutorial._validate.InputError`, hence a ``ValueError``); the one-line
  message starts with the file.
* :class:`DataSourceError`: the requested data source cannot provide a volume (a
  ``RuntimeError``), with :class:`DownloadError` (a dataset file is neither cached nor
  downloadable) and :class:`ChecksumError` (a file has the wrong SHA256) below it.

Readers (:mod:`.formats`), the registry, the real-data loaders and the source switch all raise
these, so none of them has to import another to name an error.

Examples
--------
>>> issubclass(VolumeError, ValueError), issubclass(ChecksumError, DataSourceError)
(True, True)
"""

from __future__ import annotations

from .._validate import InputError

__all__ = ["VolumeError", "DataSourceError", "DownloadError", "ChecksumError"]


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
