"""Profiles: field features to wells, normalized to each plate's DMSO wells, to treatments."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from .families import feature_columns, feature_family
from .metadata import BATCH, COMPOUND, CONCENTRATION, MOA, PLATE, WELL, InputError, metadata_columns

log = logging.getLogger(__name__)

WELL_KEYS = [PLATE, WELL]
OBJECT_COUNT, SITE_COUNT = "Metadata_Object_Count", "Metadata_Site_Count"  # as pycytominer's aggregate names them
COUNTS = (OBJECT_COUNT, SITE_COUNT)


def aggregate(table: pd.DataFrame, by: list[str], method: str = "mean") -> pd.DataFrame:
    """Mean (or median) of the features per group; the counts (``Metadata_Object_Count``,
    ``Metadata_Site_Count``) are summed; other metadata constant within a group is kept."""
    features = feature_columns(table)
    grouped = table.groupby(by, sort=True, dropna=False)
    out = grouped[features].agg(method)
    counts = [c for c in COUNTS if c in table.columns]
    constant = [
        c
        for c in metadata_columns(table)
        if c not in by and c not in counts and (grouped[c].nunique(dropna=False) <= 1).all()
    ]
    meta = grouped[constant].first() if constant else pd.DataFrame(index=out.index)
    return pd.concat([meta, grouped[counts].sum(), out], axis=1).reset_index().copy()


def well_profiles(fields: pd.DataFrame, nuclei: pd.Series | np.ndarray, method: str = "mean") -> pd.DataFrame:
    """Field profiles -> well profiles, with the nuclei (``Metadata_Object_Count``) and fields
    (``Metadata_Site_Count``) each well's profile stands on."""
    counted = fields.assign(**{OBJECT_COUNT: np.asarray(nuclei, dtype=np.int64), SITE_COUNT: 1})
    return aggregate(counted, WELL_KEYS, method)


NORMALIZATIONS = ("zscore", "robust_zscore", "plate_zscore", "sphering", "tvn")
AGGREGATES = ("mean", "median")
MAD_TO_STD = 1.4826


def _floored(scale: np.ndarray, features: list[str], quantile: float) -> np.ndarray:
    """Floor each feature's scale at a quantile of its family's positive scales.

    CNN features that are (nearly) silent in controls but fire under treatment would
    otherwise be divided by ~0 and swamp every other feature.
    """
    scale = scale.copy()
    families = np.array([feature_family(f) for f in features])
    for family in np.unique(families):
        in_family = families == family
        positive = scale[in_family][scale[in_family] > 0]
        scale[in_family] = np.maximum(scale[in_family], np.quantile(positive, quantile) if len(positive) else 1.0)
    return scale


def _centre_on_plate_controls(
    wells: pd.DataFrame, control: str, robust: bool
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Features minus each plate's control mean (median if robust), the pooled control spread, and
    each plate's own.

    The spread is the root mean over plates of the within-plate control variance (MAD^2 if
    robust): a handful of control wells per plate estimates it too noisily alone.
    """
    values = wells[feature_columns(wells)].to_numpy(np.float64, copy=True)
    is_control = (wells[COMPOUND] == control).to_numpy()
    plates = wells[PLATE].to_numpy()
    spreads = []
    for plate in np.unique(plates):
        on_plate = plates == plate
        controls = values[on_plate & is_control]
        if len(controls) == 0:
            raise InputError(
                f"plate {plate}: no {control} wells to normalize against (none matched, or QC left them all out)"
            )
        centre = np.median(controls, axis=0) if robust else controls.mean(axis=0)
        values[on_plate] -= centre
        controls = controls - centre
        spreads.append((MAD_TO_STD * np.median(np.abs(controls), axis=0)) ** 2 if robust else controls.var(axis=0))
    per_plate = {plate: np.sqrt(spread) for plate, spread in zip(np.unique(plates), spreads)}
    return values, np.sqrt(np.mean(spreads, axis=0)), per_plate


def _divide_by_plate_spread(
    values: np.ndarray, plates: np.ndarray, per_plate: dict[str, np.ndarray], fallback: np.ndarray
) -> None:
    """Each plate's wells divided by that plate's control std, in place, where it is positive; by
    ``fallback`` (the pooled, floored std) for the features constant in a plate's controls, which
    CNN embeddings often are. How many fell back is logged."""
    fell_back = 0
    for plate, spread in per_plate.items():
        silent = spread <= 0
        fell_back += int(silent.sum())
        values[plates == plate] /= np.where(silent, fallback, spread)
    log.info(
        "plate_zscore: each plate's own control std for %d of %d plate-features; the pooled, floored std for "
        "%d constant in their plate's controls",
        values.shape[1] * len(per_plate) - fell_back,
        values.shape[1] * len(per_plate),
        fell_back,
    )


def _covariance_power(samples: np.ndarray, power: float, ridge: float):
    """x -> x (cov(samples) + ridge I)^power, from a thin SVD (samples are few, features many)."""
    _, singular, vt = np.linalg.svd(samples - samples.mean(axis=0), full_matrices=False)
    eigen = singular**2 / max(len(samples) - 1, 1)
    gain = (eigen + ridge) ** power - ridge**power

    def apply(x: np.ndarray) -> np.ndarray:
        return x * ridge**power + ((x @ vt.T) * gain) @ vt

    return apply


def _sphere(values: np.ndarray, is_control: np.ndarray, ridge: float) -> np.ndarray:
    """ZCA whitening fitted on the control wells: x -> x (cov(controls) + ridge I)^(-1/2).

    The ridge keeps it defined when there are fewer control wells than features (always,
    for CNN features), where pycytominer's Spherize refuses the rank-deficient fit.
    """
    return _covariance_power(values[is_control], -0.5, ridge)(values)


def _coral(values: np.ndarray, is_control: np.ndarray, batches: np.ndarray, ridge: float) -> np.ndarray:
    """Align each batch's control covariance to that of all controls (CORAL)."""
    out = values.copy()
    to_all = _covariance_power(values[is_control], 0.5, ridge)
    for batch in np.unique(batches):
        in_batch = batches == batch
        controls = values[in_batch & is_control]
        if len(controls) < 2:
            raise ValueError(f"batch {batch}: TVN needs at least 2 control wells, found {len(controls)}")
        out[in_batch] = to_all(_covariance_power(controls, -0.5, ridge)(values[in_batch]))
    return out


def normalize(
    wells: pd.DataFrame, control: str, method: str = "zscore", std_floor_quantile: float = 0.25, ridge: float = 1.0
) -> pd.DataFrame:
    """Normalize well profiles against the control wells.

    - ``zscore``: centre each plate on its control mean, divide by the pooled control std,
      floored at the ``std_floor_quantile`` quantile of the feature family's control stds.
    - ``robust_zscore``: the same with the control median and MAD.
    - ``plate_zscore``: each plate centred on its control mean and divided by its own control
      std, without pooling or floor (Ljosa et al. 2013's per-plate standardization, as in the
      cytominer gallery); features constant in a plate's controls take the pooled, floored std.
    - ``sphering``: z-score, then ZCA whitening fitted on all control wells, with ``ridge``
      added to the control covariance.
    - ``tvn``: sphering, then CORAL: each batch's control covariance is aligned to that of
      all controls (typical variation normalization, Ando et al. 2017).

    Parameters
    ----------
    wells : pandas.DataFrame
        One row per well: ``Metadata_Plate``, ``Metadata_Batch``, ``Metadata_Compound`` and
        feature columns named ``<Family>_...``.
    control : str
        The control compound (``DMSO``).
    method : str
        One of :data:`NORMALIZATIONS`.
    std_floor_quantile : float
        Floor of each feature's control std, as a quantile of its family's control stds.
    ridge : float
        Added to the control covariance before whitening (``sphering``, ``tvn``).

    Returns
    -------
    pandas.DataFrame
        The metadata columns, then the normalized features (float32), in the same row order.

    Examples
    --------
    >>> import pandas as pd
    >>> wells = pd.DataFrame({"Metadata_Plate": ["P1"] * 4, "Metadata_Batch": ["B1"] * 4,
    ...                       "Metadata_Compound": ["DMSO", "DMSO", "taxol", "taxol"],
    ...                       "CNN_a": [1.0, 3.0, 10.0, 12.0]})
    >>> normalize(wells, "DMSO")["CNN_a"].tolist()
    [-1.0, 1.0, 8.0, 10.0]
    """
    if method not in NORMALIZATIONS:
        raise ValueError(f"config profiles.normalization: unknown method {method!r}; choose one of {NORMALIZATIONS}")
    features = feature_columns(wells)
    values, spread, per_plate = _centre_on_plate_controls(wells, control, robust=method == "robust_zscore")
    pooled = _floored(spread, features, std_floor_quantile)
    if method == "plate_zscore":
        _divide_by_plate_spread(values, wells[PLATE].to_numpy(), per_plate, pooled)
    else:
        values /= pooled
    is_control = (wells[COMPOUND] == control).to_numpy()
    families = np.array([feature_family(f) for f in features])
    for family in np.unique(families):  # whitening mixes features: keep families apart
        cols = families == family
        if method in ("sphering", "tvn"):
            values[:, cols] = _sphere(values[:, cols], is_control, ridge)
        if method == "tvn":
            values[:, cols] = _coral(values[:, cols], is_control, wells[BATCH].to_numpy(), ridge)
    normalized = pd.DataFrame(values.astype(np.float32), index=wells.index, columns=features)
    return pd.concat([wells[metadata_columns(wells)], normalized], axis=1)


def select_features(wells: pd.DataFrame, operations: list[str], corr_threshold: float = 0.9) -> pd.DataFrame:
    """Drop near-constant and highly correlated features (pycytominer's feature_select)."""
    if not operations:
        return wells
    from pycytominer import feature_select

    return feature_select(
        wells, features=feature_columns(wells), operation=list(operations), corr_threshold=corr_threshold
    )


def treatment_profiles(wells: pd.DataFrame, control: str, method: str = "mean") -> pd.DataFrame:
    """One row per (compound, concentration) other than the control, ``Metadata_`` first.

    A treatment's batch is the batch of most of its wells (in BBBC021 all of them).
    """
    treated = wells[wells[COMPOUND] != control]
    batch = treated.groupby([COMPOUND, CONCENTRATION])[BATCH].agg(lambda b: b.mode().iloc[0])
    per_well = [BATCH, *WELL_KEYS]  # plate-level metadata says nothing about a treatment
    profiles = aggregate(treated.drop(columns=per_well), [COMPOUND, CONCENTRATION], method)
    keys = pd.MultiIndex.from_frame(profiles[[COMPOUND, CONCENTRATION]])
    profiles[BATCH] = batch.reindex(keys).to_numpy()
    profiles["Metadata_Wells"] = treated.groupby([COMPOUND, CONCENTRATION]).size().reindex(keys).to_numpy()
    ordered = metadata_columns(profiles)
    if MOA in ordered:
        ordered.insert(2, ordered.pop(ordered.index(MOA)))
    return profiles[ordered + feature_columns(profiles)]


def build_profiles(wells: pd.DataFrame, control: str, settings: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Raw well profiles -> normalized (and feature-selected) wells -> treatment profiles.

    The same code serves the workflow and the scoring of other tools' profiles.

    Parameters
    ----------
    wells : pandas.DataFrame
        Raw per-well profiles: ``Metadata_`` columns (plate, batch, compound, concentration,
        MOA) and feature columns.
    control : str
        The control compound, the reference of the normalization.
    settings : dict
        The config's ``profiles`` block: ``normalization``, ``std_floor_quantile``, ``ridge``,
        ``feature_selection``, ``corr_threshold`` and ``aggregate``.

    Returns
    -------
    tuple of pandas.DataFrame
        The normalized wells, and the treatment profiles (one row per compound and
        concentration other than the control).
    """
    normalized = normalize(wells, control, settings["normalization"], settings["std_floor_quantile"], settings["ridge"])
    normalized = select_features(normalized, settings["feature_selection"], settings["corr_threshold"])
    return normalized, treatment_profiles(normalized, control, settings["aggregate"])
