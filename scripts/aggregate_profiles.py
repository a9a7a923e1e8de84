"""Rule aggregate_profiles: fields passing QC -> wells -> DMSO-normalized -> treatments."""

import pandas as pd

from morphoprof import metadata, profiles, workflow

log = workflow.start_job(snakemake)  # noqa: F821
fields = pd.concat([pd.read_parquet(p) for p in snakemake.input.features], ignore_index=True)  # noqa: F821
qc = pd.concat([pd.read_parquet(p) for p in snakemake.input.qc], ignore_index=True)  # noqa: F821
passed = set(qc.loc[qc["QC_Pass"], metadata.FIELD])
kept = fields[fields[metadata.FIELD].isin(passed)].drop(columns=[metadata.FIELD, metadata.SITE])
log.info("%d of %d fields pass QC", len(kept), len(fields))
settings = snakemake.params.settings  # noqa: F821
method = settings["aggregate"]
wells = profiles.aggregate(kept, profiles.WELL_KEYS, method)
wells = profiles.normalize_to_controls(wells, snakemake.params.control, settings["std_floor_quantile"])  # noqa: F821
wells.to_parquet(snakemake.output.wells, index=False)  # noqa: F821
treatments = profiles.treatment_profiles(wells, snakemake.params.control, method)  # noqa: F821
treatments.to_parquet(snakemake.output.treatments, index=False)  # noqa: F821
log.info("%d wells, %d treatments", len(wells), len(treatments))
