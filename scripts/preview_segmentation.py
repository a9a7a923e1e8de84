"""Rule preview_segmentation: segment a few fields of the first plate with the current settings and
draw their outlines, to try segmentation settings in seconds, before running a plate."""

import numpy as np
import pandas as pd

from morphoprof import images, jobs, metadata, plots, segmentation

log = jobs.start_job(snakemake)
settings = snakemake.params.settings
fields = pd.read_parquet(snakemake.input.manifest)
shown = fields.iloc[metadata.evenly_spread(len(fields), snakemake.params.fields)]
nuclear = [images.read_image(row[metadata.path_column(snakemake.params.nuclear)]) for _, row in shown.iterrows()]
bounds = images.plate_bounds(([plane] for plane in nuclear), settings["low_percentile"], settings["high_percentile"])[0]
model = segmentation.load_model(snakemake.params.model, jobs.pick_device())
planes = [plane.astype(np.float32) for plane in nuclear]
batch, thresholds = settings["batch_size"], (settings["flow_threshold"], settings["cellprob_threshold"])
estimated = None if settings["diameter"] else segmentation.estimate_diameter(model, planes, bounds, batch, *thresholds)
diameter = settings["diameter"] or estimated or float(model.diam_labels)
source = "configured" if settings["diameter"] else "estimated" if estimated else "the model's own"
masks = segmentation.segment(model, planes, diameter, batch, *thresholds, bounds)
titles = [
    f"{f}: {int(m.max())} nuclei, diameter {diameter:.1f} px ({source})" for f, m in zip(shown[metadata.FIELD], masks)
]
plots.mask_overlays(
    [images.rescale(plane.astype(np.float32), *bounds) for plane in nuclear],
    [[m] for m in masks],
    titles,
    snakemake.output[0],
)
log.info("previewed %d fields: %s", len(masks), "; ".join(titles))
