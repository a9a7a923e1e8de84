"""Rule segmentation_qc: flag fields by cell count, plot the counts and mask outlines of a few fields."""

import pandas as pd

from morphoprof import images, jobs, metadata, plots, qc

log = jobs.start_job(snakemake)
plate = snakemake.wildcards.plate
settings = snakemake.params.settings
fields = pd.read_parquet(snakemake.input.manifest)
counts = fields[[metadata.FIELD, metadata.WELL]].merge(pd.read_parquet(snakemake.input.table), on=metadata.FIELD)
flagged = qc.flag_cell_counts(counts, settings["min_cells"], settings["max_cells_factor"])
flagged.drop(columns=metadata.WELL).to_parquet(snakemake.output.table, index=False)
plots.cell_counts(
    flagged,
    flagged[metadata.WELL],
    settings["min_cells"],
    qc.max_cell_count(counts[metadata.NUCLEI_COUNT], settings["max_cells_factor"]),
    f"{plate}: cells per field ({int(flagged[metadata.QC_PASS].sum())} of {len(flagged)} fields kept)",
    snakemake.output.counts,
)

shown = qc.overlay_fields(flagged, snakemake.params.overlays)
compartments = ["nuclei", "cells"] if snakemake.params.cells else ["nuclei"]
pictures, masks, titles = [], [], []
for _, row in shown.iterrows():
    field_id = row[metadata.FIELD]
    pictures.append(images.read_corrected(snakemake.input.images, field_id)[0])
    masks.append([images.read_image(images.mask_path(snakemake.input.masks, field_id, c)) for c in compartments])
    titles.append(f"{field_id}: {row[metadata.NUCLEI_COUNT]} nuclei{'' if row[metadata.QC_PASS] else ' (flagged)'}")
plots.mask_overlays(pictures, masks, titles, snakemake.output.overlays)
log.info("%d of %d fields flagged by cell count", int((~flagged[metadata.QC_PASS]).sum()), len(flagged))
