"""Scoring another tool's per-well profiles of BBBC021 with the same protocol."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from morphoprof import metadata as md

SCORE_COMMAND = str(Path(sys.executable).parent / "morphoprof-score")  # installed with the package


def _well_profiles(shared_data, signal: float, path: Path, plate_scales: float = 0.0):
    """BBBC021's real wells with CellProfiler-style columns: an MOA signature times ``signal`` plus
    noise; with ``plate_scales``, each plate also offsets and scales each feature its own way
    (log-normal scales of that sigma), as instruments and staining batches do."""
    folder = shared_data / "cytominergallery_bbbc021"
    fields = md.bbbc021_fields(
        folder / "BBBC021_v1_image.csv.gz", folder / "BBBC021_v1_moa.csv", ".", list(md.BBBC021_CHANNELS)
    )
    wells = fields[md.annotated(fields)].drop_duplicates([md.PLATE, md.WELL]).reset_index(drop=True)
    rng = np.random.default_rng(0)
    signatures = {moa: rng.normal(size=20) for moa in sorted(wells[md.MOA].unique())}
    signatures["DMSO"] = np.zeros(20)
    values = np.stack([signatures[m] for m in wells[md.MOA]]) * signal + rng.normal(size=(len(wells), 20))
    plates = wells[md.PLATE].to_numpy()
    for plate in np.unique(plates):
        on_plate = plates == plate
        scale, offset = np.exp(rng.normal(scale=plate_scales, size=20)), rng.normal(scale=plate_scales, size=20)
        values[on_plate] = offset + scale * values[on_plate]
    table = pd.DataFrame(values, columns=[f"Cells_AreaShape_F{i}" for i in range(20)])
    table.insert(0, "Image_Metadata_Well", wells[md.WELL])
    table.insert(0, "Image_Metadata_Plate", wells[md.PLATE])
    table.to_csv(path, index=False)
    return folder


def _score(shared_data, tmp_path, signal, plate_scales=0.0, normalization="zscore"):
    folder = _well_profiles(shared_data, signal, tmp_path / "wells.csv", plate_scales)
    subprocess.run(
        [
            SCORE_COMMAND,
            str(tmp_path / "wells.csv"),
            "--image-table",
            str(folder / "BBBC021_v1_image.csv.gz"),
            "--moa-table",
            str(folder / "BBBC021_v1_moa.csv"),
            "--plate-column",
            "Image_Metadata_Plate",
            "--well-column",
            "Image_Metadata_Well",
            "--family",
            "CellProfiler",
            "--normalization",
            normalization,
            "--out",
            str(tmp_path / "scores.json"),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads((tmp_path / "scores.json").read_text())


def test_bbbc021_well_profiles_go_through_the_same_protocol(shared_data, tmp_path):
    scores = _score(shared_data, tmp_path, signal=3.0)
    assert (scores["n_treatments"], scores["n_compounds"], scores["n_moas"]) == (103, 38, 12)
    assert scores["nscb_common_treatments"] == 92
    assert scores["nscb_common_dropped_moas"] == ["Cholesterol-lowering", "Kinase inhibitors"]
    assert scores["nsc"] > 0.95 and scores["map"] > 0.8
    assert scores["feature_family"] == "CellProfiler" and scores["n_features"] == 20


def test_the_published_per_plate_recipe_undoes_each_plate_s_own_scales(shared_data, tmp_path):
    """The Ljosa / cytominer gallery recipe (plate_zscore: each plate standardized against its own
    DMSO wells, treatment means, 1-NN) on wells whose plates each scale and offset every feature
    their own way: the answer is known, the scores of the same wells without those plate effects,
    to the last digit. The pooled std of zscore leaves the plate effects in, and scores lower."""
    keys = ("nsc", "nscb", "nscb_common", "map")
    clean = _score(shared_data, tmp_path, signal=1.0, normalization="plate_zscore")
    recipe = _score(shared_data, tmp_path, signal=1.0, plate_scales=1.0, normalization="plate_zscore")
    pooled = _score(shared_data, tmp_path, signal=1.0, plate_scales=1.0, normalization="zscore")
    for name, scores in (("clean", clean), ("recipe", recipe), ("zscore", pooled)):
        print(f"\n{name}: " + ", ".join(f"{k} {scores[k]:.3f}" for k in keys))
    assert recipe["normalization"] == "plate_zscore"
    assert [recipe[k] for k in keys] == pytest.approx([clean[k] for k in keys], abs=1e-9)
    assert pooled["nsc"] < recipe["nsc"] - 0.1 and pooled["map"] < recipe["map"]
    assert recipe["activity"]["n_treatments"] == 103


def test_profiles_without_moa_signal_score_near_chance(shared_data, tmp_path):
    scores = _score(shared_data, tmp_path, signal=0.0)
    assert scores["nsc"] < 0.35


def test_non_numeric_feature_is_named(tmp_path):
    table = pd.DataFrame({"Metadata_Plate": ["P"], "Metadata_Well": ["A01"], "Cells_Area": ["big"]})
    with pytest.raises(md.InputError, match=r"wells.csv: non-numeric .* \['Cells_Area'\]"):
        md.join_well_profiles(
            table, "wells.csv", pd.DataFrame(columns=[md.PLATE, md.WELL]), "Metadata_Plate", "Metadata_Well", "X"
        )


def _run(*args):
    return subprocess.run([SCORE_COMMAND, *map(str, args)], capture_output=True, text=True)


def _partial_config_arguments(
    shared_data, tmp_path, block: str, columns=("Image_Metadata_Plate", "Image_Metadata_Well")
):
    """The scoring command's arguments for BBBC021's wells with a partial config holding only ``block``."""
    folder = _well_profiles(shared_data, 3.0, tmp_path / "wells.csv")
    (tmp_path / "partial.yaml").write_text(block)
    return [
        tmp_path / "wells.csv",
        "--image-table",
        folder / "BBBC021_v1_image.csv.gz",
        "--moa-table",
        folder / "BBBC021_v1_moa.csv",
        "--plate-column",
        columns[0],
        "--well-column",
        columns[1],
        "--config",
        tmp_path / "partial.yaml",
        "--out",
        tmp_path / "scores.json",
    ]


def _score_with_partial_config(shared_data, tmp_path, block: str):
    """Run the scoring command with a partial config holding only ``block``; the scores and treatments."""
    arguments = _partial_config_arguments(shared_data, tmp_path, block)
    result = _run(*arguments, "--treatments", tmp_path / "treatments.parquet")
    assert result.returncode == 0, result.stderr
    return json.loads((tmp_path / "scores.json").read_text()), pd.read_parquet(tmp_path / "treatments.parquet")


def test_a_partial_config_lays_its_profiles_block_over_the_defaults(shared_data, tmp_path):
    median_scores, median = _score_with_partial_config(shared_data, tmp_path, "profiles:\n  aggregate: median\n")
    _, mean = _score_with_partial_config(shared_data, tmp_path, "profiles:\n  aggregate: mean\n")
    assert median_scores["normalization"] == "zscore"  # the default's, kept under the partial block
    features = [c for c in median.columns if not c.startswith("Metadata_")]
    assert len(features) == 20 and median.shape == mean.shape
    assert not np.allclose(median[features], mean[features])  # the block's aggregate was the one used


def test_the_installed_package_carries_its_defaults_and_schema(shared_data, tmp_path):
    """A wheel installed outside the checkout scores with a partial config: defaults and schema are package data."""
    root = Path(__file__).resolve().parents[1]
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, source / name)
    shutil.copytree(root / "config", source / "config")
    shutil.copytree(root / "scripts" / "morphoprof", source / "scripts" / "morphoprof", symlinks=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", tmp_path / "wheel", source],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "wheel").glob("morphoprof-*.whl")
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    arguments = _partial_config_arguments(shared_data, tmp_path, "profiles:\n  aggregate: median\n")
    result = subprocess.run(
        [sys.executable, "-c", "from morphoprof.cli import score_profiles; score_profiles()", *map(str, arguments)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path / "site")},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "scores.json").read_text())["normalization"] == "zscore"


@pytest.mark.parametrize(
    "config,columns,message",
    [
        (
            "profiles:\n  normalisation: tvn\n",
            ("Image_Metadata_Plate", "Image_Metadata_Well"),
            r"config profiles: Additional properties are not allowed \('normalisation' was unexpected\)",
        ),
        ("profiles: [\n", ("Image_Metadata_Plate", "Image_Metadata_Well"), r"partial.yaml: not a readable YAML config"),
        (
            "profiles:\n  aggregate: mean\n",
            ("Plate", "Well"),
            r"wells.csv: missing column\(s\) \['Plate', 'Well'\]; found 22 columns: \[.*\] \.\.\.",
        ),
    ],
)
def test_scoring_command_faults_are_one_line(shared_data, tmp_path, config, columns, message):
    import re

    result = _run(*_partial_config_arguments(shared_data, tmp_path, config, columns))
    assert result.returncode == 2
    assert re.search(message, result.stderr) and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_plates_the_image_table_lacks_are_an_error_not_a_drop():
    fields = pd.DataFrame(
        {
            md.PLATE: ["P1"],
            md.WELL: ["A01"],
            md.BATCH: ["B1"],
            md.COMPOUND: ["DMSO"],
            md.CONCENTRATION: [0.0],
            md.MOA: ["DMSO"],
        }
    )
    table = pd.DataFrame({"Plate": ["P1", "P 2", "P 3"], "Well": ["A1", "A01", "A01"], "Cells_Area": [1.0, 2.0, 3.0]})
    with pytest.raises(md.InputError, match=r"wells.csv: 2 plate\(s\) of the profile table are not in the image table"):
        md.join_well_profiles(table, "wells.csv", fields, "Plate", "Well", "X")
    joined = md.join_well_profiles(table.head(1), "wells.csv", fields, "Plate", "Well", "X")
    assert joined[md.WELL].tolist() == ["A01"] and joined["X_Cells_Area"].tolist() == [1.0]
