"""Rule train_cellpose: train a small Cellpose model on annotated nuclei: a user's folder of
image/label pairs, or the simulator's ground truth."""

import pandas as pd

from morphoprof import jobs, segmentation

log = jobs.start_job(snakemake)
settings = snakemake.params.settings
if "annotations" in snakemake.input.keys():
    pictures, masks = segmentation.training_pairs(snakemake.input.annotations, settings["channel"])
    log.info("%d annotated images in %s", len(pictures), snakemake.input.annotations)
else:
    pictures, masks = segmentation.ground_truth_pairs(
        pd.read_parquet(snakemake.input.manifest),
        snakemake.input.masks,
        snakemake.params.nuclei_channel,
        settings["fields"],
    )
log.info("training on %d images for %d epochs", len(pictures), settings["epochs"])
segmentation.train(
    pictures,
    masks,
    snakemake.output.model,
    epochs=settings["epochs"],
    seed=settings["seed"],
    device=jobs.pick_device(),
)
