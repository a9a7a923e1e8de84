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
    return [c for c in cols if family is None or c.split("_", 1)[0] == family]


def aggregate(table: pd.DataFrame, by: list[str], method: str = "mean") -> pd.DataFrame:
    """Mean (or median) of the features per group; metadata constant within a group is kept."""
    features = feature_columns(table)
    grouped = table.groupby(by, sort=True, dropna=False)
    out = grouped[features].agg(method)
    constant = [c for c in metadata_columns(table) if c not in by and (grouped[c].nunique(dropna=False) <= 1).all()]
    meta = grouped[constant].first() if constant else pd.DataFrame(index=out.index)
    return pd.concat([meta, out], axis=1).reset_index()


def normalize_to_controls(wells: pd.DataFrame, control: str, std_floor: float = 1e-3) -> pd.DataFrame:
    """Z-score every feature against the control wells of the same plate.

    The control standard deviation is floored at ``std_floor`` times the feature's median
    control std over the screen, so that a near-constant feature cannot dominate.
    """
    features = feature_columns(wells)
    out = wells.copy()
    stds = []
    for plate, rows in wells.groupby(PLATE):
        controls = rows[rows[COMPOUND] == control]
        if controls.empty:
            raise ValueError(f"plate {plate}: no {control} wells to normalize against")
        stds.append(controls[features].std(ddof=0).to_numpy())
    floor = np.maximum(np.median(np.stack(stds), axis=0) * std_floor, 1e-12)
    values = wells[features].to_numpy(np.float64)
    for plate, rows in wells.groupby(PLATE):
        idx = wells.index.get_indexer(rows.index)
        controls = rows[rows[COMPOUND] == control][features].to_numpy(np.float64)
        mu, sd = controls.mean(axis=0), np.maximum(controls.std(axis=0), floor)
        values[idx] = (values[idx] - mu) / sd
    out[features] = values.astype(np.float32)
    return out


def treatment_profiles(wells: pd.DataFrame, control: str, method: str = "mean") -> pd.DataFrame:
    """One row per (compound, concentration) other than the control, ``Metadata_`` first.

    A treatment's batch is the batch of most of its wells (in BBBC021 all of them).
    """
    treated = wells[wells[COMPOUND] != control]
    batch = treated.groupby([COMPOUND, CONCENTRATION])[BATCH].agg(lambda b: b.mode().iloc[0])
    profiles = aggregate(treated.drop(columns=[BATCH]), [COMPOUND, CONCENTRATION], method)
    profiles.insert(2, BATCH, batch.reindex(pd.MultiIndex.from_frame(profiles[[COMPOUND, CONCENTRATION]])).to_numpy())
    counts = treated.groupby([COMPOUND, CONCENTRATION]).size()
    profiles.insert(3, "Metadata_Wells", counts.to_numpy())
    ordered = metadata_columns(profiles)
    if MOA in ordered:
        ordered.insert(2, ordered.pop(ordered.index(MOA)))
    return profiles[ordered + feature_columns(profiles)]
