"""Rule check_images: check every image of a plate from its header; write the plate's manifest.

The manifest is the plate jobs' input in place of thousands of image files, which keeps
the DAG small; it changes (and the plate reruns) when the plate's fields change.
"""

import pandas as pd

from morphoprof import images, jobs

log = jobs.start_job(snakemake)  # noqa: F821
fields = pd.DataFrame(snakemake.params.fields)  # noqa: F821
height, width = images.check_plate_images(fields, snakemake.params.channels)  # noqa: F821
fields.assign(Metadata_Height=height, Metadata_Width=width).to_csv(snakemake.output[0], index=False)  # noqa: F821
log.info("%d fields of %dx%d pixels checked", len(fields), height, width)
