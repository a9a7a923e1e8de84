"""Rule extract_features: whole-field and/or single-cell CNN features (and the mean-intensity
baseline) of every field of a plate."""

import pandas as pd
from tqdm import tqdm

from morphoprof import features, jobs, measurement, metadata

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
    centres = {
        field_id: group[measurement.NUCLEUS_CENTRE].to_numpy()
        for field_id, group in pd.read_parquet(snakemake.input.cells).groupby(metadata.FIELD)
    }
    cell_embedder = features.ImageEmbedder(backbone, device, settings["cell_scale"], settings["precision"])
    cells = features.CellSettings(
        cell_embedder, centres, settings["crop_size"], tuple(settings["cell_aggregates"]), settings["cell_batch_size"]
    )
ids = list(fields[metadata.FIELD])
with tqdm(total=len(ids), desc=f"features {snakemake.wildcards.plate}") as progress:
    values = features.extract_plate(
        snakemake.input.images,
        ids,
        channels,
        image_embedder,
        cells,
        settings["batch_size"] or features.default_batch_size(device),
        snakemake.threads,
        progress,
    )
meta = fields[[c for c in fields.columns if c.startswith("Metadata_")]].reset_index(drop=True)
table = pd.concat([meta, values], axis=1)
table.to_parquet(snakemake.output[0], index=False)
log.info(
    "%d fields x %d features (%s, %s level, on %s, autocast %s)",
    len(table),
    values.shape[1],
    settings["backbone"],
    settings["level"],
    device,
    features.autocast_dtype(settings["precision"], device),
)
