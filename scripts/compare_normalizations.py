"""Rule compare_normalizations: NSC, NSCB and mAP of every normalization, side by side."""

import pandas as pd

from morphoprof import jobs, plots, profiles, scoring

log = jobs.start_job(snakemake)
wells = pd.read_parquet(snakemake.input[0])
rows = []
for method in profiles.NORMALIZATIONS:
    settings = {**snakemake.params.settings, "normalization": method}
    try:
        normalized, treatments = profiles.build_profiles(wells, snakemake.params.control, settings)
    except ValueError as err:  # e.g. TVN on a batch with a single control well: say so, score the rest
        log.warning("%s cannot run on these wells: %s", method, err)
        rows += [{"normalization": method, "family": family, "note": str(err)} for family in snakemake.params.families]
        continue
    for family in snakemake.params.families:
        summary, _ = scoring.score_family(treatments, family, normalized, snakemake.params.control)
        rows.append({"normalization": method, "family": family, **scoring.headline_row(summary)})
        log.info(
            "%s %s: NSC %s NSCB %s mAP %s", method, family, *(scoring.shown(summary[k]) for k in ("nsc", "nscb", "map"))
        )
table = pd.DataFrame(rows)
table.to_csv(snakemake.output.table, index=False)
plots.scores_by_method(table, snakemake.output.plot)
