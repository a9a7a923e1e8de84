"""Rule check_images: check every image of a plate from its header; write the plate's manifest.

The manifest is the plate jobs' input in place of thousands of image files, which keeps
the DAG small; it changes (and the plate reruns) when the plate's fields change.
"""

import pandas as pd

from morphoprof import images, jobs

log = jobs.start_job(snakemake)
fields = pd.DataFrame(snakemake.params.fields)
height, width = images.check_plate_images(fields, snakemake.params.channels)
fields.assign(Metadata_Height=height, Metadata_Width=width).to_csv(snakemake.output[0], index=False)
log.info("%d fields of %dx%d pixels checked", len(fields), height, width)
