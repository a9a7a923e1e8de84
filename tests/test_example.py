"""The example of one's own images (config/examples/own_images) runs end to end, through the
commands docs/inputs.md and README.md give, in a fresh folder: its tables, its annotated fields and
a Cellpose model trained on them, to defined MOA scores of its treatments."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
from conftest import snakemake

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = Path("config/examples/own_images")


def test_own_images_example_runs_end_to_end(tmp_path):
    (tmp_path / "config").mkdir()
    shutil.copy(ROOT / "config/config.yaml", tmp_path / "config/config.yaml")  # the workflow reads it first
    shutil.copytree(ROOT / EXAMPLE, tmp_path / EXAMPLE, ignore=shutil.ignore_patterns("images", "annotated"))
    made = subprocess.run(
        [sys.executable, str(EXAMPLE / "make_images.py")], cwd=tmp_path, capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr[-3000:]
    snakemake(tmp_path, "--cores", "2", "--configfile", str(tmp_path / EXAMPLE / "config.yaml"))

    table = pd.read_csv(tmp_path / EXAMPLE / "images.csv")
    moas = pd.read_csv(tmp_path / EXAMPLE / "moa.csv")
    treatments = pd.read_parquet(tmp_path / "results/profiles/treatments.parquet")
    assert sorted(treatments["Metadata_Compound"]) == sorted(moas["compound"])
    assert dict(zip(treatments["Metadata_Compound"], treatments["Metadata_MOA"])) == dict(
        zip(moas["compound"], moas["moa"])
    )
    scores = json.loads((tmp_path / "results/scores/moa.json").read_text())
    assert scores["undefined"] == {}
    assert (scores["n_treatments"], scores["n_compounds"], scores["n_moas"], scores["n_batches"]) == (4, 4, 2, 2)
    assert 0 <= scores["nsc"] <= 1 and 0 <= scores["nscb"] <= 1
    # the model trained on the four annotated fields finds nuclei in every field, none dropped
    counts = pd.concat(pd.read_parquet(p) for p in (tmp_path / "results/segmentation").glob("*.parquet"))
    assert len(counts) == len(table) and (counts["Nuclei_Count"] > 0).all()
    summary = pd.read_csv(tmp_path / "results/qc/summary.csv").set_index("Metadata_Plate")
    assert summary.loc["all", "kept"] == len(table)
