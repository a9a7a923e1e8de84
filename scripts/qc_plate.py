"""Rule qc_plate: per-field image measurements and blank/debris flags for one plate."""

import pandas as pd
from tqdm import tqdm

from morphoprof import images, jobs, metadata, qc

log = jobs.start_job(snakemake)
channels = snakemake.params.channels
fields = pd.read_parquet(snakemake.input.manifest)
rows = []
for _, row in tqdm(fields.iterrows(), total=len(fields), desc=f"QC {snakemake.wildcards.plate}"):
    rows.append(
        {metadata.FIELD: row[metadata.FIELD], **qc.field_measurements(images.read_field(row, channels), channels)}
    )
settings = snakemake.params.qc
flagged = qc.flag_fields(pd.DataFrame(rows), channels, settings["blank_contrast"], settings["debris_brightness"])
flagged.to_parquet(snakemake.output[0], index=False)
log.info("%d of %d fields pass QC", int(flagged["QC_Pass"].sum()), len(flagged))
