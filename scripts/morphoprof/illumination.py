"""Illumination correction, CellProfiler "Regular" style, then plate-wide percentile normalization.

The illumination function of a plate and channel is the mean of its fields, less the camera's
dark level, heavily smoothed, then divided by its robust minimum so that it is >= 1; corrected
images are the raw images, less the dark level, divided by it. The dark level (the counts a
camera reads without light) is not illuminated: left in, it flattens the function. The mean is
accumulated one field at a time, so memory does not grow with the number of fields.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage as ndi


def running_mean(images: Iterable[np.ndarray]) -> np.ndarray:
    """Pixel-wise mean of a stream of equally shaped images (float64 accumulator)."""
    total, count = None, 0
    for image in images:
        if total is None:
            total = np.zeros(image.shape, np.float64)
        elif image.shape != total.shape:
            raise ValueError(f"image of shape {image.shape} among images of shape {total.shape}")
        total += image
        count += 1
    if count == 0:
        raise ValueError("no images to average")
    return (total / count).astype(np.float32)


def illumination_function(
    mean_image: np.ndarray, smoothing: float = 0.25, robust_percentile: float = 2.0
) -> np.ndarray:
    """Smooth the mean image and rescale it so that its robust minimum is 1.

    Parameters
    ----------
    mean_image : numpy.ndarray
        The mean of a plate's fields in one channel (:func:`running_mean`).
    smoothing : float
        The Gaussian sigma, as a fraction of the image's shorter side.
    robust_percentile : float
        The percentile of the smoothed image taken as its minimum.

    Returns
    -------
    numpy.ndarray
        The illumination function (float32, >= 1): corrected images are raw images divided by it.

    Examples
    --------
    >>> import numpy as np
    >>> rows, _ = np.mgrid[:64, :64]
    >>> function = illumination_function(100.0 + rows)  # brighter towards the bottom
    >>> float(function.min()), round(float(function.max()), 2)
    (1.0, 1.47)
    """
    sigma = max(smoothing * min(mean_image.shape), 1.0)
    smooth = ndi.gaussian_filter(mean_image.astype(np.float64), sigma, mode="nearest")
    floor = np.percentile(smooth, robust_percentile)
    if floor <= 0:
        raise ValueError("the smoothed mean image is not positive: cannot compute an illumination function")
    return np.maximum(smooth / floor, 1.0).astype(np.float32)


def check_dark_level(mean_image: np.ndarray, dark_level: float, where: str) -> None:
    """A dark level at or above a plate's darkest mean pixel would leave no light to correct: the
    config names the wrong camera, or images already offset-corrected (8-bit ones, say)."""
    from .metadata import InputError

    darkest = float(mean_image.min())
    if dark_level >= darkest:
        raise InputError(
            f"config illumination.dark_level: {dark_level:g} counts, but the darkest pixel of {where}'s mean field "
            f"is {darkest:.1f}; set your camera's dark level (the mean of a dark frame), or 0"
        )


def subtract_dark(image: np.ndarray, dark_level: float) -> np.ndarray:
    """An image's counts above the camera's dark level, as float32 (none below 0)."""
    return np.maximum(image.astype(np.float32) - np.float32(dark_level), 0)


def coefficient_of_variation(image: np.ndarray) -> float:
    """Std over mean: how uneven an image (e.g. a plate's mean field) is."""
    return float(np.std(image) / np.mean(image))


def correct_plate(
    fields: pd.DataFrame,
    channels: list[str],
    functions: np.ndarray | None,
    low: float,
    high: float,
    folder: str | Path,
    progress: Callable[[Iterable, str], Iterable] = lambda rows, _: rows,
    dark_level: float = 0.0,
) -> list[tuple[float, float]]:
    """Write each field, less ``dark_level``, divided by its channel's illumination function
    (``functions``, one plane per channel; None leaves fields as they are), then scaled so that
    the plate's ``low`` and ``high`` percentiles of each channel map to 0 and 1, as a
    (channels, H, W) uint16 TIFF in ``folder``.

    Two passes over the plate: the first samples corrected pixels for the percentiles, the second
    writes. ``progress(rows, "percentiles" or "correct")`` wraps each pass's rows (in a tqdm, say).
    Returns each channel's bounds."""
    from . import images
    from .metadata import FIELD

    def corrected(row) -> np.ndarray:
        stack = images.read_field(row, channels)
        return stack if functions is None else subtract_dark(stack, dark_level) / functions

    bounds = images.plate_bounds((corrected(row) for _, row in progress(fields.iterrows(), "percentiles")), low, high)
    for _, row in progress(fields.iterrows(), "correct"):
        stack = corrected(row)
        scaled = np.stack([images.to_uint16(images.rescale(plane, *b)) for plane, b in zip(stack, bounds)])
        images.write_tiff(images.corrected_path(folder, row[FIELD]), scaled)
    return bounds
