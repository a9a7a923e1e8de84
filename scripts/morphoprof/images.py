"""Reading and writing microscopy images, with errors that name the file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tifffile

from .metadata import InputError, path_column


def read_image(path: str | Path) -> np.ndarray:
    """A 2-D grey image of integer or float pixels."""
    try:
        image = tifffile.imread(path)
    except FileNotFoundError as err:
        raise InputError(f"{path}: image not found") from err
    except (tifffile.TiffFileError, ValueError, OSError) as err:
        raise InputError(f"{path}: not a readable TIFF ({err})") from err
    image = np.squeeze(image)
    _check_grey(path, image.shape, image.dtype)
    return image


def _check_grey(path, shape: tuple[int, ...], dtype: np.dtype) -> None:
    if len(shape) != 2:
        raise InputError(f"{path}: expected a 2-D grey image, got shape {shape}")
    if dtype.kind not in "uif":
        raise InputError(f"{path}: unsupported pixel type {dtype}")


def image_header(path: str | Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and pixel type of a TIFF's first image, read from its header alone."""
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            return tuple(s for s in page.shape if s != 1), np.dtype(page.dtype)
    except FileNotFoundError as err:
        raise InputError(f"{path}: image not found") from err
    except (tifffile.TiffFileError, ValueError, OSError, IndexError) as err:
        raise InputError(f"{path}: not a readable TIFF ({err})") from err


def check_plate_images(fields, channels: list[str]) -> tuple[int, int]:
    """Every image of a plate is a readable 2-D grey TIFF, all of one size; returns (H, W).

    Reads headers only, so a plate is checked in seconds before any heavy job starts.
    """
    size = None
    for _, row in fields.iterrows():
        for ch in channels:
            path = row[path_column(ch)]
            shape, dtype = image_header(path)
            _check_grey(path, shape, dtype)
            if size is None:
                size = shape
            elif shape != size:
                raise InputError(f"{path}: {shape[0]}x{shape[1]} pixels, but the plate's other images are "
                                 f"{size[0]}x{size[1]}")
    return size


def read_field(row, channels: list[str]) -> np.ndarray:
    """The (channels, H, W) float32 stack of one field-table row; channels must agree in shape."""
    planes = [read_image(row[path_column(ch)]) for ch in channels]
    shapes = {p.shape for p in planes}
    if len(shapes) > 1:
        raise InputError(f"field {row['Metadata_Field']}: channel images differ in shape {sorted(shapes)}")
    return np.stack(planes).astype(np.float32)


def write_tiff(path: str | Path, array: np.ndarray) -> None:
    """Write a TIFF atomically: a failed write leaves no half-written file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tifffile.imwrite(tmp, array, compression="zlib", photometric="minisblack")
    os.replace(tmp, path)


def corrected_path(folder: str | Path, field_id: str) -> Path:
    """Where the corrected multi-channel stack of a field is kept."""
    return Path(folder) / f"{field_id}.tif"


def mask_path(folder: str | Path, field_id: str, compartment: str = "nuclei") -> Path:
    """Where a field's label image of nuclei (or of whole cells) is kept."""
    return Path(folder) / f"{field_id}_{compartment}.tif"


def read_stack(path: str | Path) -> np.ndarray:
    """A (channels, H, W) stack written by the correction rule."""
    try:
        stack = tifffile.imread(path)
    except (FileNotFoundError, tifffile.TiffFileError, ValueError, OSError) as err:
        raise InputError(f"{path}: not a readable TIFF stack ({err})") from err
    if stack.ndim != 3:
        raise InputError(f"{path}: expected a (channels, H, W) stack, got shape {stack.shape}")
    return stack
