"""Rule train_cellpose: train a small Cellpose model on the simulator's ground-truth nuclei."""

import pandas as pd

from morphoprof import images, metadata, segmentation, workflow

log = workflow.start_job(snakemake)  # noqa: F821
settings = snakemake.params.settings  # noqa: F821
fields = pd.DataFrame(snakemake.params.fields)  # noqa: F821
channel = metadata.path_column(snakemake.params.nuclei_channel)  # noqa: F821
pairs = []
for _, row in fields.iterrows():
    mask = images.read_image(images.mask_path(snakemake.input.masks, row[metadata.FIELD]))  # noqa: F821
    if mask.max() > 0:
        pairs.append((images.read_image(row[channel]), mask))
    if len(pairs) == settings["fields"]:
        break
log.info("training on %d fields for %d epochs", len(pairs), settings["epochs"])
segmentation.train([p[0] for p in pairs], [p[1] for p in pairs], snakemake.output.model,  # noqa: F821
                   n_epochs=settings["epochs"], seed=settings["seed"], device=workflow.pick_device())
