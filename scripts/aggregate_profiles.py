"""Rule aggregate_profiles: fields passing image and segmentation QC -> raw (unnormalized) well profiles."""

import pandas as pd

from morphoprof import metadata, profiles, workflow

log = workflow.start_job(snakemake)  # noqa: F821
fields = pd.concat([pd.read_parquet(p) for p in snakemake.input.features], ignore_index=True)  # noqa: F821
passed = set(fields[metadata.FIELD])
for name, tables in (("image", snakemake.input.qc), ("segmentation", snakemake.input.segmentation_qc)):  # noqa: F821
    qc = pd.concat([pd.read_parquet(p) for p in tables], ignore_index=True)
    passed &= set(qc.loc[qc["QC_Pass"], metadata.FIELD])
    log.info("%s QC: %d of %d fields pass", name, int(qc["QC_Pass"].sum()), len(qc))
if not passed:
    raise ValueError("no field passes both image and segmentation QC: see results/qc/ and "
                     "results/plots/segmentation/ (a model that finds no nuclei flags every field)")
kept = fields[fields[metadata.FIELD].isin(passed)].drop(columns=[metadata.FIELD, metadata.SITE])
log.info("%d of %d fields pass QC", len(kept), len(fields))
wells = profiles.aggregate(kept, profiles.WELL_KEYS, snakemake.params.method)  # noqa: F821
wells.to_parquet(snakemake.output[0], index=False)  # noqa: F821
log.info("%d wells", len(wells))
