"""Rule report_summary: the headline scores and the QC counts, the tables the report opens on."""

import json

import pandas as pd

from morphoprof import jobs, metadata, qc, scoring

log = jobs.start_job(snakemake)
with open(snakemake.input.scores) as scores:
    headline = scoring.headline_table(json.load(scores))
headline.to_csv(snakemake.output.scores, index=False, float_format="%.3f", na_rep="n/a")
fields, image_qc, segmentation_qc = (
    pd.concat([pd.read_parquet(p, columns=columns) for p in tables], ignore_index=True)
    for tables, columns in (
        (snakemake.input.manifests, [metadata.FIELD, metadata.PLATE, metadata.MOA]),
        (snakemake.input.qc, None),
        (snakemake.input.segmentation_qc, None),
    )
)
counts = qc.qc_summary(fields, image_qc, segmentation_qc)
counts.to_csv(snakemake.output.qc, index=False)
log.info("fields kept and dropped, per QC flag:\n%s", counts.to_string(index=False))
