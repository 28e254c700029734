"""Volumes: synthetic twins, volume files, normalisation, public datasets and the data-source switch."""

from .errors import ChecksumError, DataSourceError, DownloadError, VolumeError
from .readers import open_volume, read_image, read_labels, read_volume
from .writers import open_writers, write_volume
from .normalize import Normalizer
from .registry import DATASETS, fetch
from .sources import describe_source, load_domain, load_pair
from .synthetic import DOMAINS, make_volume
from .volume import Volume

__all__ = ["Volume", "make_volume", "DOMAINS", "read_volume", "write_volume", "read_image",
           "read_labels", "VolumeError", "DataSourceError", "load_domain", "load_pair", "describe_source",
           "DATASETS", "fetch", "DownloadError", "ChecksumError", "open_volume", "open_writers", "Normalizer"]
