"""Rule aggregate_profiles: fields passing image and segmentation QC -> raw (unnormalized) well profiles."""

import pandas as pd

from morphoprof import jobs, metadata, profiles, qc

log = jobs.start_job(snakemake)
fields = pd.concat([pd.read_parquet(p) for p in snakemake.input.features], ignore_index=True)
for extra in ("cellprofiler", "trained"):  # features made by other rules, one table per plate
    if extra in snakemake.input.keys():
        measured = pd.concat([pd.read_parquet(p) for p in snakemake.input[extra]], ignore_index=True)
        fields = fields.merge(measured, on=metadata.FIELD, how="left")
unannotated = ~metadata.annotated(fields)
if unannotated.any():
    log.info("%d fields of compounds without an MOA left out of the profiles", int(unannotated.sum()))
    fields = fields[~unannotated].reset_index(drop=True)
image_qc, segmentation_qc = (
    pd.concat([pd.read_parquet(p) for p in tables], ignore_index=True)
    for tables in (snakemake.input.qc, snakemake.input.segmentation_qc)
)
for plate, why in qc.depleted_plates(fields, segmentation_qc).items():
    log.warning("plate %s lost most of its nuclei: %s (see results/plots/segmentation/%s_*.png)", plate, why, plate)
passed, blank = qc.passing_fields(
    fields, image_qc, segmentation_qc, snakemake.params.nuclear, snakemake.params.blank_contrast
)
if blank:
    log.warning("plate(s) %s left out: nuclear contrast far below the screen's other plates (blank plates)", blank)
kept = fields[passed]
nuclei = kept[[metadata.FIELD]].merge(segmentation_qc, on=metadata.FIELD, how="left")[metadata.NUCLEI_COUNT]
log.info("%d of %d fields pass image QC, segmentation QC and the blank-plate check", len(kept), len(fields))
wells = profiles.well_profiles(
    kept.drop(columns=[metadata.FIELD, metadata.SITE]), nuclei.to_numpy(), snakemake.params.method
)
wells.to_parquet(snakemake.output[0], index=False)
log.info("%d wells", len(wells))
