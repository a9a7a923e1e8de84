"""MOA scoring as in the BBBC021 protocol: nearest neighbours over treatment profiles.

NSC excludes the query's own compound from the neighbours; NSCB also excludes the
query's batch. Ties in similarity go to the first treatment in table order. Feature families
scored together weigh the same (``profile_matrix``).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from .families import CELL_FAMILY, FIELD_FAMILY, TRAINED, feature_columns, feature_family
from .metadata import BATCH, COMPOUND, CONCENTRATION, MOA

log = logging.getLogger(__name__)

METRICS = ("cosine", "pearson")
KS = (1, 3, 5)
NULL_SIZE = 10000  # copairs' null distribution of AP, per number of positives
SIGNIFICANCE = 0.05  # corrected p-value below which an mAP is significant


def cosine_similarity(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit = x / np.maximum(norms, 1e-12)
    return unit @ unit.T


def similarity(x: np.ndarray, metric: str = "cosine") -> np.ndarray:
    """Cosine, or Pearson correlation (the cosine of each profile minus its own mean)."""
    if metric not in METRICS:
        raise ValueError(f"unknown similarity {metric!r}; choose one of {METRICS}")
    return cosine_similarity(x - x.mean(axis=1, keepdims=True) if metric == "pearson" else x)


def profile_matrix(profiles: pd.DataFrame, features: list[str]) -> np.ndarray:
    """The profiles' features as compared: each feature family (``CNN``, ``CellCNN``, ...) scaled to
    unit total variance over the profiles, so that families weigh the same in a distance whatever
    their widths and scales. One family alone is only scaled, which leaves cosine neighbours as
    they are.

    Examples
    --------
    >>> import pandas as pd
    >>> wide = pd.DataFrame({"A_1": [1.0, -1.0], "B_1": [10.0, -10.0], "B_2": [10.0, -10.0]})
    >>> profile_matrix(wide, ["A_1", "B_1", "B_2"]).var(axis=0).round(2).tolist()
    [1.0, 0.5, 0.5]
    """
    values = profiles[features].to_numpy(np.float64, copy=True)
    families = np.array([feature_family(f) for f in features])
    for family in np.unique(families):
        block = families == family
        total = values[:, block].var(axis=0).sum()
        if total > 0:
            values[:, block] /= np.sqrt(total)
    return values


def umap_coordinates(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """Profiles placed in 2-D by UMAP on cosine distances, seeded: the same profiles give the same plot."""
    import umap

    return umap.UMAP(n_neighbors=min(15, len(x) - 1), metric="cosine", random_state=seed).fit_transform(x)


def _admissible_similarity(profiles: pd.DataFrame, features: list[str], exclude_batch: bool, metric: str):
    sim = similarity(profile_matrix(profiles, features), metric)
    compounds = profiles[COMPOUND].to_numpy()
    blocked = compounds[:, None] == compounds[None, :]
    if exclude_batch:
        batches = profiles[BATCH].to_numpy()
        blocked |= batches[:, None] == batches[None, :]
    return np.where(blocked, -np.inf, sim)


def nearest_neighbours(
    profiles: pd.DataFrame, features: list[str], exclude_batch: bool, metric: str = "cosine"
) -> pd.DataFrame:
    """For each treatment, its most similar treatment of another compound (and batch).

    Queries with no admissible neighbour get no prediction (NaN) and are left out of the
    accuracy; the summary reports how many were scored.

    Parameters
    ----------
    profiles : pandas.DataFrame
        One row per treatment: ``Metadata_Compound``, ``Metadata_Concentration``,
        ``Metadata_MOA``, ``Metadata_Batch`` and the feature columns.
    features : list of str
        The feature columns compared.
    exclude_batch : bool
        Also refuse neighbours from the query's batch (NSCB) rather than only its compound (NSC).
    metric : str
        ``cosine`` or ``pearson``.

    Returns
    -------
    pandas.DataFrame
        Per treatment: its neighbour's compound and concentration, the predicted MOA (the
        neighbour's) and their similarity.

    Examples
    --------
    >>> import pandas as pd
    >>> treatments = pd.DataFrame({
    ...     "Metadata_Compound": ["taxol", "docetaxel", "nocodazole"],
    ...     "Metadata_Concentration": [1.0, 1.0, 1.0],
    ...     "Metadata_MOA": ["Microtubule stabilizers"] * 2 + ["Microtubule destabilizers"],
    ...     "Metadata_Batch": ["W1", "W2", "W1"],
    ...     "CNN_a": [1.0, 0.9, -1.0], "CNN_b": [0.1, 0.2, 0.5]})
    >>> nearest_neighbours(treatments, ["CNN_a", "CNN_b"], exclude_batch=False)["neighbour_compound"].tolist()
    ['docetaxel', 'taxol', 'docetaxel']
    """
    sim = _admissible_similarity(profiles, features, exclude_batch, metric)
    has_neighbour = np.isfinite(sim).any(axis=1)
    best = np.argmax(sim, axis=1)
    compounds, moas = profiles[COMPOUND].to_numpy(), profiles[MOA].to_numpy()
    return pd.DataFrame(
        {
            COMPOUND: compounds,
            CONCENTRATION: profiles[CONCENTRATION].to_numpy(),
            MOA: moas,
            "neighbour_compound": np.where(has_neighbour, compounds[best], None),
            "neighbour_concentration": np.where(has_neighbour, profiles[CONCENTRATION].to_numpy()[best], np.nan),
            "predicted_moa": np.where(has_neighbour, moas[best], None),
            "similarity": np.where(has_neighbour, sim[np.arange(len(sim)), best], np.nan),
        }
    )


def batch_neighbours(profiles: pd.DataFrame, features: list[str]) -> dict[str, float | None]:
    """The batch structure left in the profiles: the fraction of treatments whose NSC neighbour
    (the nearest treatment of another compound) sits in their own batch, beside its chance level,
    the mean fraction of each query's candidates in its batch. Well above chance, same-batch
    neighbours look alike for reasons other than their MOA (NSC above NSCB says the same).

    Examples
    --------
    >>> import pandas as pd
    >>> treatments = pd.DataFrame({
    ...     "Metadata_Compound": ["a", "b", "c", "d"], "Metadata_Batch": ["W1", "W1", "W2", "W2"],
    ...     "CNN_x": [1.0, 0.9, 0.0, 0.1], "CNN_y": [0.0, 0.1, 1.0, 0.9]})
    >>> batch_neighbours(treatments, ["CNN_x", "CNN_y"])
    {'same_batch': 1.0, 'chance': 0.333}
    """
    sim = _admissible_similarity(profiles, features, exclude_batch=False, metric="cosine")
    admissible = np.isfinite(sim)
    queried = admissible.any(axis=1)
    if not queried.any():
        return {"same_batch": None, "chance": None}
    batches = profiles[BATCH].to_numpy()
    same = batches[:, None] == batches[None, :]
    neighbour_in_batch = same[np.arange(len(sim)), np.argmax(sim, axis=1)][queried]
    chance = (same & admissible).sum(axis=1)[queried] / admissible.sum(axis=1)[queried]
    return {"same_batch": round(float(neighbour_in_batch.mean()), 3), "chance": round(float(chance.mean()), 3)}


def knn_predictions(
    profiles: pd.DataFrame, features: list[str], k: int, exclude_batch: bool, metric: str = "cosine"
) -> pd.Series:
    """Majority MOA among the k most similar admissible treatments; a tie goes to the MOA
    of the nearest tied neighbour. None where no neighbour is admissible."""
    sim = _admissible_similarity(profiles, features, exclude_batch, metric)
    moas = profiles[MOA].to_numpy()
    predictions = []
    for row in sim:
        order = [j for j in np.argsort(-row, kind="stable")[:k] if np.isfinite(row[j])]
        if not order:
            predictions.append(None)
            continue
        votes = pd.Series(moas[order]).value_counts()
        tied = set(votes.index[votes == votes.iloc[0]])
        predictions.append(next(moas[j] for j in order if moas[j] in tied))
    return pd.Series(predictions, index=profiles.index, dtype=object)


def accuracy(neighbours: pd.DataFrame) -> float:
    scored = neighbours.dropna(subset=["predicted_moa"])
    return float((scored[MOA] == scored["predicted_moa"]).mean()) if len(scored) else float("nan")


def per_moa_accuracy(neighbours: pd.DataFrame) -> dict[str, float]:
    scored = neighbours.dropna(subset=["predicted_moa"])
    hits = scored[MOA] == scored["predicted_moa"]
    return {moa: float(v) for moa, v in hits.groupby(scored[MOA]).mean().items()}


def confusion(neighbours: pd.DataFrame, predicted: str = "predicted_moa") -> pd.DataFrame:
    """Counts of true MOA (rows) by predicted MOA (columns); ``predicted`` names the column of
    predictions (``nsc_predicted_moa`` in :func:`score`'s table)."""
    scored = neighbours.dropna(subset=[predicted])
    labels = sorted(neighbours[MOA].unique())
    return pd.crosstab(scored[MOA], scored[predicted]).reindex(index=labels, columns=labels, fill_value=0)


def single_batch_moas(profiles: pd.DataFrame) -> list[str]:
    """MOAs whose treatments all sit in one batch: NSCB cannot find them a same-MOA neighbour.

    In BBBC021 these are Kinase inhibitors and Cholesterol-lowering; dropping them leaves
    the common 92-treatment set.
    """
    batches = profiles.groupby(MOA)[BATCH].nunique()
    return sorted(batches[batches == 1].index)


def average_precision(profiles: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """copairs AP of each treatment retrieving same-MOA treatments of other compounds.

    Positives: same MOA, other compound; negatives: other MOAs (cosine similarity).
    """
    from copairs.map import average_precision as copairs_ap

    meta = profiles[[COMPOUND, CONCENTRATION, MOA]].reset_index(drop=True)
    return copairs_ap(
        meta,
        profile_matrix(profiles, features),
        pos_sameby=[MOA],
        pos_diffby=[COMPOUND],
        neg_sameby=[],
        neg_diffby=[MOA],
        progress_bar=False,
    )


def significance(ap: pd.DataFrame, sameby: list[str]) -> pd.DataFrame:
    """copairs' mean average precision per group of queries, with its p-value against a null of
    random rankings (NULL_SIZE draws, seeded) and the p-value corrected over groups
    (Benjamini-Hochberg); ``significant`` where that falls below SIGNIFICANCE. No queries (every
    treatment a single well, say), no rows."""
    from copairs.map import mean_average_precision

    columns = [*sameby, "mean_average_precision", "p_value", "corrected_p_value"]
    if ap.empty:
        return pd.DataFrame(columns=[*columns, "significant"])
    result = mean_average_precision(
        ap, sameby=sameby, null_size=NULL_SIZE, threshold=SIGNIFICANCE, seed=0, progress_bar=False
    )
    return result[columns].assign(significant=result["below_corrected_p"].astype(bool))


def phenotypic_activity(wells: pd.DataFrame, control: str, features: list[str]) -> pd.DataFrame:
    """Whether each treatment's profile stands out from the controls: its replicate wells retrieved
    against the control wells (copairs' phenotypic activity), one row per treatment with its mAP,
    p-values and ``significant`` (active).

    Parameters
    ----------
    wells : pandas.DataFrame
        Normalized well profiles, control wells included.
    control : str
        The control compound.
    features : list of str
        The feature columns compared (cosine; families balanced as in :func:`profile_matrix`).

    Returns
    -------
    pandas.DataFrame
        ``Metadata_Compound``, ``Metadata_Concentration``, ``mean_average_precision``,
        ``p_value``, ``corrected_p_value`` and ``significant``; treatments with one well, which
        have no replicate to retrieve, are left out.
    """
    from copairs.map import average_precision as copairs_ap

    meta = wells[[COMPOUND, CONCENTRATION]].reset_index(drop=True)
    meta = meta.assign(is_control=meta[COMPOUND].eq(control).to_numpy())
    ap = copairs_ap(
        meta,
        profile_matrix(wells, features),
        pos_sameby=[COMPOUND, CONCENTRATION],
        pos_diffby=[],
        neg_sameby=[],
        neg_diffby=["is_control"],
        progress_bar=False,
    )
    treated = ap[~ap["is_control"] & (ap["n_pos_pairs"] > 0)]
    return significance(treated, [COMPOUND, CONCENTRATION]).reset_index(drop=True)


def undefined_scores(profiles: pd.DataFrame) -> dict[str, str]:
    """The scores a screen cannot give, with the reason: NSC and mAP need an MOA with two
    compounds (a same-MOA neighbour of another compound); NSCB needs two batches, and its common
    set an MOA found in two batches."""
    reasons = {}
    if not (profiles.groupby(MOA)[COMPOUND].nunique() >= 2).any():
        reasons["nsc"] = reasons["map"] = "no MOA has two compounds, so no treatment has a same-MOA neighbour"
    if profiles[BATCH].nunique() < 2:
        reasons["nscb"] = reasons["nscb_common"] = "the screen has one batch"
    elif len(single_batch_moas(profiles)) == profiles[MOA].nunique():
        reasons["nscb_common"] = "every MOA sits in one batch"
    return reasons


def neighbour_scores(
    profiles: pd.DataFrame, features: list[str], undefined: dict[str, str]
) -> tuple[dict, pd.DataFrame]:
    """NSC, NSCB and NSCB on the common set by 1-nearest-neighbour (cosine, and Pearson beside it),
    their k-NN variants and per-MOA accuracies, None where ``undefined`` names them; and the
    per-treatment table of both neighbours (columns ``nsc_*`` and ``nscb_*``)."""

    def unless(kind, value):
        return None if kind in undefined else value

    nsc = nearest_neighbours(profiles, features, exclude_batch=False)
    nscb = nearest_neighbours(profiles, features, exclude_batch=True)
    dropped = single_batch_moas(profiles)
    common = profiles[~profiles[MOA].isin(dropped)].reset_index(drop=True)
    scores = {
        "nsc": unless("nsc", accuracy(nsc)),
        "nscb": unless("nscb", accuracy(nscb)),
        "nscb_scored_treatments": int(nscb["predicted_moa"].notna().sum()),
        "nscb_common": unless(
            "nscb_common", accuracy(nearest_neighbours(common, features, exclude_batch=True)) if len(common) else None
        ),
        "nscb_common_treatments": int(len(common)),
        "nscb_common_dropped_moas": dropped,
        "pearson": {
            "nsc": unless("nsc", accuracy(nearest_neighbours(profiles, features, False, "pearson"))),
            "nscb": unless("nscb", accuracy(nearest_neighbours(profiles, features, True, "pearson"))),
        },
        "knn": {
            f"k{k}": {
                kind: unless(
                    kind,
                    accuracy(
                        pd.DataFrame({MOA: profiles[MOA], "predicted_moa": knn_predictions(profiles, features, k, b)})
                    ),
                )
                for kind, b in (("nsc", False), ("nscb", True))
            }
            for k in KS
        },
        "per_moa_nsc": per_moa_accuracy(nsc) if "nsc" not in undefined else {},
        "per_moa_nscb": per_moa_accuracy(nscb) if "nscb" not in undefined else {},
    }
    table = nsc.rename(columns={c: f"nsc_{c}" for c in nsc.columns[3:]})
    return scores, table.join(nscb.iloc[:, 3:].add_prefix("nscb_"))


def precision_scores(profiles: pd.DataFrame, features: list[str], undefined: dict[str, str]) -> tuple[dict, np.ndarray]:
    """copairs' mean average precision by MOA, per MOA and with each MOA's significance, None where
    ``undefined`` names ``map``; and each treatment's average precision (NaN there)."""
    if "map" in undefined:
        empty = {"map": None, "map_per_moa": {}, "map_significant_moas": None, "map_significance": {}}
        return empty, np.full(len(profiles), np.nan)
    ap = average_precision(profiles, features)
    moa_significance = significance(ap, [MOA]).set_index(MOA)
    scores = {
        "map": float(ap["average_precision"].mean()),
        "map_per_moa": {m: float(v) for m, v in ap.groupby(MOA)["average_precision"].mean().items()},
        "map_significant_moas": float(moa_significance["significant"].mean()),
        "map_significance": {
            moa: {"p_value": float(row["p_value"]), "corrected_p_value": float(row["corrected_p_value"])}
            for moa, row in moa_significance.iterrows()
        },
    }
    return scores, ap["average_precision"].to_numpy()


def score(profiles: pd.DataFrame, features: list[str]) -> tuple[dict, pd.DataFrame]:
    """All scores of one feature set, and a per-treatment table of neighbours.

    Parameters
    ----------
    profiles : pandas.DataFrame
        Treatment profiles, as :func:`morphoprof.profiles.build_profiles` makes them.
    features : list of str
        The feature columns scored.

    Returns
    -------
    summary : dict
        ``nsc``, ``nscb``, ``nscb_common`` and their variants (:func:`neighbour_scores`), ``map``
        and its details (:func:`precision_scores`), counts, and the batch structure left
        (:func:`batch_neighbours`). Scores the screen cannot give (:func:`undefined_scores`) are
        None, with their reasons under ``undefined``.
    table : pandas.DataFrame
        Per treatment: its neighbours and predicted MOAs, and its average precision.
    """
    undefined = undefined_scores(profiles)
    neighbours, table = neighbour_scores(profiles, features, undefined)
    precision, table["average_precision"] = precision_scores(profiles, features, undefined)
    summary = {
        **neighbours,
        **precision,
        "n_treatments": int(len(profiles)),
        "n_compounds": int(profiles[COMPOUND].nunique()),
        "n_moas": int(profiles[MOA].nunique()),
        "n_batches": int(profiles[BATCH].nunique()),
        "n_features": len(features),
        "batch_neighbours": batch_neighbours(profiles, features),
        "undefined": undefined,
    }
    return summary, table


def shown(value: float | None, digits: int = 3) -> str:
    """A score for a log line or a title: 'n/a' where the screen cannot give it."""
    return "n/a" if value is None else f"{value:.{digits}f}"


RETRIEVAL = ("nsc", "nscb", "nscb_common", "map")  # the four scores a run is first judged by
HEADLINE = (*RETRIEVAL, "map_significant_moas", "batch_neighbours", "n_features")


def activity_summary(activity: pd.DataFrame) -> dict:
    """:func:`phenotypic_activity`'s table in a sentence: the share of treatments active, of how many."""
    return {
        "active_fraction": float(activity["significant"].mean()) if len(activity) else None,
        "n_treatments": int(len(activity)),
    }


def score_family(
    treatments: pd.DataFrame, family: str, wells: pd.DataFrame | None = None, control: str = "DMSO"
) -> tuple[dict, pd.DataFrame]:
    """Every score of one feature family (or '+'-joined families) of the treatment profiles
    (:func:`score`), named by ``feature_family``; given the normalized wells, each treatment's
    phenotypic activity against the ``control`` wells too (``activity`` in the summary, its
    columns in the table)."""
    columns = feature_columns(treatments, family)
    if not columns:
        raise ValueError(f"no {family!r} features among the profiles' columns (config features.level)")
    summary, table = score(treatments, columns)
    summary = {"feature_family": family, **summary}
    if wells is not None:
        activity = phenotypic_activity(wells, control, columns)
        summary["activity"] = activity_summary(activity)
        renamed = {c: f"activity_{c}" for c in ("mean_average_precision", "corrected_p_value")}
        activity = activity.rename(columns={**renamed, "significant": "active"}).drop(columns="p_value")
        table = table.merge(activity, on=[COMPOUND, CONCENTRATION], how="left")
    return summary, table


def evaluate(
    treatments: pd.DataFrame,
    family: str,
    baselines: list[str] = (),
    levels: dict[str, str] | None = None,
    wells: pd.DataFrame | None = None,
    control: str = "DMSO",
) -> tuple[dict, pd.DataFrame]:
    """Scores of one feature family (:func:`score_family`), with the headline scores
    (``HEADLINE``, and ``activity`` given the wells) of baseline families and of each profile
    level (``{"field": "CNN", ...}``) beside them; a level of the main family is not scored again."""
    summary, table = score_family(treatments, family, wells, control)
    summary.update(baselines={}, levels={})
    for key, others in (("baselines", {b: b for b in baselines}), ("levels", levels or {})):
        for name, other in others.items():
            scores = summary if other == family else score_family(treatments, other, wells, control)[0]
            kept = (*HEADLINE, "activity") if "activity" in scores else HEADLINE
            summary[key][name] = {"feature_family": other, **{k: scores[k] for k in kept}}
    return summary, table


def headline_row(summary: dict) -> dict:
    """The headline scores of one summary (:func:`score`'s, or a level's in :func:`evaluate`'s) as
    one flat table row: NSC, NSCB, mAP and the share of MOAs whose mAP is significant, the share of
    treatments active against the controls (where measured), and the batch structure left, the
    share of NSC neighbours in the query's batch beside its chance level."""
    return {
        **{k: summary[k] for k in (*RETRIEVAL, "map_significant_moas")},
        "active_fraction": summary.get("activity", {}).get("active_fraction"),
        "same_batch_neighbours": summary["batch_neighbours"]["same_batch"],
        "same_batch_chance": summary["batch_neighbours"]["chance"],
        "n_features": summary["n_features"],
    }


def normalization_table(wells: pd.DataFrame, control: str, settings: dict, families: list[str]) -> pd.DataFrame:
    """The headline scores (:func:`headline_row`) of each feature family under every normalization
    of ``profiles.NORMALIZATIONS``, the config's ``profiles`` block (``settings``) otherwise kept.

    A normalization that cannot run on these wells (TVN on a batch with one control well) gets one
    row per family with the reason in ``note``, and a warning: the others are still scored."""
    from .profiles import NORMALIZATIONS, build_profiles

    rows = []
    for method in NORMALIZATIONS:
        try:
            normalized, treatments = build_profiles(wells, control, {**settings, "normalization": method})
        except ValueError as err:
            log.warning("%s cannot run on these wells: %s", method, err)
            rows += [{"normalization": method, "family": family, "note": str(err)} for family in families]
            continue
        for family in families:
            summary, _ = score_family(treatments, family, normalized, control)
            rows.append({"normalization": method, "family": family, **headline_row(summary)})
            log.info(
                "%s %s: NSC %s NSCB %s mAP %s", method, family, *(shown(summary[k]) for k in ("nsc", "nscb", "map"))
            )
    return pd.DataFrame(rows)


def training_record(sidecar: dict, treatments: pd.DataFrame) -> dict:
    """What ``moa.json`` says of trained weights, from their JSON sidecar: the protocol, labels and
    backbone, how many classes and compounds they were trained on, and which of the scored
    compounds were among them (none under ``held_out``; every one under ``transductive``, whose
    scores are then not those of unseen compounds)."""
    seen = sorted(set(sidecar["compounds"]) & set(treatments[COMPOUND]))
    return {
        "weights": "trained",
        **{key: sidecar[key] for key in ("protocol", "labels", "backbone", "epochs", "chosen_epoch", "chosen_by")},
        "n_classes": len(sidecar["classes"]),
        "n_compounds_trained_on": len(sidecar["compounds"]),
        "scored_compounds_trained_on": seen,
    }


def weights_label(family: str, summary: dict) -> str:
    """Which weights a family's features come from, as the report's first page names them:
    ``trained (<protocol>)``, ``ImageNet``, or ``none`` for families of no network."""
    parts = family.split("+")
    if any(part.startswith(TRAINED) for part in parts):
        return f"trained ({summary['training']['protocol']})"
    return "ImageNet" if {FIELD_FAMILY, CELL_FAMILY} & set(parts) else "none"


def headline_table(summary: dict) -> pd.DataFrame:
    """The headline scores (:func:`headline_row`) of each scored profile level and each baseline
    family, one row each, from :func:`evaluate`'s summary: the numbers a run is judged by, as one
    table for the report's first page, with the weights each family's features come from
    (:func:`weights_label`). Baselines have ``baseline`` as their level; scores a screen cannot
    give stay null."""
    rows = [
        {
            "level": level,
            "feature_family": scores["feature_family"],
            "weights": weights_label(scores["feature_family"], summary),
            **headline_row(scores),
        }
        for level, scores in (
            *summary["levels"].items(),
            *(("baseline", scores) for scores in summary["baselines"].values()),
        )
    ]
    return pd.DataFrame(rows)


def pair_distances(profiles: pd.DataFrame, features: list[str]) -> dict[str, np.ndarray]:
    """Cosine distances of treatment pairs: same compound, same MOA (other compound), other MOA."""
    distance = 1 - similarity(profile_matrix(profiles, features))
    upper = np.triu_indices(len(profiles), k=1)
    compounds, moas = profiles[COMPOUND].to_numpy(), profiles[MOA].to_numpy()
    same_compound = (compounds[:, None] == compounds[None, :])[upper]
    same_moa = (moas[:, None] == moas[None, :])[upper]
    values = distance[upper]
    return {
        "same compound": values[same_compound],
        "same MOA, other compound": values[same_moa & ~same_compound],
        "other MOA": values[~same_moa],
    }
