"""Rule extract_features (and extract_trained_features): whole-field and/or single-cell CNN
features of every field of a plate, with ImageNet or trained weights; the mean-intensity baseline
with ImageNet's; with features.export_cells, every cell's embedding too."""

import pandas as pd
from tqdm import tqdm

from morphoprof import families, features, jobs

log = jobs.start_job(snakemake)
settings = snakemake.params.settings
fields = pd.read_parquet(snakemake.input.manifest)
cell_table = pd.read_parquet(snakemake.input.cells) if families.embeds_cells(settings["level"]) else None
device = jobs.pick_device()
with tqdm(total=len(fields), desc=f"{snakemake.rule} {snakemake.wildcards.plate}") as progress:
    table, exported = features.plate_features(
        snakemake.input.images,
        fields,
        cell_table,
        settings,
        device=device,
        workers=snakemake.threads,
        trained=snakemake.input.get("weights"),
        progress=progress,
    )
table.to_parquet(snakemake.output.features, index=False)
if exported is not None:
    exported.to_parquet(snakemake.output.cell_embeddings, index=False)
    log.info("%d cells' embeddings exported", len(exported))
log.info(
    "%d fields x %d columns (%s, %s level, %s weights, on %s, autocast %s)",
    *table.shape,
    settings["backbone"],
    settings["level"],
    "trained" if snakemake.input.get("weights") else "ImageNet",
    device,
    features.autocast_dtype(settings["precision"], device),
)
