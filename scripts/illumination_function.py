"""Rule illumination_function: the illumination function of one plate and channel."""

import pandas as pd
from tqdm import tqdm

from morphoprof import illumination, images, jobs, metadata, plots

log = jobs.start_job(snakemake)
plate, channel = snakemake.wildcards.plate, snakemake.wildcards.channel
settings = snakemake.params.settings
fields = pd.read_parquet(snakemake.input.manifest)
passed = set(pd.read_parquet(snakemake.input.qc).query("QC_Pass")[metadata.FIELD])
paths = fields.loc[fields[metadata.FIELD].isin(passed), metadata.path_column(channel)]
dark = illumination.camera_dark(
    settings["dark_level"], settings["dark_frames"], fields[metadata.path_column(channel)].iloc[0]
)
mean = illumination.running_mean(
    images.read_image(p).astype("float32") for p in tqdm(paths, desc=f"illumination {plate} {channel}")
)
illumination.check_dark_level(mean, dark, f"plate {plate} {channel}")
mean -= dark
function = illumination.illumination_function(mean, settings["smoothing"], settings["robust_percentile"])
images.write_tiff(snakemake.output.function, function)
plots.illumination(mean, function, f"{plate} {channel}: {len(paths)} fields", snakemake.output.plot)
log.info(
    "mean-field CV %.4f, after correction %.4f",
    illumination.coefficient_of_variation(mean),
    illumination.coefficient_of_variation(mean / function),
)
