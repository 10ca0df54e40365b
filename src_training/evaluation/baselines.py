"""Classical registration baselines: elastix B-spline, what napari users run today.

itk-elastix is an optional dependency (``pip install 'napari-deepsim[baselines]'``),
imported only when a baseline is built. Elastix orders physical coordinates
``(x, y[, z])``, the reverse of array axes; images are passed with spacing 1 and origin
0, so its deformation field ``d(p) = T(p) - p`` is this project's displacement with the
components reversed: ``u[i] = d[ndim - 1 - i]``, and pull-back warping
``warped(p) = moving(p + u(p))`` is what elastix's resampler does too.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from importlib.metadata import version
from tempfile import TemporaryDirectory
from types import ModuleType
from typing import Any

import numpy as np
import torch

from src_training.evaluation.scoring import Registered

MISSING_ELASTIX = "itk-elastix is not installed; pip install 'napari-deepsim[baselines]'"


def _itk() -> ModuleType:
    try:
        import itk
    except ImportError:
        raise ValueError(MISSING_ELASTIX) from None
    return itk


def elastix_version() -> str:
    """Return the installed itk-elastix version.

    Returns
    -------
    str
        E.g. ``"0.25.4"``.
    """
    _itk()
    return version("itk-elastix")


MUTUAL_INFORMATION = "AdvancedMattesMutualInformation"
MULTIMODAL_STAGES = ("affine", "bspline")
"""The ``elastix-mi`` baseline: an affine stage, then the B-spline, both on mutual information."""


class ElastixBSpline:
    """Elastix with its default parameter maps, as a registration method.

    The default is one stage, elastix's default B-spline map (mutual information plus a
    bending-energy penalty, 4 resolutions). ``stages=MULTIMODAL_STAGES`` runs its default
    affine map first, with the metric of every stage set to mutual information
    (``AdvancedMattesMutualInformation``), the choice for images of two modalities whose
    intensities are unrelated (MR and ultrasound): the B-spline alone cannot undo a
    global offset or scaling between the two.

    Calling it registers one pair (see :data:`src_training.evaluation.scoring.Method`): the
    fixed and moving images (channels averaged) go to elastix as float32, the moving
    labels are resampled with the found transform by transformix with nearest-neighbour
    interpolation (value 0 outside the image), and the transform's deformation field is
    returned in this project's convention. ``seconds`` is the wall time of the elastix
    registration alone. Elastix logs nothing to the console.

    Parameters
    ----------
    stages : sequence of str
        elastix default maps run one after the other: ``"bspline"``, or
        :data:`MULTIMODAL_STAGES`.

    Raises
    ------
    ValueError
        If itk-elastix is not installed.
    """

    def __init__(self, stages: Sequence[str] = ("bspline",)) -> None:
        self.itk = _itk()
        self.parameters = self.itk.ParameterObject.New()
        for stage in stages:
            parameters = self.parameters.GetDefaultParameterMap(stage)
            if len(stages) > 1:
                metric = parameters["Metric"]
                parameters["Metric"] = (MUTUAL_INFORMATION, *metric[1:])
            self.parameters.AddParameterMap(parameters)

    def _image(self, array: np.ndarray) -> Any:
        return self.itk.image_view_from_array(np.ascontiguousarray(array, dtype=np.float32))

    def __call__(
        self, moving: np.ndarray, fixed: np.ndarray, moving_labels: np.ndarray
    ) -> Registered:
        """Register ``moving`` (``(C, *spatial)``) onto ``fixed`` and warp ``moving_labels``."""
        itk = self.itk
        moving_image = self._image(moving.mean(axis=0))
        start = time.perf_counter()
        _, transform = itk.elastix_registration_method(
            self._image(fixed.mean(axis=0)),
            moving_image,
            parameter_object=self.parameters,
            log_to_console=False,
        )
        seconds = time.perf_counter() - start
        # transformix writes deformationField.nii into its output folder (else the cwd)
        with TemporaryDirectory(prefix="deepsim-transformix-") as scratch:
            field = itk.transformix_deformation_field(
                moving_image,
                transform_parameter_object=transform,
                output_directory=scratch,
                log_to_console=False,
            )
            # (*spatial, ndim) in (x, y[, z]) order -> (ndim, *spatial) along array axes
            disp = np.moveaxis(itk.array_from_image(field)[..., ::-1], -1, 0)
        transform.SetParameter("FinalBSplineInterpolationOrder", "0")
        transform.SetParameter("ResampleInterpolator", "FinalNearestNeighborInterpolator")
        warped = itk.transformix_filter(
            self._image(moving_labels), transform_parameter_object=transform, log_to_console=False
        )
        labels = np.rint(itk.array_from_image(warped)).astype(moving_labels.dtype)
        return Registered(
            torch.from_numpy(np.ascontiguousarray(disp, np.float32))[None], seconds, labels
        )
