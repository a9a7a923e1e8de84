"""Rule train_cellpose: train a small Cellpose model on annotated nuclei: a user's folder of
image/label pairs, or the simulator's ground truth."""

import pandas as pd

from morphoprof import images, jobs, metadata, segmentation

log = jobs.start_job(snakemake)
settings = snakemake.params.settings
if "annotations" in snakemake.input.keys():
    pictures, masks = segmentation.training_pairs(snakemake.input.annotations, settings["channel"])
    log.info("%d annotated images in %s", len(pictures), snakemake.input.annotations)
else:
    fields = pd.DataFrame(snakemake.params.fields)
    channel = metadata.path_column(snakemake.params.nuclei_channel)
    pictures, masks = [], []
    for _, row in fields.iterrows():
        mask = images.read_image(images.mask_path(snakemake.input.masks, row[metadata.FIELD]))
        if mask.max() > 0:
            pictures.append(images.read_image(row[channel]))
            masks.append(mask)
        if len(pictures) == settings["fields"]:
            break
log.info("training on %d images for %d epochs", len(pictures), settings["epochs"])
segmentation.train(
    pictures,
    masks,
    snakemake.output.model,
    n_epochs=settings["epochs"],
    seed=settings["seed"],
    device=jobs.pick_device(),
)
