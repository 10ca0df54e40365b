"""The layers of a stack registered into a store: read lazily from the store, never whole.

Each result layer is a dask array over one of the store's arrays (one chunk per frame),
placed like the registered layer, so napari reads only the frame on screen. A new run of
the same layer replaces the layers of the last one. Frames a stopped run did not reach
hold zeros in the store; the layer names say which frames were written.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from napari_deepsim._jobs.bigstack import frame_ranges
from napari_deepsim._layers.choices import SOURCE

if TYPE_CHECKING:
    import napari
    from napari.layers import Image

    from napari_deepsim._jobs.bigstack import StoreResult


def levels_of(layer: Image) -> list[Any]:
    """Return a layer's arrays from finest to coarsest (one for a single-scale layer)."""
    return list(layer.data) if layer.multiscale else [layer.data]


def store_array(path: str, name: str) -> Any:
    """Return a store's array as a dask array with a name of its own.

    A fresh name per call keeps napari's chunk cache from showing frames of an earlier
    run of the same store (a resumed run rewrites them).

    Parameters
    ----------
    path : str
        The store.
    name : str
        The array inside it (``0``, ``full/0``, ``jacobians/0``).

    Returns
    -------
    dask.array.Array
        The array, read lazily.
    """
    import dask.array as da
    import zarr

    array = zarr.open_group(path, mode="r")[name]
    return da.from_zarr(array, name=f"deepsim-{uuid.uuid4().hex}")


def add_store_layers(
    viewer: napari.Viewer, layer: Image, result: StoreResult
) -> list[Callable[[], Any]]:
    """Plan the result layers of a store: the warped frames, then the Jacobians.

    Parameters
    ----------
    viewer : napari.Viewer
        Receives the layers.
    layer : Image
        The registered stack layer (its placement and colours are copied).
    result : StoreResult
        What the store holds.

    Returns
    -------
    list of callable
        One step per layer (the first removes the last run's layers of ``layer``).
    """
    key = f"store:{layer.unique_id}"
    done = "" if len(result.done) == result.frames else f" (frames {frame_ranges(result.done)})"
    path = str(result.path)
    finest = levels_of(layer)[0].shape
    full = bool(result.full)

    def placed(data: Any) -> dict[str, Any]:
        """Scale an array of a coarser level so that it covers the layer's extent."""
        factors = [f / n for f, n in zip(finest, data.shape, strict=True)]
        scale = [s * f for s, f in zip(layer.scale, factors, strict=True)]
        return {"scale": scale, "translate": tuple(layer.translate)}

    def warped() -> None:
        for old in [lay for lay in viewer.layers if lay.metadata.get(SOURCE) == key]:
            viewer.layers.remove(old)
        data = store_array(path, "full/0" if full else "0")[:, 0]
        style = {"colormap": layer.colormap.name} if full else {}
        name = f"{layer.name} registered{done}"
        viewer.add_image(data, name=name, metadata={SOURCE: key}, **placed(data), **style)

    def jacobian() -> None:
        data = store_array(path, "jacobians/0")
        viewer.add_image(
            data,
            name=f"{layer.name} Jacobian{done}",
            metadata={SOURCE: key},
            colormap="PiYG",
            contrast_limits=(0.0, 2.0),
            visible=False,
            **placed(data),
        )

    return [warped, jacobian]
