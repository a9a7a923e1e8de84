"""Rule correct_plate: illumination-corrected, percentile-normalized multi-channel fields.

Two passes over the plate: the first samples corrected pixels for plate-wide 0.1/99.9
percentiles per channel, the second writes each field as a (channels, H, W) uint16 TIFF.
"""

import numpy as np
import pandas as pd
from tqdm import tqdm

from morphoprof import illumination, images, jobs, metadata

log = jobs.start_job(snakemake)
plate = snakemake.wildcards.plate
channels = snakemake.params.channels
settings = snakemake.params.intensity
fields = pd.read_parquet(snakemake.input.manifest)
function_paths = list(snakemake.input.functions)
function_stack = np.stack([images.read_image(p) for p in function_paths]) if function_paths else None


def corrected(row) -> np.ndarray:
    stack = images.read_field(row, channels)
    return stack if function_stack is None else stack / function_stack


rows = tqdm(fields.iterrows(), total=len(fields), desc=f"percentiles {plate}")
bounds = illumination.plate_bounds(
    (corrected(row) for _, row in rows), settings["low_percentile"], settings["high_percentile"]
)
log.info("plate %s percentile bounds per channel: %s", plate, dict(zip(channels, bounds)))
for _, row in tqdm(fields.iterrows(), total=len(fields), desc=f"correct {plate}"):
    stack = corrected(row)
    out = np.stack([images.to_uint16(illumination.rescale(p, *b)) for p, b in zip(stack, bounds)])
    images.write_tiff(images.corrected_path(snakemake.output[0], row[metadata.FIELD]), out)
