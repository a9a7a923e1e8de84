"""What illumination correction does to the scores: the workflow on a simulated screen with and
without it (``illumination.correct``), the segmentation model trained once and reused (it is
trained on the raw simulated fields either way). Prints NSC, NSCB and mAP of both runs and the
difference; a correction that lowers NSC is the finding to look into.

    python bench/illumination.py                        # the default screen
    python bench/illumination.py --simulate '{difficulty: 2.0}' --keep /tmp/bench-illumination
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from morphoprof.scoring import shown  # noqa: E402

SCORES = ("nsc", "nscb", "map")


def run_screen(workdir: Path, simulate: dict, correct: bool, cores: int) -> dict:
    """moa.json of the workflow in ``workdir`` on the screen ``simulate`` changes, corrected or not."""
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["simulate"].update(simulate)
    config["illumination"]["correct"] = correct
    (workdir / "config").mkdir(parents=True, exist_ok=True)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir)]
    subprocess.run([*command, "--cores", str(cores), "results/scores/moa.json"], check=True, capture_output=True)
    return json.loads((workdir / "results/scores/moa.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--simulate", type=yaml.safe_load, default={}, help="simulate keys over the default's (YAML)")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="keep the two runs' folders here")
    args = parser.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="bench-illumination-"))
    corrected = run_screen(base / "corrected", args.simulate, True, args.cores)
    for kept in ("results/simulated", "results/models"):  # the same screen and segmentation model
        shutil.copytree(base / "corrected" / kept, base / "uncorrected" / kept, dirs_exist_ok=True)
    uncorrected = run_screen(base / "uncorrected", args.simulate, False, args.cores)
    print(f"screen: default config, simulate {args.simulate or '{}'}")
    print(f"{'score':6} {'corrected':>10} {'uncorrected':>12} {'difference':>11}")
    for key in SCORES:
        a, b = corrected[key], uncorrected[key]  # None where a score is undefined (moa.json's null)
        difference = f"{a - b:+.3f}" if a is not None and b is not None else "-"
        print(f"{key:6} {shown(a):>10} {shown(b):>12} {difference:>11}")
    if not args.keep:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
