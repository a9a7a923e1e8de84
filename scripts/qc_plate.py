"""Rule qc_plate: per-field image measurements and blank, debris, blurry and saturated flags for one plate."""

import pandas as pd
from tqdm import tqdm

from morphoprof import images, jobs, metadata, plots, qc

log = jobs.start_job(snakemake)
channels = snakemake.params.channels
fields = pd.read_parquet(snakemake.input.manifest)
rows = []
for _, row in tqdm(fields.iterrows(), total=len(fields), desc=f"QC {snakemake.wildcards.plate}"):
    rows.append(
        {metadata.FIELD: row[metadata.FIELD], **qc.field_measurements(images.read_planes(row, channels), channels)}
    )
settings = snakemake.params.qc
flagged = qc.flag_fields(
    pd.DataFrame(rows),
    channels,
    settings["blank_contrast"],
    settings["debris_brightness"],
    settings["blur_focus"],
    settings["saturated_percent"],
)
flagged.to_parquet(snakemake.output.table, index=False)
counts = {flag: int(flagged[flag].sum()) for flag in qc.FLAGS}
plots.qc_fields(flagged, channels[0], f"{snakemake.wildcards.plate}: image QC", snakemake.output.plot)
log.info("%d of %d fields pass QC; flagged: %s", int(flagged["QC_Pass"].sum()), len(flagged), counts)
