"""Measurements of segmented objects: the per-object table, and masks scored against ground truth.

Kept apart from segmentation so that tables and scores of masks from any source (Cellpose, a
user's own labels, the simulator's ground truth) are computed one way.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .metadata import CELL_NUMBER, FIELD, NUCLEUS_NUMBER

# cp-measure's measurement groups (CellProfiler's MeasureObject* modules). Costes' colocalization
# takes about a second a field (256x256 px, 35 nuclei) alone, several times all the others together.
CELLPROFILER_MEASUREMENTS = (
    "intensity",
    "sizeshape",
    "zernike",
    "feret",
    "texture",
    "granularity",
    "radial_distribution",
    "radial_zernikes",
    "correlation_pearson",
    "correlation_manders_fold",
    "correlation_rwc",
    "correlation_costes",
)
# Left out of field profiles, kept per object: where an object sits rather than what it looks like,
# and the normalized moments that are constant by definition (CellProfiler gives them as NaN).
NOT_PROFILED = (
    "_Location_",
    "_AreaShape_Center_",
    "_AreaShape_BoundingBox",
    "_AreaShape_Orientation",
    "_AreaShape_NormalizedMoment_0_0",
    "_AreaShape_NormalizedMoment_0_1",
    "_AreaShape_NormalizedMoment_1_0",
)


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
    return with_cells(table, nuclei, cells, measured(cells, "Cells", CELL_NUMBER))


def with_cells(
    objects: pd.DataFrame, nuclei: np.ndarray, cells: np.ndarray, cell_measurements: pd.DataFrame
) -> pd.DataFrame:
    """Each nucleus' row (``Metadata_ObjectNumber``) with the cell holding its centre
    (``Metadata_Cells_ObjectNumber``, 0 where the centre falls on background) and that cell's
    measurements (NaN there): the one place nuclei are paired with whole cells, whatever measures them.

    Parameters
    ----------
    objects : pandas.DataFrame
        One row per nucleus, by its label in ``nuclei``.
    nuclei, cells : numpy.ndarray
        (H, W) integer labels, background 0.
    cell_measurements : pandas.DataFrame
        One row per cell, by its label in ``Metadata_Cells_ObjectNumber``.
    """
    from skimage import measure

    centres = measure.regionprops_table(nuclei, properties=("label", "centroid"))
    rows, cols = (
        np.clip(np.round(centres[f"centroid-{axis}"]).astype(int), 0, size - 1) for axis, size in enumerate(cells.shape)
    )
    holding = pd.Series(cells[rows, cols].astype(np.int64), index=centres["label"])
    linked = objects.copy()
    linked.insert(1, CELL_NUMBER, linked[NUCLEUS_NUMBER].map(holding).astype(np.int64))
    return linked.merge(cell_measurements, on=CELL_NUMBER, how="left")


def cellprofiler_name(compartment: str, name: str) -> str:
    """A cp-measure column as CellProfiler names it, ``<Compartment>_<Category>_<Feature>``, then the
    channel(s), then the measurement's parameters: ``Contrast_3_00_256__DNA`` is
    ``Nuclei_Texture_Contrast_DNA_3_00_256``; shape features (no channel) are ``AreaShape``.

    Examples
    --------
    >>> [cellprofiler_name("Nuclei", n) for n in ("Area", "Intensity_MeanIntensity__DNA", "Granularity_2__DNA")]
    ['Nuclei_AreaShape_Area', 'Nuclei_Intensity_MeanIntensity_DNA', 'Nuclei_Granularity_2_DNA']
    >>> cellprofiler_name("Nuclei", "RadialDistribution_FracAtD_1of4__actin")
    'Nuclei_RadialDistribution_FracAtD_actin_1of4'
    >>> cellprofiler_name("Nuclei", "Correlation_Pearson__DNA__actin")
    'Nuclei_Correlation_Pearson_DNA_actin'
    """
    feature, *channels = name.split("__")
    if not channels:
        return f"{compartment}_AreaShape_{feature}"
    category, _, rest = feature.partition("_")
    if category not in ("Intensity", "Location", "Granularity", "RadialDistribution", "Correlation"):
        category, rest = "Texture", feature
    if category == "Location":  # CellProfiler: Location_CenterMassIntensity_X_<channel>
        return f"{compartment}_Location_{rest}_{'_'.join(channels)}"
    measurement, _, parameters = rest.partition("_")
    return "_".join(filter(None, [compartment, category, measurement, *channels, parameters]))


def cellprofiler_measurements(
    labels: np.ndarray, stack: np.ndarray, channels: list[str], measurements: list[str], compartment: str = "Nuclei"
) -> pd.DataFrame:
    """CellProfiler's measurements of each labelled object, by cp-measure, one row per object in
    label order (``Metadata_ObjectNumber`` first), named as CellProfiler names them.

    Parameters
    ----------
    labels : numpy.ndarray
        (H, W) integer labels, background 0.
    stack : numpy.ndarray
        (channels, H, W) intensities in [0, 1], as CellProfiler measures them.
    channels : list of str
        The stack's channel names.
    measurements : list of str
        Groups of :data:`CELLPROFILER_MEASUREMENTS`.
    compartment : str
        The objects' name, the columns' prefix.
    """
    import warnings

    from cp_measure.featurizer import featurize, make_featurizer_config

    unknown = sorted(set(measurements) - set(CELLPROFILER_MEASUREMENTS))
    if unknown:
        raise ValueError(f"unknown CellProfiler measurements {unknown}; choose from {list(CELLPROFILER_MEASUREMENTS)}")
    objects = np.unique(labels[labels > 0])
    if len(objects) == 0:  # cp-measure refuses a field without objects; it has no rows either way
        return pd.DataFrame({NUCLEUS_NUMBER: np.zeros(0, np.int64)})
    config = make_featurizer_config(
        list(channels),
        objects=[compartment],
        **{group: group in measurements for group in CELLPROFILER_MEASUREMENTS},
        correlation_costes_params={"scale_max": 1.0},
    )
    with warnings.catch_warnings():  # empty radial bins divide 0 by 0: NaN, as CellProfiler gives
        warnings.simplefilter("ignore", RuntimeWarning)
        values, names, _ = featurize(stack[None].astype(np.float32), labels[None, None].astype(np.int32), config)
    table = pd.DataFrame(values.reshape(len(objects), -1), columns=[cellprofiler_name(compartment, n) for n in names])
    return pd.concat([pd.DataFrame({NUCLEUS_NUMBER: objects.astype(np.int64)}), table], axis=1)


def measure_plate(
    folder,
    masks_folder,
    field_ids: list[str],
    *,
    channels: list[str],
    cellprofiler: list[str],
    whole_cells: bool = False,
    workers: int = 2,
    progress=None,
) -> pd.DataFrame:
    """CellProfiler's measurements (``cellprofiler``, the config's ``features.cellprofiler``) of
    every nucleus of a plate's corrected fields (one row per nucleus, ``Metadata_Field`` first),
    ``workers`` fields at a time in worker processes. With
    ``whole_cells`` (cells segmented), each row also holds the measurements of the cell around the
    nucleus (``Cells_*``, see :func:`with_cells`), from the masks' ``<field>_cells.tif``."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max(workers, 1), initializer=_one_blas_thread) as pool:
        tables = []
        jobs = [(folder, masks_folder, f, channels, cellprofiler, whole_cells) for f in field_ids]
        for field_id, table in zip(field_ids, pool.map(_measure_field, jobs)):
            tables.append(table.assign(**{FIELD: field_id}))
            if progress is not None:
                progress.update(1)
    measured = pd.concat(tables, ignore_index=True)
    return measured[[FIELD, *[c for c in measured.columns if c != FIELD]]]


def _one_blas_thread() -> None:
    """One BLAS thread per worker: each would otherwise start as many as there are cores, and the
    workers together ran 6 times slower than one worker alone (2 cores, here)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def _measure_field(job) -> pd.DataFrame:
    from . import images

    folder, masks_folder, field_id, channels, measurements, whole_cells = job
    stack = images.read_corrected(folder, field_id)
    nuclei = images.read_image(images.mask_path(masks_folder, field_id))
    table = cellprofiler_measurements(nuclei, stack, channels, measurements)
    if not whole_cells:
        return table
    cells = images.read_image(images.mask_path(masks_folder, field_id, "cells"))
    cell_table = cellprofiler_measurements(cells, stack, channels, measurements, "Cells")
    return with_cells(table, nuclei, cells, cell_table.rename(columns={NUCLEUS_NUMBER: CELL_NUMBER}))


def field_profiles(objects: pd.DataFrame) -> pd.DataFrame:
    """Per-object measurements to one row per field (``Metadata_Field``): the mean of each feature
    over the field's objects, NaN values (an object too small for a measurement) left out; where
    objects sit (:data:`NOT_PROFILED`) is no profile feature. A whole cell holding two nuclei sits
    on both their rows, but counts once in the means of its ``Cells_*``."""
    features = [c for c in objects.columns if not c.startswith("Metadata_") and not any(p in c for p in NOT_PROFILED)]
    of_cells = [c for c in features if c.startswith("Cells_")]
    means = objects.groupby(FIELD, sort=False)[[c for c in features if c not in of_cells]].mean()
    if of_cells:
        cells = objects[objects[CELL_NUMBER] > 0].drop_duplicates([FIELD, CELL_NUMBER])
        means = means.join(cells.groupby(FIELD, sort=False)[of_cells].mean())
    return means[features].reset_index()


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
