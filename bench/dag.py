"""Benchmark: Snakemake's planning time on a BBBC021-shaped screen.

Writes BBBC021's real image and MOA tables' layout as a generic image table pointing at
empty placeholder files (55 plates, 13,200 fields x 3 channels by default), then times a
dry run of the whole workflow on it and prints the job count (goal: at most 10 s).

  python bench/dag.py [--plates 55] [--wells 60] [--sites 4] [--keep DIR]
"""

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHANNELS = ["DAPI", "Tubulin", "Actin"]


def write_screen(folder: Path, plates: int, wells: int, sites: int) -> None:
    rows = ["plate,well,site,batch,compound,concentration," + ",".join(f"path_{c}" for c in CHANNELS)]
    moa = ["compound,moa", "DMSO,DMSO"]
    for p in range(plates):
        plate = f"Week{p // 6 + 1}_{p:05d}"
        (folder / plate).mkdir(parents=True)
        for w in range(wells):
            well = f"{'BCDEFG'[w % 6]}{w // 6 + 2:02d}"
            compound = "DMSO" if w < 6 else f"cpd{(p * wells + w) % 38}"
            for s in range(1, sites + 1):
                paths = []
                for c in CHANNELS:
                    path = folder / plate / f"{well}_s{s}_{c}.tif"
                    path.touch()
                    paths.append(str(path))
                rows.append(f"{plate},{well},{s},Week{p // 6 + 1},{compound},{0.1 * (w % 3 + 1):g}," + ",".join(paths))
    moa += [f"cpd{i},MOA{i % 12}" for i in range(38)]
    (folder / "images.csv").write_text("\n".join(rows) + "\n")
    (folder / "moa.csv").write_text("\n".join(moa) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plates", type=int, default=55)
    parser.add_argument("--wells", type=int, default=60)
    parser.add_argument("--sites", type=int, default=4)
    parser.add_argument("--keep", help="build the screen in this (new) folder and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        start = time.perf_counter()
        write_screen(folder / "images", args.plates, args.wells, args.sites)
        print(
            f"wrote {args.plates * args.wells * args.sites} fields x 3 placeholder files "
            f"in {time.perf_counter() - start:.1f} s"
        )
        config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
        config["input"] = {
            "format": "table",
            "image_table": str(folder / "images/images.csv"),
            "moa_table": str(folder / "images/moa.csv"),
            "image_root": "",
        }
        config["channels"] = CHANNELS
        config["segmentation"]["model"] = "nuclei"
        (folder / "config").mkdir()
        (folder / "config/config.yaml").write_text(yaml.safe_dump(config))
        start = time.perf_counter()
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "snakemake",
                "-s",
                str(ROOT / "Snakefile"),
                "--directory",
                str(folder),
                "-n",
                "--quiet",
                "rules",
            ],
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - start
        if result.returncode != 0:
            sys.exit(result.stdout[-2000:] + result.stderr[-4000:])
        total = re.search(r"^total\s+(\d+)", result.stdout + result.stderr, re.M)
        print(result.stdout.strip())
        print(f"dry run: {seconds:.1f} s for {total.group(1) if total else '?'} jobs (goal: at most 10 s)")


if __name__ == "__main__":
    main()
