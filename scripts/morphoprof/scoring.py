"""MOA scoring as in the BBBC021 protocol: 1-nearest-neighbour over treatment profiles.

NSC excludes the query's own compound from the neighbours; NSCB also excludes the
query's batch. Ties in similarity go to the first treatment in table order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .metadata import BATCH, COMPOUND, CONCENTRATION, MOA


def cosine_similarity(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit = x / np.maximum(norms, 1e-12)
    return unit @ unit.T


def nearest_neighbours(profiles: pd.DataFrame, features: list[str], exclude_batch: bool) -> pd.DataFrame:
    """For each treatment, its most similar treatment of another compound (and batch).

    Queries with no admissible neighbour get no prediction (NaN) and are left out of the
    accuracy, and the output says so.
    """
    sim = cosine_similarity(profiles[features].to_numpy(np.float64))
    compounds = profiles[COMPOUND].to_numpy()
    blocked = compounds[:, None] == compounds[None, :]
    if exclude_batch:
        batches = profiles[BATCH].to_numpy()
        blocked |= batches[:, None] == batches[None, :]
    sim = np.where(blocked, -np.inf, sim)
    has_neighbour = np.isfinite(sim).any(axis=1)
    best = np.argmax(sim, axis=1)
    moas = profiles[MOA].to_numpy()
    return pd.DataFrame({
        COMPOUND: compounds,
        CONCENTRATION: profiles[CONCENTRATION].to_numpy(),
        MOA: moas,
        "neighbour_compound": np.where(has_neighbour, compounds[best], None),
        "neighbour_concentration": np.where(has_neighbour, profiles[CONCENTRATION].to_numpy()[best], np.nan),
        "predicted_moa": np.where(has_neighbour, moas[best], None),
        "similarity": np.where(has_neighbour, sim[np.arange(len(sim)), best], np.nan),
    })


def accuracy(neighbours: pd.DataFrame) -> float:
    scored = neighbours.dropna(subset=["predicted_moa"])
    return float((scored[MOA] == scored["predicted_moa"]).mean()) if len(scored) else float("nan")


def per_moa_accuracy(neighbours: pd.DataFrame) -> dict[str, float]:
    scored = neighbours.dropna(subset=["predicted_moa"])
    hits = scored[MOA] == scored["predicted_moa"]
    return {moa: float(v) for moa, v in hits.groupby(scored[MOA]).mean().items()}


def confusion(neighbours: pd.DataFrame) -> pd.DataFrame:
    """Counts of true MOA (rows) by predicted MOA (columns)."""
    scored = neighbours.dropna(subset=["predicted_moa"])
    labels = sorted(neighbours[MOA].unique())
    return pd.crosstab(scored[MOA], scored["predicted_moa"]).reindex(index=labels, columns=labels, fill_value=0)


def score(profiles: pd.DataFrame, features: list[str]) -> tuple[dict, pd.DataFrame]:
    """NSC and NSCB accuracies plus a per-treatment table of neighbours."""
    nsc = nearest_neighbours(profiles, features, exclude_batch=False)
    nscb = nearest_neighbours(profiles, features, exclude_batch=True)
    summary = {
        "nsc": accuracy(nsc),
        "nscb": accuracy(nscb),
        "nscb_scored_treatments": int(nscb["predicted_moa"].notna().sum()),
        "n_treatments": int(len(profiles)),
        "n_compounds": int(profiles[COMPOUND].nunique()),
        "n_moas": int(profiles[MOA].nunique()),
        "n_batches": int(profiles[BATCH].nunique()),
        "n_features": len(features),
        "per_moa_nsc": per_moa_accuracy(nsc),
        "per_moa_nscb": per_moa_accuracy(nscb),
    }
    table = nsc.rename(columns={c: f"nsc_{c}" for c in nsc.columns[3:]})
    table = table.join(nscb.iloc[:, 3:].add_prefix("nscb_"))
    return summary, table
