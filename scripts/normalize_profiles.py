"""Rule normalize_profiles: normalize wells against the controls, then aggregate treatments."""

import pandas as pd

from morphoprof import jobs, profiles

log = jobs.start_job(snakemake)  # noqa: F821
wells, treatments = profiles.build_profiles(pd.read_parquet(snakemake.input[0]), snakemake.params.control,  # noqa: F821
                                            snakemake.params.settings)  # noqa: F821
wells.to_parquet(snakemake.output.wells, index=False)  # noqa: F821
treatments.to_parquet(snakemake.output.treatments, index=False)  # noqa: F821
log.info("%s: %d wells, %d treatments, %d features", snakemake.params.settings["normalization"],  # noqa: F821
         len(wells), len(treatments), len(profiles.feature_columns(treatments)))
