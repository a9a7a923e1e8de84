"""Rule segment_plate: Cellpose nuclei labels for every field of a plate, and per-field counts."""

import numpy as np
import pandas as pd
from tqdm import tqdm

from morphoprof import features, illumination, images, metadata, segmentation, workflow

log = workflow.start_job(snakemake)  # noqa: F821
settings = snakemake.params.settings  # noqa: F821
fields = pd.DataFrame(snakemake.params.fields)  # noqa: F821
device = workflow.pick_device()
model = segmentation.load_model(snakemake.params.model, device)  # noqa: F821
folder = snakemake.input.images  # noqa: F821
rows = []
batch = max(settings["batch_size"], 1)
for ids in tqdm(list(features.batched(fields[metadata.FIELD], batch)), desc=f"segment {snakemake.wildcards.plate}"):  # noqa: F821
    nuclei = [illumination.from_uint16(images.read_stack(images.corrected_path(folder, f))[0]) for f in ids]
    labels = segmentation.segment(model, nuclei, settings["diameter"] or None, batch_size=batch,
                                  flow_threshold=settings["flow_threshold"],
                                  cellprob_threshold=settings["cellprob_threshold"])
    for field_id, mask in zip(ids, labels):
        images.write_tiff(images.mask_path(snakemake.output.masks, field_id), mask)  # noqa: F821
        areas = np.bincount(mask.ravel())[1:]
        areas = areas[areas > 0]
        rows.append({metadata.FIELD: field_id, "Cells_Count": len(areas),
                     "Cells_MeanArea": float(areas.mean()) if len(areas) else 0.0})
pd.DataFrame(rows).to_parquet(snakemake.output.table, index=False)  # noqa: F821
log.info("segmented %d fields", len(rows))
