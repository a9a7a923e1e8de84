"""Profiles: field features to wells, normalized to each plate's DMSO wells, to treatments."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .metadata import BATCH, COMPOUND, CONCENTRATION, MOA, PLATE, WELL

WELL_KEYS = [PLATE, WELL]


def metadata_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c.startswith("Metadata_")]


def feature_columns(table: pd.DataFrame, family: str | None = None) -> list[str]:
    """Feature columns, optionally only one family (the prefix before the first '_')."""
    cols = [c for c in table.columns if not c.startswith("Metadata_")]
    return [c for c in cols if family is None or feature_family(c) == family]


def aggregate(table: pd.DataFrame, by: list[str], method: str = "mean") -> pd.DataFrame:
    """Mean (or median) of the features per group; metadata constant within a group is kept."""
    features = feature_columns(table)
    grouped = table.groupby(by, sort=True, dropna=False)
    out = grouped[features].agg(method)
    constant = [c for c in metadata_columns(table) if c not in by and (grouped[c].nunique(dropna=False) <= 1).all()]
    meta = grouped[constant].first() if constant else pd.DataFrame(index=out.index)
    return pd.concat([meta, out], axis=1).reset_index().copy()


def feature_family(column: str) -> str:
    """The family of a feature column: the prefix before its first '_' (CNN, Intensity, ...)."""
    return column.split("_", 1)[0]


def normalize_to_controls(wells: pd.DataFrame, control: str, std_floor_quantile: float = 0.25) -> pd.DataFrame:
    """Standardize features against the control wells.

    Each plate is centred on its own control wells' mean. Features are divided by the
    control standard deviation pooled over plates (root mean within-plate variance),
    floored at the ``std_floor_quantile`` quantile of that family's control stds: CNN
    features that are (nearly) silent in controls but fire under treatment would
    otherwise be divided by ~0 and swamp every other feature.
    """
    features = feature_columns(wells)
    values = wells[features].to_numpy(np.float64, copy=True)
    is_control = (wells[COMPOUND] == control).to_numpy()
    plates = wells[PLATE].to_numpy()
    variances = []
    for plate in np.unique(plates):
        on_plate = plates == plate
        controls = values[on_plate & is_control]
        if len(controls) == 0:
            raise ValueError(f"plate {plate}: no {control} wells to normalize against")
        values[on_plate] -= controls.mean(axis=0)
        variances.append(controls.var(axis=0))
    scale = np.sqrt(np.mean(variances, axis=0))
    families = np.array([feature_family(f) for f in features])
    for family in np.unique(families):
        in_family = families == family
        positive = scale[in_family][scale[in_family] > 0]
        floor = np.quantile(positive, std_floor_quantile) if len(positive) else 1.0
        scale[in_family] = np.maximum(scale[in_family], floor)
    normalized = pd.DataFrame((values / scale).astype(np.float32), index=wells.index, columns=features)
    return pd.concat([wells[metadata_columns(wells)], normalized], axis=1)


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
