"""The workflow on a real single-node SLURM (localhost), with the shipped SLURM profile.

The cluster is started by ../shared/tools/slurm-local.sh (Debian's slurmctld, slurmd and
munge, no systemd, one fake GPU). The test is skipped, with the reason, where that cannot
be done. It asserts that the plate jobs went through sbatch (GPU rules with --gpus=1) and
that the results equal a local run's.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import snakemake

ROOT = Path(__file__).resolve().parents[1]
SLURM_LOCAL = ROOT.parent / "shared" / "tools" / "slurm-local.sh"
TINY_SCREEN = {
    "plates": 2,
    "batches": 2,
    "sites": 1,
    "height": 96,
    "width": 96,
    "moas": 2,
    "compounds_per_moa": 2,
    "replicates": 1,
    "control_wells": 3,
    "cells_per_field": 30,
    "blank_fraction": 0.0,
    "debris_fraction": 0.0,
}
PLATE_RULES = [
    "simulate_plate",
    "qc_illumination",
    "correct_plate",
    "train_cellpose",
    "segment_plate",
    "extract_features",
]
CLUSTER_RULES = [*PLATE_RULES, "check_segmentation_model", "segmentation_qc"]  # the rules not run locally
GPU_RULES = ["train_cellpose", "check_segmentation_model", "segment_plate", "extract_features"]  # of this run


def _cluster_up() -> bool:
    return shutil.which("sinfo") is not None and subprocess.run(
        ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True
    ).stdout.strip() in {"idle", "mixed"}


@pytest.fixture(scope="module")
def slurm():
    if _cluster_up():
        yield
        return
    if not SLURM_LOCAL.exists():
        pytest.skip(f"no SLURM cluster answers and {SLURM_LOCAL} (the local-cluster script) is absent")
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("starting a local SLURM needs root and apt-get (Debian)")
    started = subprocess.run(
        ["bash", str(SLURM_LOCAL), "up"], capture_output=True, text=True, env={**os.environ, "SLURM_LOCAL_GPUS": "2"}
    )  # two GPU jobs at a time
    if started.returncode != 0 or not _cluster_up():
        pytest.skip(f"could not start a local SLURM: {started.stderr[-500:]}")
    yield
    # The cluster is left up: with slurm-client installed, every later snakemake start-up asks
    # slurmctld for its config (the SLURM plugin does) and waits ~9 s when nothing answers.
    # `bash ../shared/tools/slurm-local.sh down` stops it.
    subprocess.run(["scancel", "-u", "root"], capture_output=True)


def _workdir(path: Path) -> Path:
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    config["simulate"].update(TINY_SCREEN)
    config["segmentation"]["train"].update({"epochs": 3, "fields": 4})
    # three epochs find few nuclei, if any: keep every field, profile whole fields
    config["segmentation"]["qc"].update(min_cells=0, max_cells_factor=1000)
    config["features"]["level"] = "field"
    config["illumination"]["correct"] = False  # fewer, shorter jobs: the other tests cover it
    (path / "config").mkdir(parents=True)
    (path / "config/config.yaml").write_text(yaml.safe_dump(config))
    return path


def _test_profile(path: Path) -> Path:
    """The shipped profile, fitted to a 2-CPU localhost node whose one partition is 'debug'."""
    profile = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    profile["default-resources"]["slurm_partition"] = "debug"
    for rule in CLUSTER_RULES:  # two jobs at a time on the 2-CPU node, within its memory
        profile["set-resources"][rule] = {"slurm_partition": "debug", "mem_mb": 1500, "cpus_per_task": 1}
    # without slurmdbd, sacct fails quietly and the plugin would wait forever
    profile.update(
        {
            "slurm-status-command": "squeue",
            "slurm-init-seconds-before-status-checks": 1,
            "slurm-keep-successful-logs": True,
            "jobs": 4,
            "latency-wait": 10,
        }
    )
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump(profile))
    return path


def test_workflow_runs_through_slurm_and_matches_a_local_run(slurm, tmp_path):
    on_slurm = _workdir(tmp_path / "slurm")
    run = snakemake(on_slurm, "--profile", str(_test_profile(tmp_path / "profile")), "--verbose", timeout=900)
    log = run.stdout + run.stderr
    for rule in PLATE_RULES:
        assert f"rule_{rule}" in log and "sbatch call:" in log, rule
        assert (on_slurm / ".snakemake/slurm_logs" / f"rule_{rule}").is_dir(), rule
    calls = [line for line in log.splitlines() if "sbatch call:" in line]
    for rule in CLUSTER_RULES:
        of_rule = [line for line in calls if f"rule_{rule}" in line]
        assert of_rule and all(("--gpus=1" in line) == (rule in GPU_RULES) for line in of_rule), (rule, of_rule)
    assert not (on_slurm / ".snakemake/slurm_logs/rule_score_moa").exists()  # a local rule

    local = _workdir(tmp_path / "local")
    snakemake(local, "--cores", "2")
    # equal up to float32 rounding: SLURM jobs run torch on cpus_per_task threads, the local run on 2
    for table in ("results/profiles/treatments.parquet", "results/segmentation/SIM01.parquet"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(on_slurm / table), pd.read_parquet(local / table), check_exact=False, rtol=1e-3, atol=1e-3
        )
    slurm_scores = json.loads((on_slurm / "results/scores/moa.json").read_text())
    local_scores = json.loads((local / "results/scores/moa.json").read_text())
    assert (slurm_scores["nsc"], slurm_scores["nscb"]) == (local_scores["nsc"], local_scores["nscb"])
    assert slurm_scores["map"] == pytest.approx(local_scores["map"], abs=1e-6)
