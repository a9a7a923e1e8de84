"""Rule segmentation_accuracy: each plate's nuclei masks against the simulator's ground truth."""

import pandas as pd

from morphoprof import images, jobs, measurement, metadata

log = jobs.start_job(snakemake)
rows = []
for plate, manifest, masks, truth in zip(
    snakemake.params.plates, snakemake.input.manifests, snakemake.input.masks, snakemake.input.truth
):
    field_ids = pd.read_parquet(manifest)[metadata.FIELD]
    scores = measurement.segmentation_accuracy(
        [images.read_image(images.mask_path(truth, f)) for f in field_ids],
        [images.read_image(images.mask_path(masks, f)) for f in field_ids],
        snakemake.params.iou,
    )
    rows.append({metadata.PLATE: plate, "iou_threshold": snakemake.params.iou, **scores})
    log.info("%s: AP@%.2f %.3f", plate, snakemake.params.iou, scores["average_precision"])
pd.DataFrame(rows).to_csv(snakemake.output[0], index=False)
