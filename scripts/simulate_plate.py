"""Rule simulate_plate: render one plate of the simulated screen with its ground-truth masks and its
true illumination field per channel (the shading an illumination function should recover). The raw
fields are written uncompressed, as BBBC021's microscope wrote them, so that the chain's benchmark
reads what a real screen costs (a zlib 1024x1280 plane takes about 15 ms of CPU to decode)."""

from pathlib import Path

from tqdm import tqdm

from morphoprof import images, jobs, simulate

log = jobs.start_job(snakemake)
params = simulate.ScreenParams.from_config(snakemake.params.screen)
plate = snakemake.wildcards.plate
image_dir, mask_dir = Path(snakemake.output.images), Path(snakemake.output.masks)
n_fields = int((simulate.screen_layout(params)["plate"] == plate).sum())
for row, raw, labels in tqdm(simulate.simulate_plate(params, plate), total=n_fields, desc=f"simulate {plate}"):
    for channel, plane in zip(simulate.CHANNELS, raw):
        images.write_tiff(simulate.image_path(image_dir.parent, plate, row["field"], channel), plane, compress=False)
    images.write_tiff(images.mask_path(mask_dir, row["field"]), labels)
plate_index = simulate.plate_names(params).index(plate)
for channel_index, channel in enumerate(simulate.CHANNELS):
    shading = simulate.illumination_field(params, plate_index, channel_index)
    images.write_tiff(Path(snakemake.output.illumination) / f"{channel}.tif", shading)
log.info("simulated %d fields of plate %s", n_fields, plate)
