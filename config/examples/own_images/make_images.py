"""Write the example's TIFFs: the fields that images.csv names, and a few annotated nuclei fields.

The example stands in for a user's own screen: images.csv and moa.csv are written as a user
writes them, and this script draws the images they name with the workflow's simulator (small:
192x192 px, 12 fields, three 16-bit channels), so that no binary data ships with the project.
It also writes four annotated fields for Cellpose training, as Cellpose names them
(annotated/<name>.tif, the nuclear channel, beside annotated/<name>_masks.tif, its nuclei labels).

    python config/examples/own_images/make_images.py

Deterministic; rerunning it rewrites the same files. It stops if images.csv no longer matches
the screen it draws.
"""

from pathlib import Path

import pandas as pd

from morphoprof import images, simulate

HERE = Path(__file__).resolve().parent
SCREEN = simulate.ScreenParams(
    seed=0,
    plates=2,
    batches=2,
    sites=1,
    height=192,
    width=192,
    moas=2,
    compounds_per_moa=2,
    concentrations=(1.0,),
    replicates=2,
    control_wells=2,
    blank_fraction=0,
    debris_fraction=0,
)
ANNOTATED_PER_PLATE = 2  # the first fields of each plate, annotated


def main() -> None:
    table = pd.read_csv(HERE / "images.csv")
    by_site = table.set_index(["plate", "well", "site"])
    drawn = 0
    for plate in simulate.plate_names(SCREEN):
        for index, (row, raw, labels) in enumerate(simulate.simulate_plate(SCREEN, plate)):
            entry = by_site.loc[(plate, row["well"], row["site"])]
            if (entry["compound"], entry["batch"], float(entry["concentration"])) != (
                row["compound"],
                row["batch"],
                float(row["concentration"]),
            ):
                raise SystemExit(f"images.csv: {plate} {row['well']} does not hold {row['compound']} as drawn")
            for channel, plane in zip(simulate.CHANNELS, raw):
                images.write_tiff(HERE / entry[f"path_{channel}"], plane)
            if index < ANNOTATED_PER_PLATE:
                name = f"{plate}_{row['well']}_s{row['site']}"
                images.write_tiff(HERE / "annotated" / f"{name}.tif", raw[0])
                images.write_tiff(HERE / "annotated" / f"{name}_masks.tif", labels)
            drawn += 1
    if drawn != len(table):
        raise SystemExit(f"images.csv names {len(table)} fields; the example draws {drawn}")
    print(
        f"wrote {drawn} fields x {len(simulate.CHANNELS)} channels under {HERE / 'images'} and "
        f"{ANNOTATED_PER_PLATE * SCREEN.plates} annotated fields under {HERE / 'annotated'}"
    )


if __name__ == "__main__":
    main()
