"""Rule extract_features: whole-field and/or single-cell CNN features (and the mean-intensity
baseline) of every field of a plate; with features.export_cells, every cell's embedding too."""

import pandas as pd
from tqdm import tqdm

from morphoprof import features, jobs, metadata

log = jobs.start_job(snakemake)
settings = snakemake.params.settings
channels = snakemake.params.channels
fields = pd.read_parquet(snakemake.input.manifest)
device = jobs.pick_device()
backbone = features.load_backbone(settings["backbone"], settings["weights_dir"])
image_embedder, cells = None, None
if features.embeds_fields(settings["level"]):
    image_embedder = features.ImageEmbedder(backbone, device, settings["scale"], settings["precision"])
if features.embeds_cells(settings["level"]):
    cell_table = pd.read_parquet(snakemake.input.cells)
    cells = features.CellSettings(
        features.ImageEmbedder(backbone, device, settings["cell_scale"], settings["precision"]),
        features.cell_centres(cell_table),
        settings["crop_size"],
        tuple(settings["cell_aggregates"]),
        settings["cell_batch_size"],
        settings["export_cells"],
    )
ids = list(fields[metadata.FIELD])
with tqdm(total=len(ids), desc=f"features {snakemake.wildcards.plate}") as progress:
    values, cell_embeddings = features.extract_plate(
        snakemake.input.images,
        ids,
        channels,
        image_embedder,
        cells,
        settings["batch_size"] or features.default_batch_size(device),
        snakemake.threads,
        progress,
    )
meta = fields[metadata.metadata_columns(fields)].reset_index(drop=True)
table = pd.concat([meta, values], axis=1)
table.to_parquet(snakemake.output.features, index=False)
if cell_embeddings is not None:
    exported = features.cell_embedding_table(cell_table, ids, cell_embeddings, channels)
    exported.to_parquet(snakemake.output.cell_embeddings, index=False)
    log.info("%d cells' embeddings exported (%d columns each)", len(exported), cell_embeddings.shape[1])
log.info(
    "%d fields x %d features (%s, %s level, on %s, autocast %s)",
    len(table),
    values.shape[1],
    settings["backbone"],
    settings["level"],
    device,
    features.autocast_dtype(settings["precision"], device),
)
