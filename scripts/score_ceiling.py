"""Rule score_ceiling: the simulated screen's ground-truth phenotypes scored like profiles."""

import pandas as pd

from morphoprof import families, jobs, scoring

log = jobs.start_job(snakemake)
truth = pd.read_csv(snakemake.input[0])
summary, _ = scoring.score(truth, families.feature_columns(truth))
ceiling = pd.DataFrame([{k: summary[k] for k in scoring.RETRIEVAL}])
ceiling.to_csv(snakemake.output[0], index=False)
log.info("ceiling: NSC %s NSCB %s mAP %s", *(scoring.shown(summary[k]) for k in ("nsc", "nscb", "map")))
