"""Benchmark: the whole chain, simulated plates to CNN features, through Snakemake.

Builds a BBBC021-shaped simulated screen (by default 2 plates of 30 wells x 1 site at 1024x1280,
about 150 nuclei per field), runs Snakemake up to results/features/<plate>.parquet and
results/qc/segmentation/<plate>.parquet for every plate (simulate -> check_images ->
qc_illumination -> correct -> train_cellpose -> segment -> features and segmentation QC),
reads the rules' benchmark files and prints per-rule seconds, CPU seconds and the projected wall
time of the chain for 13,200 fields (BBBC021's size; goal: within 10 minutes on one H100-class GPU
with 16 cores).

Each job's start-up (the interpreter, Snakemake's script preamble, the rule script's imports and,
for the GPU rules, loading the model onto the device) is timed directly, in fresh interpreters
run in the screen's folder, and taken out of the rules' totals: what is left, over the fields, is
each rule's per-field rate. Benchmark files' cpu_time is Snakemake's sampling of the job's
processes (every second for 30 s, then every 30 s), so a job's last seconds of CPU may be missed:
for jobs longer than 30 s it is a lower bound, and the wall seconds of a one-thread job on an idle
machine an upper one.

Projection assumptions (a rough estimate, not a measurement):
  - per-field rates come from this run and scale linearly in fields; start-ups count once per
    plate and rule, for BBBC021's 55 plates of 240 fields;
  - simulate_plate (only the benchmark's input) and train_cellpose (a one-off) are reported apart
    and not projected;
  - the GPU rules (segment_plate, extract_features) run one at a time per GPU slot:
    GPU-bound = sum of their (s/field x 13,200 + start-up x 55) / K (--resources gpu=K);
  - the CPU rules (check_images, qc_illumination, correct_plate, segmentation_qc; 1 thread each)
    run in parallel: CPU-bound = sum of their (CPU-s/field x 13,200 + start-up CPU-s x 55) / cores;
  - across plates the two overlap, so the wall time is the larger of the two; Snakemake's scheduling,
    disk contention and the GPU rules' own CPU threads (read-ahead, mask workers) are ignored;
  - the times are this machine's: without a GPU the GPU rules ran on the CPU, so the projection is
    then for this machine, not for an H100. Other load on the machine makes them noisy.

The default run (2 plates of 54 fields) takes about 10 minutes on 2 CPU cores; --plates 1 halves the fields.
With --until corrected the chain stops at the corrected stacks: the CPU stages alone, which a CPU
machine can measure at BBBC021's plate size (--plates 1 --sites 4: 216 fields, about 5 minutes on
2 cores), against their goal of at most 0.28 CPU-s per field from the rules' benchmark files.

  python bench/chain.py [--plates 2] [--sites 1] [--size 1024 1280] [--cells 7.5] [--control-wells 6]
                        [--replicates 2] [--model PATH] [--cores N] [--gpus-resource 1] [--keep DIR]
                        [--until features|corrected] [--snakemake-args "--scheduler greedy"]
"""

import argparse
import ast
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

from morphoprof import metadata, simulate

ROOT = Path(__file__).resolve().parents[1]

BBBC021_FIELDS, BBBC021_PLATES = 13_200, 55
GPU_RULES = ["segment_plate", "extract_features"]
CPU_RULES = {"check_images": 1, "qc_illumination": 1, "correct_plate": 1, "segmentation_qc": 1}  # rule: threads
CPU_STAGES = ["check_images", "qc_illumination", "correct_plate"]  # raw fields to corrected stacks
SETUP_RULES = ["simulate_plate", "train_cellpose"]
CPU_STAGES_GOAL = 0.28  # CPU-s per field, check_images to correct_plate, from the rules' benchmark files
MODEL_LOADS = {  # what a GPU rule's job does before its first field, beyond its imports
    "segment_plate": (
        "m = yaml.safe_load(open('config/config.yaml'))['segmentation']['model']; "
        "segmentation.load_model('results/models/cellpose_nuclei.pth' if m == 'train' else m, jobs.pick_device())"
    ),
    "extract_features": (
        "s = screen.feature_settings(yaml.safe_load(open('config/config.yaml'))); "
        "features.ImageEmbedder(features.load_backbone(s['backbone'], s['weights_dir']), jobs.pick_device(), "
        "s['scale'], s['precision'])"
    ),
}


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
        replicates=args.replicates,
    )
    if args.model:
        config["segmentation"]["model"] = args.model
    (folder / "config").mkdir(parents=True)
    (folder / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return config["simulate"]


def chain_targets(plates: list[str], until: str) -> list[str]:
    """Every plate's features and segmentation QC (not upstream of the features, but part of every
    real run); with ``until`` "corrected", every plate's corrected stacks."""
    if until == "corrected":
        return [f"results/corrected/{plate}" for plate in plates]
    return [f"results/{kind}/{plate}.parquet" for plate in plates for kind in ("features", "qc/segmentation")]


def run_snakemake(folder: Path, targets: list[str], cores: int, gpus: int, extra: list[str]) -> float:
    """Run the chain up to ``targets``, logging to folder/snakemake.log; its wall seconds."""
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


def rule_stats(folder: Path) -> pd.DataFrame:
    """Per rule, wall seconds (s) and CPU seconds (cpu_time) summed over its benchmark files, and its jobs."""
    benchmarks = folder / "benchmarks"
    rows = []
    for tsv in benchmarks.rglob("*.tsv"):
        record = pd.read_csv(tsv, sep="\t")
        rule = tsv.stem if tsv.parent == benchmarks else tsv.parent.name
        rows.append((rule, record["s"].sum(), pd.to_numeric(record["cpu_time"], errors="coerce").sum(), 1))
    return pd.DataFrame(rows, columns=["rule", "s", "cpu_time", "jobs"]).groupby("rule").sum()


def startup_code(rule: str) -> str:
    """What a rule's job runs before its first field: Snakemake's script preamble, the rule
    script's imports and, for a GPU rule, its model load."""
    tree = ast.parse((ROOT / "scripts" / f"{rule}.py").read_text())
    imports = [ast.unparse(node) for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    if rule in MODEL_LOADS:
        imports += ["import yaml", "from morphoprof import features, jobs, screen, segmentation", MODEL_LOADS[rule]]
    return "; ".join(["from snakemake import script", *imports])


def startup_seconds(folder: Path, rules: list[str], repeats: int = 3) -> pd.DataFrame:
    """Per rule, the median wall and CPU seconds of its start-up (:func:`startup_code`) in a fresh
    interpreter in the screen's folder (with the folder's model and config)."""
    rows = []
    for rule in rules:
        code, runs = startup_code(rule), []
        for _ in range(repeats):
            before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
            subprocess.run([sys.executable, "-c", code], cwd=folder, check=True, capture_output=True)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
            runs.append((time.perf_counter() - start, cpu))
        wall, cpu = pd.DataFrame(runs).median()
        rows.append((rule, wall, cpu))
    return pd.DataFrame(rows, columns=["rule", "startup_s", "startup_cpu"]).set_index("rule")


def gpu_device() -> str:
    """The device the GPU rules see: they run in this interpreter's environment."""
    import torch

    return f"CUDA: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "CPU"


def per_field(stats: pd.DataFrame, startup: pd.DataFrame, fields: int) -> pd.DataFrame:
    """Per rule: its totals, start-ups, and per-field wall and CPU seconds, gross (totals over
    fields) and net of its jobs' start-ups."""
    table = stats.join(startup, how="left").fillna({"startup_s": 0.0, "startup_cpu": 0.0})
    table["s_per_field"] = table["s"] / fields
    table["cpu_per_field"] = table["cpu_time"] / fields
    table["net_s_per_field"] = (table["s"] - table["jobs"] * table["startup_s"]).clip(lower=0) / fields
    table["net_cpu_per_field"] = (table["cpu_time"] - table["jobs"] * table["startup_cpu"]).clip(lower=0) / fields
    return table


def print_rules(table: pd.DataFrame) -> None:
    """Per rule: jobs, total wall and CPU seconds, start-up per job, and per-field rates."""
    print(
        f"\n{'rule':18s} {'jobs':>4s} {'total s':>8s} {'CPU s':>7s} {'start s':>7s} {'start CPU':>9s} "
        f"{'s/field':>8s} {'CPU/field':>9s} {'net s/f':>8s} {'net CPU/f':>9s}"
    )
    for group, rules in [("GPU", GPU_RULES), ("CPU", list(CPU_RULES)), ("not projected", SETUP_RULES)]:
        print(f"-- {group}")
        for rule in rules:
            if rule not in table.index:  # train_cellpose, given --model
                print(f"{rule:18s} (not run)")
                continue
            r = table.loc[rule]
            rates = (
                ""
                if rule == "train_cellpose"
                else f"{r.s_per_field:8.3f} {r.cpu_per_field:9.3f} {r.net_s_per_field:8.3f} {r.net_cpu_per_field:9.3f}"
            )
            totals = f"{int(r.jobs):4d} {r.s:8.1f} {r.cpu_time:7.1f} {r.startup_s:7.2f} {r.startup_cpu:9.2f}"
            print(f"{rule:18s} {totals} {rates}")
    stages = table.loc[CPU_STAGES]
    gross = stages["cpu_per_field"].sum()
    verdict = "met" if gross <= CPU_STAGES_GOAL else "NOT met"
    print(
        f"\nCPU stages ({' + '.join(CPU_STAGES)}): {gross:.3f} CPU-s per field "
        f"(benchmark cpu_time over fields; goal <= {CPU_STAGES_GOAL}: {verdict}), "
        f"{stages['net_cpu_per_field'].sum():.3f} net of start-ups "
        f"({stages['startup_cpu'].sum():.2f} CPU-s per plate); wall {stages['s_per_field'].sum():.3f} s per field"
    )
    if not set(GPU_RULES) <= set(table.index):  # --until corrected
        return
    gpu = table.loc[GPU_RULES]
    print(
        "GPU stages: "
        + ", ".join(
            f"{rule} {r.net_s_per_field:.3f} s per field (start-up {r.startup_s:.1f} s)" for rule, r in gpu.iterrows()
        )
    )


def print_projection(table: pd.DataFrame, cores: int, gpus: int, device: str) -> None:
    """GPU-bound, CPU-bound and wall minutes for BBBC021's fields and plates, from this run's rates."""
    gpu = table.loc[GPU_RULES]
    cpu = table.loc[list(CPU_RULES)]
    threads = pd.Series(CPU_RULES)
    gpu_min = (gpu["net_s_per_field"] * BBBC021_FIELDS + gpu["startup_s"] * BBBC021_PLATES).sum() / gpus / 60
    cpu_work = (cpu["net_cpu_per_field"] * BBBC021_FIELDS + cpu["startup_cpu"] * BBBC021_PLATES) * threads[cpu.index]
    cpu_min = cpu_work.sum() / cores / 60
    print(f"\nprojection for {BBBC021_FIELDS:,} fields in {BBBC021_PLATES} plates (linear in fields, from this run):")
    print(f"  GPU-bound  {gpu_min:7.1f} min  {' + '.join(GPU_RULES)} on {device}, one job per GPU slot (gpu={gpus})")
    print(f"  CPU-bound  {cpu_min:7.1f} min  {' + '.join(CPU_RULES)} over {cores} cores")
    print(
        f"  wall time  {max(gpu_min, cpu_min):7.1f} min  the larger of the two "
        "(goal: within 10 minutes on one H100-class GPU with 16 cores)"
    )
    print(
        f"  not included: simulate_plate {table.loc['simulate_plate', 's_per_field']:.2f} s/field "
        "(benchmark input only), "
        f"train_cellpose {table['s'].get('train_cellpose', 0.0):.0f} s (one-off)"
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
    parser.add_argument("--replicates", type=int, default=2, help="wells per treatment and plate")
    parser.add_argument("--model", help="a Cellpose model file (with its .json) to use instead of training one")
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--gpus-resource", type=int, default=1, metavar="K", help="snakemake --resources gpu=K")
    parser.add_argument("--keep", help="build the screen in this (new) folder and keep it")
    parser.add_argument(
        "--until",
        choices=["features", "corrected"],
        default="features",
        help="corrected: stop at the corrected stacks, timing the CPU stages alone",
    )
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
        targets = chain_targets(list(per_plate.index), args.until)
        wall = run_snakemake(folder, targets, args.cores, args.gpus_resource, shlex.split(args.snakemake_args))
        print(f"chain wall time {wall:.0f} s")
        if args.until == "corrected":
            startup = startup_seconds(folder, CPU_STAGES)
            print_rules(per_field(rule_stats(folder), startup, fields))
            return
        counts = pd.concat(
            pd.read_parquet(folder / f"results/segmentation/{plate}.parquet", columns=[metadata.NUCLEI_COUNT])
            for plate in per_plate.index
        )[metadata.NUCLEI_COUNT]
        print(f"mean nuclei segmented per field {counts.mean():.0f}")
        device = gpu_device()
        print(f"GPU rules' device: {device}")
        startup = startup_seconds(folder, [*GPU_RULES, *CPU_RULES])
        table = per_field(rule_stats(folder), startup, fields)
        print_rules(table)
        print_projection(table, args.cores, args.gpus_resource, device)


if __name__ == "__main__":
    main()
