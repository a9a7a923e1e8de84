"""Rule correct_plate: illumination-corrected, percentile-normalized multi-channel fields of a plate."""

import numpy as np
import pandas as pd
from tqdm import tqdm

from morphoprof import illumination, images, jobs, metadata

log = jobs.start_job(snakemake)
plate = snakemake.wildcards.plate
settings = snakemake.params.intensity
fields = pd.read_parquet(snakemake.input.manifest)
functions = [images.read_image(path) for path in snakemake.input.functions]
dark = illumination.camera_dark(
    snakemake.params.dark_level,
    snakemake.params.dark_frames,
    fields[metadata.path_column(snakemake.params.channels[0])].iloc[0],
)
bounds = illumination.correct_plate(
    fields,
    snakemake.params.channels,
    np.stack(functions) if functions else None,
    settings["low_percentile"],
    settings["high_percentile"],
    snakemake.output[0],
    lambda rows, stage: tqdm(rows, total=len(fields), desc=f"{stage} {plate}"),
    dark,
)
log.info("plate %s percentile bounds per channel: %s", plate, dict(zip(snakemake.params.channels, bounds)))
