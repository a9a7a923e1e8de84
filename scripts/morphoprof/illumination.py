"""Illumination correction, CellProfiler "Regular" style, then plate-wide percentile normalization.

The illumination function of a plate and channel is the mean of its fields, less the camera's
dark level, heavily smoothed, then divided by its robust minimum so that it is >= 1; corrected
images are the raw images, less the dark level, divided by it. The dark level (the counts a
camera reads without light: one number, or the mean of dark frames, pixel by pixel) is not
illuminated: left in, it flattens the function.

A plate's raw fields are read twice. :func:`scan_plate` reads each once for its QC measurements,
every channel's sum of fields and a pixel sample; the fields QC flags are read again and taken
out of the sums, which leaves the mean of the passing ones. :func:`correct_plate` takes the
plate's percentile bounds from the samples and the functions, then reads each field to correct
and write it. Memory does not grow with the number of fields but for the samples (160 kB per
1024x1280 field of 3 channels).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from tqdm import tqdm

from . import images, qc
from .metadata import FIELD, PLATE, QC_PASS, InputError, path_column


def illumination_function(
    mean_image: np.ndarray, smoothing: float = 0.25, robust_percentile: float = 2.0
) -> np.ndarray:
    """Smooth the mean image and rescale it so that its robust minimum is 1.

    Parameters
    ----------
    mean_image : numpy.ndarray
        The mean of a plate's QC-passing fields in one channel (:func:`scan_plate`).
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
    smooth = gaussian_nearest(mean_image, sigma)
    floor = np.percentile(smooth, robust_percentile)
    if floor <= 0:
        raise ValueError("the smoothed mean image is not positive: cannot compute an illumination function")
    return np.maximum(smooth / floor, 1.0).astype(np.float32)


def gaussian_nearest(image: np.ndarray, sigma: float) -> np.ndarray:
    """``scipy.ndimage.gaussian_filter(image, sigma, mode="nearest")`` in float64, each axis by FFT
    convolution of the edge-padded image with scipy's own kernel: equal to about 1e-12 relative,
    and for a 1024x1280 field at sigma 256 (a kernel of 2,049 taps) 0.1 s against 2.5 s."""
    from scipy import signal

    radius = int(4.0 * sigma + 0.5)  # scipy's default truncate
    impulse = np.zeros(2 * radius + 1)
    impulse[radius] = 1.0
    kernel = ndi.gaussian_filter1d(impulse, sigma, mode="constant")
    out = np.asarray(image, np.float64)
    for axis in range(out.ndim):
        padding = [(radius, radius) if a == axis else (0, 0) for a in range(out.ndim)]
        shape = [kernel.size if a == axis else 1 for a in range(out.ndim)]
        out = signal.fftconvolve(np.pad(out, padding, mode="edge"), kernel.reshape(shape), mode="valid", axes=axis)
    return out


def camera_dark(dark_level: float, dark_frames: str, field: str | Path) -> float | np.ndarray:
    """What the camera reads without light: the pixel-wise mean of the TIFF of ``dark_frames``
    (frames taken with the shutter closed, at the screen's exposure and binning) where one is
    named, which also holds the sensor's fixed pattern; otherwise the one number ``dark_level``.
    The frames must have the shape of ``field``, one of the plate's images (its header is read)."""
    if not dark_frames:
        return float(dark_level)
    frames = images.read_frames(dark_frames)
    field_shape, _ = images.image_header(field)
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


@dataclass
class PlateScan:
    """What one pass over a plate's raw fields gives (:func:`scan_plate`)."""

    qc: pd.DataFrame
    """Each field's QC measurements and flags (:func:`qc.flag_fields`)."""
    samples: np.ndarray
    """Each raw field's pixel sample, (fields, channels, pixels) (:func:`images.pixel_sample`)."""
    means: dict[str, np.ndarray]
    """Per channel, the mean of the QC-passing fields less the camera's dark level; none without correction."""
    functions: dict[str, np.ndarray]
    """Per channel, the illumination function made from that mean."""


def scan_plate(
    fields: pd.DataFrame,
    channels: list[str],
    *,
    blank_contrast: float,
    debris_brightness: float,
    blur_focus: float,
    saturated_percent: float,
    correct: bool,
    smoothing: float,
    robust_percentile: float,
    dark_level: float,
    dark_frames: str,
) -> PlateScan:
    """A plate's QC, pixel samples and (with ``correct``) illumination functions, from one read of
    each field: the parameters are the config's ``qc:`` and ``illumination:`` keys.

    QC flags a field against the plate's medians, known only once every field is read, so the pass
    sums every field, then reads the flagged ones again and takes them out: the mean of the passing
    fields is the same as averaging them alone (to the last bit for integer pixels, whose float64
    sums are exact). A plate with no passing field, or whose dark level reaches its mean field
    (:func:`check_dark_level`), stops with its name.
    """
    plate = fields[PLATE].iloc[0]
    rows, samples, sums = [], [], None
    for _, row in tqdm(fields.iterrows(), total=len(fields), desc=f"QC and illumination {plate}"):
        planes = images.read_planes(row, channels)
        rows.append({FIELD: row[FIELD], **qc.field_measurements(planes, channels)})
        samples.append(images.pixel_sample(np.stack(planes)))
        if correct:
            sums = _add_planes(sums, planes)
    flagged = qc.flag_fields(
        pd.DataFrame(rows),
        channels,
        blank_contrast=blank_contrast,
        debris_brightness=debris_brightness,
        blur_focus=blur_focus,
        saturated_percent=saturated_percent,
    )
    scan = PlateScan(flagged, np.stack(samples), {}, {})
    if not correct:
        return scan
    passed = flagged[QC_PASS].to_numpy()
    if not passed.any():
        raise InputError(f"plate {plate}: no field passes image QC, so it has no illumination function")
    for _, row in tqdm(fields[~passed].iterrows(), total=int((~passed).sum()), desc=f"QC-flagged {plate}"):
        sums = _add_planes(sums, images.read_planes(row, channels), sign=-1)
    dark = camera_dark(dark_level, dark_frames, fields[path_column(channels[0])].iloc[0])
    for channel, total in zip(channels, sums):
        mean = (total / passed.sum()).astype(np.float32)
        check_dark_level(mean, dark, f"plate {plate} {channel}")
        scan.means[channel] = mean - dark
        scan.functions[channel] = illumination_function(scan.means[channel], smoothing, robust_percentile)
    return scan


def _add_planes(sums: list[np.ndarray] | None, planes: list[np.ndarray], sign: int = 1) -> list[np.ndarray]:
    """Add (``sign`` -1: subtract) a field's planes to each channel's float64 sum."""
    if sums is None:
        sums = [np.zeros(plane.shape, np.float64) for plane in planes]
    for total, plane in zip(sums, planes):
        (np.add if sign > 0 else np.subtract)(total, plane, out=total)
    return sums


def correct_plate(
    fields: pd.DataFrame,
    functions: np.ndarray | None,
    samples: np.ndarray,
    folder: str | Path,
    *,
    channels: list[str],
    low_percentile: float,
    high_percentile: float,
    dark_level: float,
    dark_frames: str,
) -> list[tuple[float, float]]:
    """Write each field, less the camera's dark level (:func:`camera_dark`), divided by its
    channel's illumination function (``functions``, one plane per channel; None leaves fields as
    they are), then scaled so that the plate's ``low_percentile`` and ``high_percentile`` of each
    channel map to 0 and 1, as an uncompressed (channels, H, W) uint16 TIFF in ``folder``.

    The percentiles come from the raw fields' pixel ``samples`` (:attr:`PlateScan.samples`),
    corrected at their pixels: the same pixels and arithmetic as correcting whole fields and
    sampling them (:func:`images.plate_bounds`), so the same bounds, without a pass over the plate.
    Returns each channel's bounds."""
    if functions is None:
        sampled = samples.astype(np.float32)
    else:
        dark = camera_dark(dark_level, dark_frames, fields[path_column(channels[0])].iloc[0])
        sampled = subtract_dark(samples, images.pixel_sample(dark) if np.ndim(dark) else dark)
        sampled /= images.pixel_sample(functions)
    bounds = images.sample_bounds(sampled, low_percentile, high_percentile)
    for _, row in tqdm(fields.iterrows(), total=len(fields), desc=f"correct {fields[PLATE].iloc[0]}"):
        stack = images.read_field(row, channels)
        if functions is not None:
            stack = subtract_dark(stack, dark) / functions
        scaled = np.stack([images.to_uint16(images.rescale(plane, *b)) for plane, b in zip(stack, bounds)])
        images.write_tiff(images.corrected_path(folder, row[FIELD]), scaled, compress=False)
    return bounds
