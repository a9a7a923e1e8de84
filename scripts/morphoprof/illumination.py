"""Illumination correction, CellProfiler "Regular" style, and percentile normalization.

The illumination function of a plate and channel is the mean of its fields, heavily
smoothed, then divided by its robust minimum so that it is >= 1; corrected images are the
raw images divided by it. The mean is accumulated one field at a time, so memory does not
grow with the number of fields.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
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

    ``smoothing`` is the Gaussian sigma as a fraction of the image's shorter side.
    """
    sigma = max(smoothing * min(mean_image.shape), 1.0)
    smooth = ndi.gaussian_filter(mean_image.astype(np.float64), sigma, mode="nearest")
    floor = np.percentile(smooth, robust_percentile)
    if floor <= 0:
        raise ValueError("the smoothed mean image is not positive: cannot compute an illumination function")
    return np.maximum(smooth / floor, 1.0).astype(np.float32)


def coefficient_of_variation(image: np.ndarray) -> float:
    """Std over mean: how uneven an image (e.g. a plate's mean field) is."""
    return float(np.std(image) / np.mean(image))


def pixel_sample(image: np.ndarray, step: int = 7) -> np.ndarray:
    """A regular, deterministic subsample of an image's pixels, for plate-wide percentiles."""
    return np.ascontiguousarray(image[::step, ::step]).ravel()


def percentile_bounds(samples: np.ndarray, low: float = 0.1, high: float = 99.9) -> tuple[float, float]:
    lo, hi = np.percentile(samples, [low, high])
    if hi <= lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def plate_bounds(stacks: Iterable[np.ndarray], low: float, high: float) -> list[tuple[float, float]]:
    """Each channel's ``low`` and ``high`` percentiles over a plate's (channels, H, W) stacks,
    from a regular pixel sample of every stack, so one bright or blank field cannot set them."""
    samples = None
    for stack in stacks:
        if samples is None:
            samples = [[] for _ in stack]
        for channel, plane in zip(samples, stack):
            channel.append(pixel_sample(plane))
    if samples is None:
        raise ValueError("no fields to take intensity bounds from")
    return [percentile_bounds(np.concatenate(channel), low, high) for channel in samples]


def rescale(image: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map [lo, hi] to [0, 1], clipping outside."""
    return np.clip((image - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
