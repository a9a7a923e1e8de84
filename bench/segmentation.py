"""Benchmark: the segmentation rule against Cellpose's own command line on the same simulated fields.

  rule   - segmentation.segment_plate as the segment_plate rule runs it (model loading, stacks read
           ahead, batches of fields per network pass, one tile per field, masks, label TIFFs and the
           per-cell table in worker processes);
  cli    - python -m cellpose --dir <DNA images> --pretrained_model <same model> --save_tif --no_npy,
           the way users run Cellpose on a folder (one image at a time), same diameter and thresholds.

The model is a standard-size Cellpose U-Net (the command line builds no other) trained here for a
few epochs on the simulator's masks, so both sides run the same network and see nuclei.
Prints the ratio cli/rule (goal >= 2) and both AP@0.5 against the simulator's nuclei.

  python bench/segmentation.py [--fields 48] [--size 256 256] [--threads 2] [--epochs 40]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from morphoprof import images, jobs, measurement, metadata, screen, segmentation, simulate

SETTINGS = screen.segmentation_settings(  # the shipped config's, as the segment_plate rule gets them
    yaml.safe_load((Path(__file__).resolve().parents[1] / "config/config.yaml").read_text())
)


def timed(run):
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fields", type=int, default=48)
    parser.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    jobs.reuse_freed_memory()  # as every rule job does
    device = jobs.pick_device()
    channels = list(simulate.CHANNELS)
    params = simulate.ScreenParams(
        plates=1,
        batches=1,
        moas=1,
        sites=args.fields,
        height=args.size[0],
        width=args.size[1],
        blank_fraction=0,
        debris_fraction=0,
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ids, raws, truth = [], [], []
        for i, (_, raw, labels) in zip(range(args.fields), simulate.simulate_plate(params, "SIM01")):
            stack = np.stack([images.to_uint16(images.rescale(p, 100, 20000)) for p in raw.astype(np.float32)])
            images.write_tiff(images.corrected_path(tmp / "corrected", f"f{i:03d}"), stack)
            images.write_tiff(tmp / "dna" / f"f{i:03d}.tif", stack[0])  # the same nuclear images, for the CLI
            ids.append(f"f{i:03d}")
            raws.append(raw[0])
            truth.append(labels)
        model_path = tmp / "model" / "cellpose_bench.pth"
        segmentation.train(
            raws[:12], truth[:12], model_path, epochs=args.epochs, seed=0, nbase=(32, 64, 128, 256), device=device
        )
        diameter = float(segmentation.load_model(str(model_path), device).diam_labels)
        settings = {**SETTINGS, "diameter": diameter}

        def rule():
            model = segmentation.load_model(str(model_path), device)
            return segmentation.segment_plate(
                tmp / "corrected",
                ids,
                tmp / "masks",
                measurement.measure_objects,
                channels=channels,
                **{**settings, "model": model},
                workers=args.threads,
            )

        rule_seconds, (counts, per_cell) = timed(rule)
        command = [
            sys.executable,
            "-m",
            "cellpose",
            "--dir",
            str(tmp / "dna"),
            "--pretrained_model",
            str(model_path),
            "--diameter",
            str(diameter),
            "--chan",
            "0",
            "--chan2",
            "0",
            "--flow_threshold",
            "0.4",
            "--cellprob_threshold",
            "0.0",
            "--save_tif",
            "--no_npy",
            "--batch_size",
            "8",
        ]
        if device.type == "cuda":
            command.append("--use_gpu")
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        cli_seconds, finished = timed(lambda: subprocess.run(command, capture_output=True, text=True, env=env))
        if finished.returncode != 0:
            raise SystemExit(f"cellpose CLI failed:\n{finished.stderr[-3000:]}")
        cli_masks = [images.read_image(tmp / "dna" / f"{i}_cp_masks.tif") for i in ids]
        rule_masks = [images.read_image(images.mask_path(tmp / "masks", i)) for i in ids]
        ap = {
            name: measurement.average_precision(truth, masks)
            for name, masks in (("rule", rule_masks), ("cli", cli_masks))
        }

    n = args.fields
    print(
        f"{n} fields of {args.size[0]}x{args.size[1]}, {args.threads} threads, {device}; "
        f"{len(per_cell)} nuclei ({pd.Series(counts[metadata.NUCLEI_COUNT]).mean():.1f} per field)"
    )
    print(f"  segmentation rule      {n / rule_seconds:6.2f} fields/s   AP@0.5 {ap['rule']:.3f}")
    print(f"  cellpose command line  {n / cli_seconds:6.2f} fields/s   AP@0.5 {ap['cli']:.3f}")
    print(f"rule / command line:      {cli_seconds / rule_seconds:.2f}x  (goal >= 2)")


if __name__ == "__main__":
    main()
