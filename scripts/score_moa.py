"""Rule score_moa: 1-NN MOA accuracy (NSC, NSCB) of the treatment profiles, with plots."""

import json

import pandas as pd
import umap

from morphoprof import metadata, plots, profiles, scoring, workflow

log = workflow.start_job(snakemake)  # noqa: F821
treatments = pd.read_parquet(snakemake.input[0])  # noqa: F821
family = snakemake.params.family  # noqa: F821
columns = profiles.feature_columns(treatments, family)
if not columns:
    raise ValueError(f"config scoring.family: no {family!r} features in {snakemake.input[0]}")  # noqa: F821
summary, table = scoring.score(treatments, columns)
summary = {"feature_family": family, **summary, "baselines": {}}
for baseline in snakemake.params.baselines:  # noqa: F821
    baseline_summary, _ = scoring.score(treatments, profiles.feature_columns(treatments, baseline))
    summary["baselines"][baseline] = {k: baseline_summary[k] for k in ("nsc", "nscb", "n_features")}
with open(snakemake.output.scores, "w") as out:  # noqa: F821
    json.dump(summary, out, indent=2)
table.to_csv(snakemake.output.table, index=False)  # noqa: F821
nsc = scoring.nearest_neighbours(treatments, columns, exclude_batch=False)
plots.confusion_matrix(scoring.confusion(nsc), f"NSC 1-NN: accuracy {summary['nsc']:.2f}",
                       snakemake.output.confusion)  # noqa: F821
coords = umap.UMAP(n_neighbors=min(15, len(treatments) - 1), metric="cosine", random_state=0).fit_transform(
    treatments[columns].to_numpy())
plots.embedding(coords, treatments[metadata.MOA], treatments[metadata.BATCH], "UMAP of treatment profiles",
                snakemake.output.umap)  # noqa: F821
log.info("NSC %.3f NSCB %.3f", summary["nsc"], summary["nscb"])
