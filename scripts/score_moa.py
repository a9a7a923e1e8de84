"""Rule score_moa: MOA retrieval scores of the treatment profiles, with plots."""

import json

import pandas as pd

from morphoprof import families, jobs, metadata, plots, scoring

log = jobs.start_job(snakemake)
treatments = pd.read_parquet(snakemake.input.treatments)
family = snakemake.params.family
summary, table = scoring.evaluate(
    treatments,
    family,
    snakemake.params.baselines,
    snakemake.params.levels,
    pd.read_parquet(snakemake.input.wells),
    snakemake.params.control,
)
if "training" in snakemake.input.keys():
    with open(snakemake.input.training) as sidecar:
        summary["training"] = scoring.training_record(json.load(sidecar), treatments)
with open(snakemake.output.scores, "w") as out:
    json.dump(summary, out, indent=2)
table.to_csv(snakemake.output.table, index=False)

columns = families.feature_columns(treatments, family)
plots.confusion_matrix(
    scoring.confusion(table, "nsc_predicted_moa"),
    f"NSC 1-NN: accuracy {scoring.shown(summary['nsc'], 2)}",
    snakemake.output.confusion,
)
values = scoring.profile_matrix(treatments, columns)
plots.embedding(
    scoring.umap_coordinates(values),
    treatments[metadata.MOA],
    treatments[metadata.BATCH],
    "UMAP of treatment profiles",
    snakemake.output.umap,
)
plots.similarity_heatmap(
    scoring.similarity(values), treatments[metadata.MOA], "Treatment similarity, by MOA", snakemake.output.heatmap
)
plots.distance_distributions(
    scoring.pair_distances(treatments, columns), f"{family} profiles", snakemake.output.distances
)
log.info("%s: NSC %s NSCB %s mAP %s", family, *(scoring.shown(summary[k]) for k in ("nsc", "nscb", "map")))
log.info(
    "NSC neighbours in the query's batch: %s (chance %s)",
    *(scoring.shown(summary["batch_neighbours"][k]) for k in ("same_batch", "chance")),
)
log.info(
    "phenotypic activity: %s of %d treatments active against the control wells",
    scoring.shown(summary["activity"]["active_fraction"], 2),
    summary["activity"]["n_treatments"],
)
for score, reason in summary["undefined"].items():
    log.warning("%s is not scored (null in moa.json): %s", score, reason)
for level, scores in summary["levels"].items():
    log.info(
        "level %s (%s): NSC %s NSCB %s",
        level,
        scores["feature_family"],
        scoring.shown(scores["nsc"]),
        scoring.shown(scores["nscb"]),
    )
