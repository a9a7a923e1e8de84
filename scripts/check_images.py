"""Rule check_images: check every image of a plate (headers; compressed ones decoded); write the plate's manifest.

The manifest is the plate's field table, checked: the one carrier of the plate's fields to its
other jobs, and their input in place of thousands of image files, which keeps the DAG small. It
changes (and the plate reruns) when the plate's fields change.
"""

import pandas as pd

from morphoprof import images, jobs

log = jobs.start_job(snakemake)
fields = pd.DataFrame(snakemake.params.fields)
height, width = images.check_plate_images(fields, snakemake.params.channels, snakemake.params.decode_compressed)
fields.to_parquet(snakemake.output[0], index=False)
log.info("%d fields of %dx%d pixels checked", len(fields), height, width)
