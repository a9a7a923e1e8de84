"""Benchmark: the whole chain, simulated plates to CNN features, through Snakemake.

Builds a BBBC021-shaped simulated screen (by default 2 plates of 30 wells x 1 site at 1024x1280,
about 150 nuclei per field), runs Snakemake up to results/features/<plate>.parquet and
results/qc/segmentation/<plate>.parquet for every plate (simulate -> check_images -> qc ->
illumination -> correct -> train_cellpose -> segment -> features and segmentation QC),
reads the rules' benchmark files and prints per-rule seconds and the projected wall time of the
chain for 13,200 fields (BBBC021's size; goal: within 10 minutes on one H100-class GPU with 16 cores).

Projection assumptions (a rough estimate, not a measurement):
  - seconds per field come from this run on a few plates and scale linearly in fields; per-plate
    fixed costs (model loading, plate-wide bounds) are spread over this run's plates, which are
    smaller than BBBC021's (~240 fields), so they are over-counted;
  - simulate_plate (only the benchmark's input) and train_cellpose (a one-off) are reported apart
    and not projected; check_images (header reads, no benchmark file) is left out;
  - the GPU rules (segment_plate, extract_features) run one at a time per GPU slot:
    GPU-bound = sum of their s/field x 13,200 / K (--resources gpu=K);
  - the CPU rules (qc_plate, illumination_function summed over channels, correct_plate,
    segmentation_qc; 1 thread each) run in parallel: CPU-bound = sum of s/field x threads x 13,200 / cores;
  - across plates the two overlap, so the wall time is the larger of the two; Snakemake's scheduling,
    disk contention and the GPU rules' own CPU threads (read-ahead, mask workers) are ignored;
  - the times are this machine's: without a GPU the GPU rules ran on the CPU, so the projection is
    then for this machine, not for an H100. Other load on the machine makes them noisy.

The default run (60 fields) took about 4 minutes on 2 idle CPU cores; --sites 2 doubles the fields.

  python bench/chain.py [--plates 2] [--sites 1] [--size 1024 1280] [--cells 7.5] [--control-wells 6]
                        [--cores N] [--gpus-resource 1] [--keep DIR] [--snakemake-args "--scheduler greedy"]
"""

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

from morphoprof import simulate

ROOT = Path(__file__).resolve().parents[1]

BBBC021_FIELDS = 13_200
GPU_RULES = ["segment_plate", "extract_features"]
CPU_RULES = {"qc_plate": 1, "illumination_function": 1, "correct_plate": 1, "segmentation_qc": 1}  # rule: threads
SETUP_RULES = ["simulate_plate", "train_cellpose"]


def write_config(folder: Path, args) -> dict:
    """The default config with a BBBC021-sized simulated screen, written to folder/config; its simulate block."""
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["simulate"].update(
        plates=args.plates,
        batches=min(config["simulate"]["batches"], args.plates),
        sites=args.sites,
        height=args.size[0],
        width=args.size[1],
        cells_per_field=args.cells,
        control_wells=args.control_wells,
    )
    (folder / "config").mkdir(parents=True)
    (folder / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return config["simulate"]


def run_snakemake(folder: Path, plates: list[str], cores: int, gpus: int, extra: list[str]) -> float:
    """Run the chain up to every plate's features and segmentation QC (not upstream of the features,
    but part of every real run), logging to folder/snakemake.log; its wall seconds."""
    targets = [f"results/{kind}/{plate}.parquet" for plate in plates for kind in ("features", "qc/segmentation")]
    # targets first: --resources takes several values
    command = [
        sys.executable,
        "-m",
        "snakemake",
        *targets,
        "-s",
        str(ROOT / "Snakefile"),
        "--directory",
        str(folder),
        "--cores",
        str(cores),
        *extra,
        "--resources",
        f"gpu={gpus}",
    ]
    log = folder / "snakemake.log"
    start = time.perf_counter()
    with open(log, "w") as stream:
        result = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-60:])
        sys.exit(f"{tail}\nsnakemake failed (exit {result.returncode}); log: {log}")
    return time.perf_counter() - start


def rule_seconds(folder: Path) -> pd.Series:
    """Wall seconds per rule, summed over its benchmark files (plates, and channels where it has them)."""
    benchmarks = folder / "benchmarks"
    rows = [
        (tsv.stem if tsv.parent == benchmarks else tsv.parent.name, pd.read_csv(tsv, sep="\t")["s"].sum())
        for tsv in benchmarks.rglob("*.tsv")
    ]
    return pd.DataFrame(rows, columns=["rule", "s"]).groupby("rule")["s"].sum()


def gpu_device() -> str:
    """The device the GPU rules see: they run in this interpreter's environment."""
    import torch

    return f"CUDA: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "CPU"


def print_rules(seconds: pd.Series, fields: int) -> None:
    """Per-rule total seconds over plates (and channels) and seconds per field."""
    print(f"\n{'rule':24s} {'total s':>9s} {'s/field':>9s}")
    for group, rules in [("GPU", GPU_RULES), ("CPU", list(CPU_RULES)), ("not projected", SETUP_RULES)]:
        print(f"-- {group}")
        for rule in rules:
            per_field = "-" if rule == "train_cellpose" else f"{seconds[rule] / fields:.2f}"
            print(f"{rule:24s} {seconds[rule]:9.1f} {per_field:>9s}")
    print("(illumination_function: summed over channels; check_images: no benchmark file)")


def print_projection(seconds: pd.Series, fields: int, cores: int, gpus: int) -> None:
    """GPU-bound, CPU-bound and wall minutes for BBBC021's fields, scaled linearly from this run."""
    gpu_min = sum(seconds[r] / fields for r in GPU_RULES) * BBBC021_FIELDS / gpus / 60
    cpu_min = sum(seconds[r] / fields * threads for r, threads in CPU_RULES.items()) * BBBC021_FIELDS / cores / 60
    print(f"\nprojection for {BBBC021_FIELDS:,} fields (linear in fields, from this run):")
    print(f"  GPU-bound  {gpu_min:7.1f} min  {' + '.join(GPU_RULES)}, one job per GPU slot (gpu={gpus})")
    print(f"  CPU-bound  {cpu_min:7.1f} min  {' + '.join(CPU_RULES)} over {cores} cores")
    print(
        f"  wall time  {max(gpu_min, cpu_min):7.1f} min  the larger of the two "
        "(goal: within 10 minutes on one H100-class GPU with 16 cores)"
    )
    print(
        f"  not included: simulate_plate {seconds['simulate_plate'] / fields:.2f} s/field (benchmark input only), "
        f"train_cellpose {seconds['train_cellpose']:.0f} s (one-off)"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plates", type=int, default=2)
    parser.add_argument("--sites", type=int, default=1, help="fields per well (BBBC021: 4)")
    parser.add_argument("--size", type=int, nargs=2, default=(1024, 1280), metavar=("H", "W"))
    parser.add_argument(
        "--cells",
        type=float,
        default=7.5,
        help="simulate.cells_per_field: nuclei per 256x256 px area (7.5: ~150 per 1024x1280 field)",
    )
    parser.add_argument("--control-wells", type=int, default=6, help="DMSO wells per plate")
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--gpus-resource", type=int, default=1, metavar="K", help="snakemake --resources gpu=K")
    parser.add_argument("--keep", help="build the screen in this (new) folder and keep it")
    parser.add_argument("--snakemake-args", default="", help='more snakemake options, e.g. "--scheduler greedy"')
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        screen = write_config(folder, args)
        per_plate = simulate.screen_layout(simulate.ScreenParams.from_config(screen)).groupby("plate").size()
        fields = int(per_plate.sum())
        print(
            f"screen: {len(per_plate)} plates, fields per plate {', '.join(map(str, per_plate))} ({fields} fields), "
            f"{args.size[0]}x{args.size[1]} px x 3 channels, "
            f"~{args.cells * args.size[0] * args.size[1] / 256**2:.0f} nuclei requested per field"
        )
        print(f"running snakemake --cores {args.cores} --resources gpu={args.gpus_resource} in {folder}", flush=True)
        wall = run_snakemake(
            folder, list(per_plate.index), args.cores, args.gpus_resource, shlex.split(args.snakemake_args)
        )
        counts = pd.concat(
            pd.read_parquet(folder / f"results/segmentation/{plate}.parquet", columns=["Nuclei_Count"])
            for plate in per_plate.index
        )["Nuclei_Count"]
        print(f"chain wall time {wall:.0f} s; mean nuclei segmented per field {counts.mean():.0f}")
        print(f"GPU rules' device: {gpu_device()}")
        seconds = rule_seconds(folder)
        print_rules(seconds, fields)
        print_projection(seconds, fields, args.cores, args.gpus_resource)


if __name__ == "__main__":
    main()
