"""Rule normalize_profiles: normalize wells against the controls, then aggregate treatments."""

import pandas as pd

from morphoprof import families, jobs, profiles

log = jobs.start_job(snakemake)
wells, treatments = profiles.build_profiles(
    pd.read_parquet(snakemake.input[0]), snakemake.params.control, snakemake.params.settings
)
wells.to_parquet(snakemake.output.wells, index=False)
treatments.to_parquet(snakemake.output.treatments, index=False)
log.info(
    "%s: %d wells, %d treatments, %d features",
    snakemake.params.settings["normalization"],
    len(wells),
    len(treatments),
    len(families.feature_columns(treatments)),
)
