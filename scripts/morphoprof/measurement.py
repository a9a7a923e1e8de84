"""Measurements of segmented objects: the per-object table, and masks scored against ground truth.

Kept apart from segmentation so that tables and scores of masks from any source (Cellpose, a
user's own labels, the simulator's ground truth) are computed one way.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def measure_objects(
    nuclei: np.ndarray, stack: np.ndarray, channels: list[str], cells: np.ndarray | None = None
) -> pd.DataFrame:
    """One row per nucleus: label, centroid, area and each channel's mean intensity in the nucleus;
    with whole-cell labels, the cell holding the nucleus' centroid, its area and mean intensities."""
    from skimage import measure

    def measured(labels, prefix):
        props = measure.regionprops_table(
            labels,
            intensity_image=np.moveaxis(stack, 0, -1),
            properties=("label", "centroid", "area", "intensity_mean"),
        )
        return pd.DataFrame(
            {
                f"{prefix}_Label": props["label"],
                **(
                    {"Location_Center_Y": props["centroid-0"], "Location_Center_X": props["centroid-1"]}
                    if prefix == "Nuclei"
                    else {}
                ),
                f"{prefix}_Area": props["area"].astype(np.int64),
                **{f"{prefix}_Intensity_{ch}_Mean": props[f"intensity_mean-{i}"] for i, ch in enumerate(channels)},
            }
        )

    table = measured(nuclei, "Nuclei")
    if cells is None:
        return table
    rows = np.clip(table["Location_Center_Y"].round().astype(int), 0, cells.shape[0] - 1)
    cols = np.clip(table["Location_Center_X"].round().astype(int), 0, cells.shape[1] - 1)
    table["Cells_Label"] = cells[rows, cols].astype(np.int64)
    return table.merge(measured(cells, "Cells"), on="Cells_Label", how="left")


def average_precision(true: list[np.ndarray], pred: list[np.ndarray], threshold: float = 0.5) -> float:
    """AP at an IoU threshold over a set of images: TP / (TP + FP + FN), pooled."""
    from cellpose import metrics

    _, tp, fp, fn = metrics.average_precision(list(true), list(pred), threshold=[threshold])
    tp, fp, fn = tp.sum(), fp.sum(), fn.sum()
    return float(tp / max(tp + fp + fn, 1))
