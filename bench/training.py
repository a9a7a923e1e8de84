"""Training the feature backbone (rule train_features): its speed, and what it does to the scores.

1. Speed on the device present: training crops per second and seconds per epoch of
   ``training.train``'s step (augmentation, forward, backward, AdamW) on random crops, at the
   configured crop size and at 96 px, for the backbone given.
2. Scores (``--screens``): the workflow run through Snakemake with ``features.weights: trained`` on
   the default simulated screen and on a harder one, under each protocol; each run scores the
   ImageNet and the trained families side by side (moa.json ``levels``). Prints NSC, NSCB and
   mAP of both, and the trained minus ImageNet difference, for every level.

    python bench/training.py                      # speed only
    python bench/training.py --screens default hard --keep /tmp/bench-training
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from morphoprof import features, jobs, training  # noqa: E402

SCREENS = {
    "default": {},
    "hard": {"simulate": {"difficulty": 2.0, "phenotype_strength": 0.7, "noise": 1.5}},
}
PROTOCOLS = ("held_out", "transductive")


def crops_per_second(backbone: str, size: int, batch_size: int, steps: int, device: torch.device) -> float:
    """Training crops per second of the train step on random (3-channel) crops of ``size`` px."""
    classes = 8
    cells = training.TrainingCells(
        crops=torch.randint(0, 65535, (batch_size * (steps + 1), 3, size, size), dtype=torch.int32).to(torch.uint16),
        labels=np.arange(batch_size * (steps + 1)) % classes,
        plates=np.zeros(batch_size * (steps + 1), int),
        compounds=np.array(["x"] * (batch_size * (steps + 1))),
        validation=np.zeros(batch_size * (steps + 1), bool),
        classes=[str(k) for k in range(classes)],
    )
    _, history, _ = training.train(
        cells,
        features.load_backbone(backbone),
        epochs=2,  # the first epoch warms up
        learning_rate=1e-4,
        batch_size=batch_size,
        device=device,
    )
    return float(history["crops_per_second"].iloc[-1])


def run_screen(workdir: Path, changes: dict, protocol: str, cores: int, train: dict) -> tuple[dict, dict, float]:
    """moa.json and the trained weights' sidecar of the workflow on one screen and protocol, and the
    run's seconds; the workdir is reused, so a second protocol reruns only training onwards."""
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    for block, values in changes.items():
        config[block].update(values)
    config["features"]["weights"] = "trained"
    config["features"]["train"].update(train, protocol=protocol)
    (workdir / "config").mkdir(parents=True, exist_ok=True)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    started = time.perf_counter()
    command = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir)]
    subprocess.run([*command, "--cores", str(cores), "results/scores/moa.json"], check=True, capture_output=True)
    seconds = time.perf_counter() - started
    scores = json.loads((workdir / "results/scores/moa.json").read_text())
    sidecar = json.loads((workdir / "results/models/features.pt.json").read_text())
    return scores, sidecar, seconds


def score_rows(screen: str, protocol: str, scores: dict) -> list[dict]:
    """One row per level: the ImageNet and trained families' NSC, NSCB and mAP, and their differences."""
    rows = []
    for level, imagenet in scores["levels"].items():
        if level.startswith("trained_"):
            continue
        trained = scores["levels"][f"trained_{level}"]
        row = {"screen": screen, "protocol": protocol, "level": level}
        for key in ("nsc", "nscb", "map"):
            row[f"{key} imagenet"], row[f"{key} trained"] = imagenet[key], trained[key]
            row[f"{key} gain"] = trained[key] - imagenet[key]
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--batch-size", type=int, default=0, help="crops per step; 0: 256 on a GPU, 64 on a CPU")
    parser.add_argument("--steps", type=int, default=0, help="steps timed; 0: 50 on a GPU, 3 on a CPU")
    parser.add_argument("--screens", nargs="*", default=[], choices=sorted(SCREENS))
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="keep the screens' working directories here")
    parser.add_argument("--train", type=yaml.safe_load, default={}, help="features.train keys changed, as YAML")
    args = parser.parse_args()
    jobs.reuse_freed_memory()
    device = jobs.pick_device()
    gpu = device.type == "cuda"
    batch_size, steps = args.batch_size or (256 if gpu else 64), args.steps or (50 if gpu else 3)
    crop_size = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["features"]["crop_size"]
    for size in sorted({crop_size, 96}):
        rate = crops_per_second(args.backbone, size, batch_size, steps, device)
        print(f"{args.backbone} training at {size} px on {device}: {rate:,.0f} crops/s (batch {batch_size})")
        if size == 96 and gpu:
            print(f"  goal >= 20,000 crops/s at 96 px on a GPU: {'met' if rate >= 20000 else 'not met'}")
    rows = []
    for screen in args.screens:
        workdir = (args.keep or Path(tempfile.mkdtemp(prefix="bench-training-"))) / screen
        for protocol in PROTOCOLS:
            scores, sidecar, seconds = run_screen(workdir, SCREENS[screen], protocol, args.cores, args.train)
            history = pd.read_csv(workdir / "results/models/features_training.csv")
            crops, classes = sidecar["training_crops"], len(sidecar["classes"])
            print(
                f"{screen}, {protocol}: {crops} training crops of {classes} classes, {history['seconds'].mean():.1f} s "
                f"per epoch, kept epoch {sidecar['chosen_epoch']}; run {seconds:.0f} s"
            )
            rows += score_rows(screen, protocol, scores)
    if rows:
        table = pd.DataFrame(rows)
        print(table.to_string(index=False, float_format="{:.3f}".format))
        held_out = table[(table["protocol"] == "held_out")]
        for _, row in held_out.iterrows():
            met = row["nsc gain"] >= 0.05 and row["nscb gain"] >= 0
            print(
                f"goal (held_out, {row['screen']}, {row['level']}): NSC +{row['nsc gain']:.3f} (>= 0.05), "
                f"NSCB {row['nscb gain']:+.3f} (>= 0): {'met' if met else 'not met'}"
            )


if __name__ == "__main__":
    main()
