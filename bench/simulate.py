"""Benchmark: the simulator's render speed, on one core, for BBBC021-sized benchmark screens.

Four timings in one run, single-threaded (one process, BLAS/OpenMP threads set to 1):
  sparse  - simulate.render_field at --size with about --cells nuclei per field (BBBC021's density);
  dense   - simulate.render_field at --size at the default density (cells_per_field 40 per 256x256 px);
  small   - simulate.render_field at 256x256 at the default density (the shipped workflow's fields);
  plate   - simulate.simulate_plate at --size and --cells, render only: the plate's first --fields
            fields (DMSO and treated wells, blank and debris fields as they come; no TIFF writing).
render_field runs DMSO fields with no blank or debris fields. Prints fields/s and the mean nuclei
per field; goal: sparse >= 4 fields/s per core at 1024x1280 with about 150 cells.

  python bench/simulate.py [--fields 20] [--size 1024 1280] [--cells 150]
"""

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import itertools  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from morphoprof import simulate  # noqa: E402

GOAL_FIELDS_PER_S = 4.0


def time_render_field(params: simulate.ScreenParams, fields: int) -> tuple[float, float]:
    """Fields/s and mean nuclei per field of render_field on DMSO fields 0..fields-1 of plate 0."""
    pheno = simulate.treatment_phenotype(params, simulate.CONTROL, 0.0)
    gains = simulate.batch_gains(params, "Batch1", 0)
    shading = np.stack([simulate.illumination_field(params, 0, c) for c in range(len(simulate.CHANNELS))])
    simulate.render_field(params, 0, fields, pheno, gains, shading)  # warm-up
    start = time.perf_counter()
    nuclei = [simulate.render_field(params, 0, i, pheno, gains, shading)[1].max() for i in range(fields)]
    return fields / (time.perf_counter() - start), float(np.mean(nuclei))


def time_simulate_plate(params: simulate.ScreenParams, fields: int) -> tuple[float, float]:
    """Fields/s and mean nuclei per field of the first `fields` fields simulate_plate yields for SIM01."""
    start = time.perf_counter()
    nuclei = [labels.max() for _, _, labels in itertools.islice(simulate.simulate_plate(params, "SIM01"), fields)]
    return len(nuclei) / (time.perf_counter() - start), float(np.mean(nuclei))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fields", type=int, default=20)
    parser.add_argument("--size", type=int, nargs=2, default=(1024, 1280), metavar=("H", "W"))
    parser.add_argument("--cells", type=float, default=150, help="nuclei per field of --size in the sparse runs")
    args = parser.parse_args()
    height, width = args.size
    sparse_density = args.cells * 256**2 / (height * width)
    clean = {"blank_fraction": 0, "debris_fraction": 0}
    runs = [
        (
            "sparse",
            f"render_field {height}x{width}, cells_per_field {sparse_density:.2f}",
            lambda: time_render_field(
                simulate.ScreenParams(height=height, width=width, cells_per_field=sparse_density, **clean), args.fields
            ),
        ),
        (
            "dense",
            f"render_field {height}x{width}, cells_per_field 40",
            lambda: time_render_field(simulate.ScreenParams(height=height, width=width, **clean), args.fields),
        ),
        (
            "small",
            "render_field 256x256, cells_per_field 40",
            lambda: time_render_field(simulate.ScreenParams(**clean), args.fields * 10),
        ),
        (
            "plate",
            f"simulate_plate {height}x{width}, cells_per_field {sparse_density:.2f}",
            lambda: time_simulate_plate(
                simulate.ScreenParams(height=height, width=width, plates=1, batches=1, cells_per_field=sparse_density),
                args.fields,
            ),
        ),
    ]
    print(f"one core, {args.fields} fields per run ({args.fields * 10} at 256x256)")
    rates = {}
    for name, label, run in runs:
        rates[name], nuclei = run()
        print(f"  {name:6s} {label:48s} {rates[name]:7.2f} fields/s  {nuclei:6.1f} nuclei/field")
    verdict = "met" if rates["sparse"] >= GOAL_FIELDS_PER_S else "NOT met"
    print(
        f"sparse: {rates['sparse']:.2f} fields/s per core (goal >= {GOAL_FIELDS_PER_S:g} at 1024x1280, ~150 cells): "
        f"{verdict}"
    )


if __name__ == "__main__":
    main()
