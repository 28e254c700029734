"""Volumes: synthetic twins, file I/O and the data-source switch."""

from .io import VolumeError, read_image, read_labels, read_volume, write_volume
from .sources import DataSourceError, load_domain, load_pair
from .synthetic import DOMAINS, make_volume
from .volume import Volume

__all__ = ["Volume", "make_volume", "DOMAINS", "read_volume", "write_volume", "read_image",
           "read_labels", "VolumeError", "DataSourceError", "load_domain", "load_pair"]
