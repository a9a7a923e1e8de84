"""Rule simulate_tables: the simulated screen as a generic image table and an MOA table, and its
ground truth as treatment profiles."""

from morphoprof import jobs, simulate

jobs.start_job(snakemake)
params = simulate.ScreenParams.from_config(snakemake.params.screen)
simulate.image_table(params).to_csv(snakemake.output.images, index=False)
simulate.annotated_moas(params).to_csv(snakemake.output.moa, index=False)
simulate.phenotype_profiles(params).to_csv(snakemake.output.phenotypes, index=False)
