"""Measurements of segmented objects: the per-object table, and masks scored against ground truth.

Kept apart from segmentation so that tables and scores of masks from any source (Cellpose, a
user's own labels, the simulator's ground truth) are computed one way.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .metadata import CELL_NUMBER, NUCLEUS_CENTRE, NUCLEUS_NUMBER


def measure_objects(
    nuclei: np.ndarray, stack: np.ndarray, channels: list[str], cells: np.ndarray | None = None
) -> pd.DataFrame:
    """One row per nucleus, named as CellProfiler names them: its label (``Metadata_ObjectNumber``),
    ``Nuclei_Location_Center_X/Y``, ``Nuclei_AreaShape_Area`` and each channel's
    ``Nuclei_Intensity_MeanIntensity_<channel>``. With whole-cell labels, the cell holding the
    nucleus' centre (``Metadata_Cells_ObjectNumber``), with its area and mean intensities."""
    from skimage import measure

    def measured(labels, compartment, number):
        props = measure.regionprops_table(
            labels,
            intensity_image=np.moveaxis(stack, 0, -1),
            properties=("label", "centroid", "area", "intensity_mean"),
        )
        return pd.DataFrame(
            {
                number: props["label"],
                f"{compartment}_Location_Center_X": props["centroid-1"],
                f"{compartment}_Location_Center_Y": props["centroid-0"],
                f"{compartment}_AreaShape_Area": props["area"].astype(np.int64),
                **{
                    f"{compartment}_Intensity_MeanIntensity_{ch}": props[f"intensity_mean-{i}"]
                    for i, ch in enumerate(channels)
                },
            }
        )

    table = measured(nuclei, "Nuclei", NUCLEUS_NUMBER)
    if cells is None:
        return table
    rows, cols = (
        np.clip(table[centre].round().astype(int), 0, size - 1) for centre, size in zip(NUCLEUS_CENTRE, cells.shape)
    )
    table.insert(1, CELL_NUMBER, cells[rows, cols].astype(np.int64))
    return table.merge(measured(cells, "Cells", CELL_NUMBER), on=CELL_NUMBER, how="left")


def match_counts(true: list[np.ndarray], pred: list[np.ndarray], threshold: float = 0.5) -> tuple[int, int, int]:
    """Objects matched at an IoU threshold over a set of label images, pooled: (TP, FP, FN).

    Labels are renumbered 1..n first: Cellpose's matching counts objects by the highest label."""
    from cellpose import metrics
    from skimage.segmentation import relabel_sequential

    true, pred = ([relabel_sequential(labels)[0] for labels in images] for images in (true, pred))
    _, tp, fp, fn = metrics.average_precision(true, pred, threshold=[threshold])
    return int(tp.sum()), int(fp.sum()), int(fn.sum())


def average_precision(true: list[np.ndarray], pred: list[np.ndarray], threshold: float = 0.5) -> float:
    """AP at an IoU threshold over a set of images: TP / (TP + FP + FN), pooled."""
    tp, fp, fn = match_counts(true, pred, threshold)
    return tp / max(tp + fp + fn, 1)


def segmentation_accuracy(true: list[np.ndarray], pred: list[np.ndarray], threshold: float = 0.5) -> dict:
    """Masks against ground truth at an IoU threshold: AP, precision, recall and object counts."""
    tp, fp, fn = match_counts(true, pred, threshold)
    return {
        "average_precision": tp / max(tp + fp + fn, 1),
        "precision": tp / max(tp + fp, 1),
        "recall": tp / max(tp + fn, 1),
        "true_objects": tp + fn,
        "found_objects": tp + fp,
    }
