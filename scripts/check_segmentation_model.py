"""Rule check_segmentation_model: segment a few raw fields of the first plate with the nuclei model
and the configured settings, and stop the run, before any plate is segmented, where the model finds
almost nothing (``segmentation.check_model``); a warning only where segmentation.qc.min_cells is 0,
which keeps fields without nuclei."""

import json

import pandas as pd

from morphoprof import images, jobs, metadata, segmentation

log = jobs.start_job(snakemake)
params = snakemake.params
fields = pd.read_parquet(snakemake.input.manifest)
checked, nuclear = segmentation.sample_fields(fields, params.nuclear, segmentation.DIAMETER_FIELDS)
truth = (
    [images.read_image(images.mask_path(snakemake.input.truth, f)) for f in checked]
    if "truth" in snakemake.input.keys()
    else None
)
name = f"the trained model {params.model}" if params.trained else f"segmentation.model {params.model!r}"
model = segmentation.load_model(params.model, jobs.pick_device())
summary = segmentation.check_model(
    model, nuclear, truth, name=name, plate=params.plate, trained=params.trained, **params.settings
)
if summary["problem"] and params.min_cells >= 1:
    log.error(summary["problem"])
    raise metadata.InputError(summary["problem"])
if summary["problem"]:
    log.warning("%s (going on: segmentation.qc.min_cells 0 keeps fields without nuclei)", summary["problem"])
log.info("%s: %s nuclei on fields %s", name, summary["nuclei"], checked)
with open(snakemake.output[0], "w") as out:
    json.dump({"plate": params.plate, "fields": checked, **summary}, out, indent=1)
