"""Rule measure_cellprofiler: CellProfiler's measurements (cp-measure) of every nucleus of a plate,
and of the cell around it where cells are segmented, per nucleus and as field means, the
CellProfiler feature family scored beside the CNN ones."""

import pandas as pd
from tqdm import tqdm

from morphoprof import jobs, measurement, metadata

log = jobs.start_job(snakemake)
fields = pd.read_parquet(snakemake.input.manifest)
ids = list(fields[metadata.FIELD])
with tqdm(total=len(ids), desc=f"CellProfiler measurements {snakemake.wildcards.plate}") as progress:
    objects = measurement.measure_plate(
        snakemake.input.images,
        snakemake.input.masks,
        ids,
        channels=snakemake.params.channels,
        cellprofiler=snakemake.params.cellprofiler,
        whole_cells=snakemake.params.cells,
        workers=snakemake.threads,
        progress=progress,
    )
metadata.with_field_metadata(fields, objects).to_parquet(snakemake.output.cells, index=False)
profiles = measurement.field_profiles(objects)
profiles.to_parquet(snakemake.output.fields, index=False)
log.info(
    "%d nuclei of %d fields: %d measurements each, %d in field profiles",
    len(objects),
    len(ids),
    objects.shape[1] - len(metadata.metadata_columns(objects)),
    profiles.shape[1] - 1,
)
