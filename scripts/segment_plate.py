"""Rule segment_plate: Cellpose labels of nuclei (and, if configured, whole cells) for every field
of a plate, per-field counts, and a per-cell table of centroids, areas and mean intensities."""

import pandas as pd
from tqdm import tqdm

from morphoprof import jobs, metadata, segmentation

log = jobs.start_job(snakemake)  # noqa: F821
settings = snakemake.params.settings  # noqa: F821
fields = pd.DataFrame(snakemake.params.fields)  # noqa: F821
device = jobs.pick_device()
nuclei_model = segmentation.load_model(snakemake.params.model, device)  # noqa: F821
cells = settings["cells"]
cell_model = segmentation.load_model(cells["model"], device) if cells["model"] else None
with tqdm(total=len(fields), desc=f"segment {snakemake.wildcards.plate}") as progress:  # noqa: F821
    counts, per_cell = segmentation.segment_plate(snakemake.input.images, list(fields[metadata.FIELD]),  # noqa: F821
                                                  snakemake.params.channels, snakemake.output.masks,  # noqa: F821
                                                  nuclei_model, settings, cell_model, cells["channel"],
                                                  snakemake.threads, progress)  # noqa: F821
counts.to_parquet(snakemake.output.table, index=False)  # noqa: F821
meta = fields[[c for c in fields.columns if c.startswith("Metadata_")]]
per_cell = meta.merge(per_cell, on=metadata.FIELD, how="right")
per_cell.to_parquet(snakemake.output.cells, index=False)  # noqa: F821
log.info("segmented %d fields: %d nuclei", len(counts), len(per_cell))
