"""Volumes: synthetic twins, file I/O, streamed I/O, public datasets and the data-source switch."""

from .io import VolumeError, read_image, read_labels, read_volume, write_volume
from .registry import DATASETS, ChecksumError, DownloadError, fetch
from .sources import DataSourceError, describe_source, load_domain, load_pair
from .stream import open_volume, open_writers
from .synthetic import DOMAINS, make_volume
from .volume import Volume

__all__ = ["Volume", "make_volume", "DOMAINS", "read_volume", "write_volume", "read_image",
           "read_labels", "VolumeError", "DataSourceError", "load_domain", "load_pair", "describe_source",
           "DATASETS", "fetch", "DownloadError", "ChecksumError", "open_volume", "open_writers"]
