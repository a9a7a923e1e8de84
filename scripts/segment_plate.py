"""Rule segment_plate: Cellpose labels of nuclei (and, if configured, whole cells) for every field
of a plate, per-field counts, and a per-cell table of centroids, areas and mean intensities."""

import pandas as pd
from tqdm import tqdm

from morphoprof import jobs, measurement, metadata, segmentation

log = jobs.start_job(snakemake)
settings = snakemake.params.settings
fields = pd.read_parquet(snakemake.input.manifest)
device = jobs.pick_device()
cells = settings["cells"]
loaded = {
    "model": segmentation.load_model(snakemake.params.model, device),
    "cells": {**cells, "model": segmentation.load_model(cells["model"], device) if cells["model"] else None},
}
with tqdm(total=len(fields), desc=f"segment {snakemake.wildcards.plate}") as progress:
    counts, per_cell = segmentation.segment_plate(
        snakemake.input.images,
        list(fields[metadata.FIELD]),
        snakemake.output.masks,
        measurement.measure_objects,
        channels=snakemake.params.channels,
        **{**settings, **loaded},
        workers=snakemake.threads,
        progress=progress,
    )
counts.to_parquet(snakemake.output.table, index=False)
per_cell = metadata.with_field_metadata(fields, per_cell)
per_cell.to_parquet(snakemake.output.cells, index=False)
log.info("segmented %d fields: %d nuclei", len(counts), len(per_cell))
