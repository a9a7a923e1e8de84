"""Adding plates reruns only the new plates' jobs and the aggregation; changing a profile
parameter reruns only profiles and scoring. Asserted on the jobs a dry run plans."""

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import snakemake

from morphoprof import images, segmentation, simulate

ROOT = Path(__file__).resolve().parents[1]
DOWNSTREAM = {
    "aggregate_profiles": 1,
    "normalize_profiles": 1,
    "score_moa": 1,
    "compare_normalizations": 1,
    "report_summary": 1,
    "all": 1,
}


def _write_screen(folder: Path) -> pd.DataFrame:
    """A 3-plate simulated screen written as a user's generic image table would describe it."""
    params = simulate.ScreenParams(
        plates=3,
        batches=3,
        sites=1,
        height=64,
        width=64,
        moas=2,
        compounds_per_moa=3,
        replicates=1,
        control_wells=2,
        cells_per_field=12,
        blank_fraction=0,
        debris_fraction=0,
    )
    rows = []
    for plate in simulate.plate_names(params):
        for row, raw, _ in simulate.simulate_plate(params, plate):
            paths = {}
            for channel, plane in zip(simulate.CHANNELS, raw):
                paths[f"path_{channel}"] = simulate.image_path("images", plate, row["field"], channel)
                images.write_tiff(folder / paths[f"path_{channel}"], plane)
            rows.append({**row.to_dict(), **paths})
    simulate.moa_table(params)[["compound", "moa"]].to_csv(folder / "moa.csv", index=False)
    return pd.DataFrame(rows)


def _configure(workdir: Path, table: pd.DataFrame, **profile_changes) -> None:
    table.to_csv(workdir / "images.csv", index=False)
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    config["input"] = {
        "format": "table",
        "image_table": str(workdir / "images.csv"),
        "moa_table": str(workdir / "moa.csv"),
        "image_root": "",
    }
    config["segmentation"]["model"] = str(workdir / "model/nuclei.pth")
    # the untrained model finds few nuclei, if any: keep every field, profile whole fields
    config["segmentation"]["qc"].update(min_cells=0, max_cells_factor=1000)
    config["features"]["level"] = "field"
    config["profiles"].update(profile_changes)
    (workdir / "config").mkdir(exist_ok=True)
    (workdir / "config/config.yaml").write_text(yaml.safe_dump(config))


def _planned_jobs(workdir: Path) -> dict[str, int]:
    out = snakemake(workdir, "-n", "--quiet", "rules").stdout
    if "Nothing to be done" in out:
        return {}
    table = out[out.index("Job stats:") :]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m.group(1) != "total"}


@pytest.fixture(scope="module")
def two_plates_done(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("incremental")
    screen = _write_screen(workdir)
    model = segmentation.new_model(diam_mean=14.0)  # an untrained model file stands in for a user's
    (workdir / "model").mkdir()
    model.net.save_model(str(workdir / "model/nuclei.pth"))
    segmentation.sidecar(workdir / "model/nuclei.pth").write_text('{"nbase": [8, 16, 32, 256], "diam_mean": 14.0}')
    first_two = screen[screen["plate"] != "SIM03"]
    _configure(workdir, first_two)
    snakemake(workdir, "--cores", "2")
    assert _planned_jobs(workdir) == {}
    return workdir, screen, first_two


def test_adding_a_plate_reruns_only_its_jobs_and_the_aggregation(two_plates_done):
    workdir, screen, _ = two_plates_done
    _configure(workdir, screen)
    assert _planned_jobs(workdir) == {
        "check_images": 1,
        "qc_illumination": 1,
        "correct_plate": 1,
        "segment_plate": 1,
        "segmentation_qc": 1,
        "extract_features": 1,
        **DOWNSTREAM,
    }


def test_changing_a_normalization_parameter_reruns_only_profiles_and_scoring(two_plates_done):
    workdir, _, first_two = two_plates_done
    _configure(workdir, first_two, ridge=0.5)
    assert _planned_jobs(workdir) == {
        "normalize_profiles": 1,
        "score_moa": 1,
        "compare_normalizations": 1,
        "report_summary": 1,
        "all": 1,
    }
