"""Atlas registration data: every image of a dataset paired with one atlas image."""

from __future__ import annotations

import numpy as np

from src_training.data.datasets import Dataset, load_image_file, load_label_file
from src_training.data.normalise import resample
from src_training.data.pairs import atlas_pairs


def with_atlas(
    data: Dataset, atlas_path: str | None, atlas_labels_path: str | None, data_name: str
) -> Dataset:
    """Append an atlas (resampled onto the data grid) and pair every image with it.

    Parameters
    ----------
    data : Dataset
        The images to register.
    atlas_path : str or None
        The atlas image; None returns ``data`` unchanged.
    atlas_labels_path : str or None
        The atlas's label map, needed when the data has labels.
    data_name : str
        How messages name the data.

    Returns
    -------
    Dataset
        The data with the atlas as its last image and pairs ``(image, atlas)``.
    """
    if not atlas_path:
        if atlas_labels_path:
            raise ValueError("--atlas-labels needs --atlas")
        return data
    atlas, _ = load_image_file(atlas_path)
    shape = data.images.shape[2:]
    if atlas.ndim - 1 != data.ndim:
        raise ValueError(
            f"the atlas {atlas_path} is {atlas.ndim - 1}D but the data is {data.ndim}D"
        )
    atlas = np.stack([resample(c, shape, order=1) for c in atlas])[None]
    labels = None
    if data.labels is not None:
        if not atlas_labels_path:
            raise ValueError(
                f"{data_name} has labels but the atlas has none: pass --atlas-labels FILE, "
                "or --labels none"
            )
        raw = resample(load_label_file(atlas_labels_path), shape, order=0)
        unknown = sorted(set(np.unique(raw).tolist()) - set(data.class_values))
        if unknown:
            raise ValueError(
                f"the atlas labels {atlas_labels_path} hold values {unknown[:5]} that the "
                f"data's labels never use; relabel the atlas with the data's values "
                f"{data.class_values}"
            )
        ids = np.searchsorted(np.array(data.class_values), raw)
        labels = np.concatenate([data.labels, ids[None].astype(data.labels.dtype)])
    n = len(data)
    return Dataset(
        images=np.concatenate([data.images, atlas.astype(np.float32)]),
        labels=labels,
        names=[*data.names, "atlas"],
        class_values=data.class_values,
        pairs=atlas_pairs(n + 1, n),
        source=f"{data.source}; every image to the atlas {atlas_path}",
        spacing=data.spacing,
    )
