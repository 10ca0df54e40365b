"""Headless core of napari-deepsim: spatial transforms, networks, metrics and training.

Importing this package is cheap and loads no GUI toolkit; submodules are imported
on use (``from src_training import spatial``).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("napari-deepsim")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
