"""Rule correct_plate: illumination-corrected, percentile-normalized multi-channel fields of a plate."""

import numpy as np
import pandas as pd

from morphoprof import illumination, images, jobs

log = jobs.start_job(snakemake)
channels = snakemake.params.channels
functions = [images.read_image(path) for path in snakemake.input.functions]
bounds = illumination.correct_plate(
    pd.read_parquet(snakemake.input.manifest),
    np.stack(functions) if functions else None,
    np.load(snakemake.input.samples),
    snakemake.output[0],
    channels=channels,
    **snakemake.params.intensity,
    dark_level=snakemake.params.dark_level,
    dark_frames=snakemake.params.dark_frames,
)
log.info("plate %s percentile bounds per channel: %s", snakemake.wildcards.plate, dict(zip(channels, bounds)))
