"""Rule preview_segmentation: segment a few fields of the first plate with the current settings and
draw their outlines, to try segmentation settings in seconds, before running a plate."""

import pandas as pd

from morphoprof import images, jobs, plots, segmentation

log = jobs.start_job(snakemake)
fields = pd.read_parquet(snakemake.input.manifest)
shown, nuclear = segmentation.sample_fields(fields, snakemake.params.nuclear, snakemake.params.fields)
model = segmentation.load_model(snakemake.params.model, jobs.pick_device())
sample = segmentation.segment_sample(model, nuclear, **snakemake.params.settings)
titles = [
    f"{f}: {int(m.max())} nuclei, diameter {sample.diameter:.1f} px ({sample.source})"
    for f, m in zip(shown, sample.masks)
]
plots.mask_overlays(
    [images.rescale(plane, *sample.lowhigh) for plane in nuclear],
    [[m] for m in sample.masks],
    titles,
    snakemake.output[0],
)
log.info("previewed %d fields: %s", len(sample.masks), "; ".join(titles))
