"""Image quality control: per-field measurements and flags for blank and debris fields."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .metadata import FIELD, PLATE, InputError


def field_measurements(stack: np.ndarray, channels: list[str]) -> dict[str, float]:
    """Mean, contrast (std/mean) and 99th percentile of each channel of one raw field."""
    out = {}
    for ch, plane in zip(channels, stack):
        mean = float(plane.mean())
        out[f"QC_{ch}_Mean"] = mean
        out[f"QC_{ch}_Contrast"] = float(plane.std() / mean) if mean > 0 else 0.0
        out[f"QC_{ch}_P99"] = float(np.percentile(plane, 99))
    return out


def flag_fields(
    measurements: pd.DataFrame, channels: list[str], blank_contrast: float = 0.2, debris_brightness: float = 2.5
) -> pd.DataFrame:
    """Flag fields against their plate's median field.

    Blank: the first (nuclear) channel's contrast is below ``blank_contrast`` times the
    plate median. Debris: every channel's 99th percentile is above ``debris_brightness``
    times the plate median (debris is bright in all channels, phenotypes rarely are).
    """
    out = measurements.copy()
    nuclear = channels[0]
    contrast = out[f"QC_{nuclear}_Contrast"]
    out["QC_Blank"] = contrast < blank_contrast * contrast.median()
    bright = np.ones(len(out), bool)
    for ch in channels:
        p99 = out[f"QC_{ch}_P99"]
        bright &= (p99 > debris_brightness * p99.median()).to_numpy()
    out["QC_Debris"] = bright
    out["QC_Pass"] = ~(out["QC_Blank"] | out["QC_Debris"])
    return out


def max_cell_count(counts: pd.Series, max_cells_factor: float = 4.0) -> float:
    """The most cells a field of the plate may have: ``max_cells_factor`` times the plate's
    median count (at least 1, so that a mostly empty plate still has a limit)."""
    return max_cells_factor * max(float(counts.median()), 1.0)


def overlay_fields(flagged: pd.DataFrame, count: int) -> pd.DataFrame:
    """``count`` fields spanning a plate's range of nuclei counts, fewest, most and evenly between:
    the fields whose mask outlines are shown."""
    ranked = flagged.sort_values(["Nuclei_Count", FIELD]).reset_index(drop=True)
    return ranked.iloc[np.unique(np.linspace(0, len(ranked) - 1, count).round().astype(int))]


def flag_cell_counts(counts: pd.DataFrame, min_cells: int = 1, max_cells_factor: float = 4.0) -> pd.DataFrame:
    """Flag fields by their segmented cell count: fewer than ``min_cells``, or more than
    :func:`max_cell_count` (clumps, debris, a wrong diameter)."""
    out = counts.copy()
    count = out["Nuclei_Count"]
    out["QC_FewCells"] = count < min_cells
    out["QC_ManyCells"] = count > max_cell_count(count, max_cells_factor)
    out["QC_Pass"] = ~(out["QC_FewCells"] | out["QC_ManyCells"])
    return out


def blank_plates(image_qc: pd.DataFrame, plates: pd.Series, nuclear: str, blank_contrast: float = 0.2) -> list[str]:
    """Plates whose median nuclear contrast is below ``blank_contrast`` times the screen's median
    plate. Per-plate flags cannot see these: a plate of noise is its own reference."""
    contrast = image_qc[f"QC_{nuclear}_Contrast"].groupby(plates.to_numpy()).median()
    return sorted(contrast.index[contrast < blank_contrast * contrast.median()])


def passing_fields(
    fields: pd.DataFrame,
    image_qc: pd.DataFrame,
    segmentation_qc: pd.DataFrame,
    nuclear: str,
    blank_contrast: float = 0.2,
) -> tuple[pd.Series, list[str]]:
    """Which of ``fields`` (``Metadata_Field``, ``Metadata_Plate``) pass image QC, segmentation QC
    and the screen-wide blank-plate check, and the blank plates. A plate left without any
    passing field stops the run, named."""
    ids = fields[FIELD]
    image = image_qc.set_index(FIELD).loc[ids]
    blank = blank_plates(image, fields[PLATE], nuclear, blank_contrast)
    passed = (
        image["QC_Pass"].to_numpy()
        & ids.isin(segmentation_qc.loc[segmentation_qc["QC_Pass"], FIELD])
        & ~fields[PLATE].isin(blank)
    )
    empty = sorted(set(fields[PLATE]) - set(fields.loc[passed, PLATE]))
    if empty:
        why = f"blank next to the screen's other plates: {blank}" if blank else "see results/qc/ and results/plots/"
        raise InputError(
            f"plate(s) {empty} have no field passing QC ({why}): remove them from the image table, "
            "or check their images and the segmentation model"
        )
    return pd.Series(passed, index=fields.index), blank
