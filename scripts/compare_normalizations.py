"""Rule compare_normalizations: NSC, NSCB and mAP of every normalization, side by side."""

import pandas as pd

from morphoprof import jobs, plots, scoring

jobs.start_job(snakemake)
table = scoring.normalization_table(
    pd.read_parquet(snakemake.input[0]), snakemake.params.control, snakemake.params.settings, snakemake.params.families
)
table.to_csv(snakemake.output.table, index=False)
plots.scores_by_method(table, snakemake.output.plot)
