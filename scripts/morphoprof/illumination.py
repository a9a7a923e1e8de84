"""Illumination correction, CellProfiler "Regular" style, then plate-wide percentile normalization.

The illumination function of a plate and channel is the mean of its fields, less the camera's
dark level, heavily smoothed, then divided by its robust minimum so that it is >= 1; corrected
images are the raw images, less the dark level, divided by it. The dark level (the counts a
camera reads without light: one number, or the mean of dark frames, pixel by pixel) is not
illuminated: left in, it flattens the function. The mean is
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


def camera_dark(dark_level: float, dark_frames: str, field: str | Path) -> float | np.ndarray:
    """What the camera reads without light: the pixel-wise mean of the TIFF of ``dark_frames``
    (frames taken with the shutter closed, at the screen's exposure and binning) where one is
    named, which also holds the sensor's fixed pattern; otherwise the one number ``dark_level``.
    The frames must have the shape of ``field``, one of the plate's images (its header is read)."""
    if not dark_frames:
        return float(dark_level)
    from .images import image_header, read_frames
    from .metadata import InputError

    frames = read_frames(dark_frames)
    field_shape, _ = image_header(field)
    if frames.shape[1:] != field_shape:
        raise InputError(
            f"config illumination.dark_frames: {dark_frames} holds frames of {frames.shape[1]}x{frames.shape[2]} px, "
            f"the fields are {field_shape[0]}x{field_shape[1]} px"
        )
    return frames.mean(axis=0, dtype=np.float64).astype(np.float32)


def check_dark_level(mean_image: np.ndarray, dark: float | np.ndarray, where: str) -> None:
    """A dark level at or above a plate's mean field, at its darkest pixel (or, for dark frames, at
    any pixel) would leave no light to correct: the config names the wrong camera, or images
    already offset-corrected (8-bit ones, say)."""
    from .metadata import InputError

    if np.ndim(dark) == 0:
        darkest = float(mean_image.min())
        if dark >= darkest:
            raise InputError(
                f"config illumination.dark_level: {dark:g} counts, but the darkest pixel of {where}'s mean field "
                f"is {darkest:.1f}; set your camera's dark level (the mean of a dark frame), or 0"
            )
        return
    unlit = int(np.count_nonzero(dark >= mean_image))
    if unlit:
        raise InputError(
            f"config illumination.dark_frames: the dark frames' mean reaches {where}'s mean field at {unlit} of "
            f"{mean_image.size} pixels; are they this camera's, at the screen's exposure and binning?"
        )


def subtract_dark(image: np.ndarray, dark: float | np.ndarray) -> np.ndarray:
    """An image's counts above the camera's dark level (a number, or an image of the field's
    shape, which a stack of channels shares), as float32, none below 0."""
    return np.maximum(image.astype(np.float32) - np.asarray(dark, np.float32), 0)


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
    dark: float | np.ndarray = 0.0,
) -> list[tuple[float, float]]:
    """Write each field, less the camera's ``dark`` level (:func:`camera_dark`), divided by its
    channel's illumination function (``functions``, one plane per channel; None leaves fields as
    they are), then scaled so that the plate's ``low`` and ``high`` percentiles of each channel map
    to 0 and 1, as a (channels, H, W) uint16 TIFF in ``folder``.

    Two passes over the plate: the first samples corrected pixels for the percentiles, the second
    writes. ``progress(rows, "percentiles" or "correct")`` wraps each pass's rows (in a tqdm, say).
    Returns each channel's bounds."""
    from . import images
    from .metadata import FIELD

    def corrected(row) -> np.ndarray:
        stack = images.read_field(row, channels)
        return stack if functions is None else subtract_dark(stack, dark) / functions

    bounds = images.plate_bounds((corrected(row) for _, row in progress(fields.iterrows(), "percentiles")), low, high)
    for _, row in progress(fields.iterrows(), "correct"):
        stack = corrected(row)
        scaled = np.stack([images.to_uint16(images.rescale(plane, *b)) for plane, b in zip(stack, bounds)])
        images.write_tiff(images.corrected_path(folder, row[FIELD]), scaled)
    return bounds
