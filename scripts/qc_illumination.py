"""Rule qc_illumination: one pass over a plate's raw fields for its image QC, pixel samples and
illumination functions (illumination.scan_plate)."""

import pandas as pd

from morphoprof import illumination, images, jobs, metadata, plots, qc

log = jobs.start_job(snakemake)
plate, channels = snakemake.wildcards.plate, snakemake.params.channels
scan = illumination.scan_plate(
    pd.read_parquet(snakemake.input.manifest), channels, **snakemake.params.qc, **snakemake.params.illumination
)
scan.qc.to_parquet(snakemake.output.table, index=False)
plots.qc_fields(scan.qc, channels[0], f"{plate}: image QC", snakemake.output.plot)
images.write_array(snakemake.output.samples, scan.samples)
passed = int(scan.qc[metadata.QC_PASS].sum())
log.info("%d of %d fields pass QC; flagged: %s", passed, len(scan.qc), {f: int(scan.qc[f].sum()) for f in qc.FLAGS})
for channel, path, plot in zip(
    scan.functions, snakemake.output.get("functions", []), snakemake.output.get("plots", [])
):
    mean, function = scan.means[channel], scan.functions[channel]
    images.write_tiff(path, function)
    plots.illumination(mean, function, f"{plate} {channel}: {passed} fields", plot)
    log.info(
        "%s: mean-field CV %.4f, after correction %.4f",
        channel,
        illumination.coefficient_of_variation(mean),
        illumination.coefficient_of_variation(mean / function),
    )
