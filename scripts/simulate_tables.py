"""Rule simulate_tables: the simulated screen as a generic image table and an MOA table, and its
ground truth as treatment profiles."""

from morphoprof import jobs, simulate

jobs.start_job(snakemake)
params = simulate.ScreenParams.from_config(snakemake.params.screen)
layout = simulate.screen_layout(params)
for channel in simulate.CHANNELS:
    layout[f"path_{channel}"] = [
        simulate.image_path("images", p, f, channel) for p, f in zip(layout["plate"], layout["field"])
    ]
layout.to_csv(snakemake.output.images, index=False)
simulate.annotated_moas(params).to_csv(snakemake.output.moa, index=False)
simulate.phenotype_profiles(params).to_csv(snakemake.output.phenotypes, index=False)
