"""napari-deepsim: learned deformable image registration in napari.

The plugin's contributions are declared in ``napari.yaml``; heavy modules (torch)
are imported only when a contribution is used, so napari starts fast.
"""

from src_training.engine.public import __version__

__all__ = ["__version__"]
