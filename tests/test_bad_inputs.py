"""The catalogue of bad inputs: each stops the workflow early, with a message naming the culprit.

A tiny valid screen (one plate, a treated and a control well, two sites, three 16x16 channels)
is spoiled one way per case. Each case asserts the message and the stage where the run stops
(``parse``: while Snakemake plans, before any job; ``check_images``: the plate's first job, which
reads image headers), calling the package functions those stages call. A few cases go through
Snakemake itself, for the exit status and to show no output of a failed job is left behind. The
last cases are inputs that look odd but are accepted on purpose.
"""

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import yaml
from conftest import SNAKEMAKE, snakemake

from morphoprof import features, images, screen, segmentation
from morphoprof import metadata as md

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "config" / "config.schema.yaml"
DEFAULT_CONFIG = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
CHANNELS = ["DNA", "tubulin", "actin"]
WELLS = [("B02", "taxol", "1"), ("B03", "DMSO", "0")]


def _rows():
    return [
        {
            "plate": "P1",
            "well": well,
            "site": str(site),
            "compound": compound,
            "concentration": conc,
            **{f"path_{ch}": f"img/{well}_s{site}_{ch}.tif" for ch in CHANNELS},
        }
        for well, compound, conc in WELLS
        for site in (1, 2)
    ]


@pytest.fixture(autouse=True)
def cellpose_models_here(tmp_path, monkeypatch):
    """The valid screen segments with Cellpose's built-in ``nuclei`` model, whose presence is checked
    while planning: here, a folder holding its file (never loaded, as no case segments)."""
    folder = tmp_path / "cellpose_models"
    folder.mkdir()
    segmentation_model = folder / "nucleitorch_0"
    segmentation_model.write_bytes(b"")
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(folder))


def _valid_inputs(tmp_path: Path):
    """A valid screen: images, image table rows, MOA table text and config, to be spoiled."""
    (tmp_path / "img").mkdir()
    rng = np.random.default_rng(0)
    for row in _rows():
        for ch in CHANNELS:
            tifffile.imwrite(tmp_path / row[f"path_{ch}"], rng.integers(100, 4000, (16, 16)).astype(np.uint16))
    config = yaml.safe_load(yaml.safe_dump(DEFAULT_CONFIG))
    config["input"] = {
        "format": "table",
        "image_table": str(tmp_path / "images.csv"),
        "moa_table": str(tmp_path / "moa.csv"),
        "image_root": "",
    }
    config["segmentation"]["model"] = "nuclei"
    return {"rows": _rows(), "moa": "compound,moa\ntaxol,Microtubule stabilizers\n", "config": config}


def _write(tmp_path: Path, inputs: dict) -> None:
    table = tmp_path / "images.csv"
    if inputs["rows"]:
        pd.DataFrame(inputs["rows"]).to_csv(table, index=False)
    else:
        table.write_text(",".join(_rows()[0]) + "\n")
    (tmp_path / "moa.csv").write_text(inputs["moa"])
    (tmp_path / "config").mkdir(exist_ok=True)
    config = tmp_path / "config" / "config.yaml"
    text = inputs["config"] if isinstance(inputs["config"], str) else yaml.safe_dump(inputs["config"])
    config.write_text(text)


def _set(key, value):
    """Set a config key, dotted for a key in a block (``features.precision``)."""

    def spoil(inputs, tmp_path):
        *blocks, last = key.split(".")
        target = inputs["config"]
        for block in blocks:
            target = target[block]
        target[last] = value

    return spoil


def _config_text(text):
    def spoil(inputs, tmp_path):
        inputs["config"] = text

    return spoil


def _row_value(index, column, value):
    def spoil(inputs, tmp_path):
        inputs["rows"][index][column] = value

    return spoil


def _image(name, array, **options):
    def spoil(inputs, tmp_path):
        tifffile.imwrite(tmp_path / "img" / name, array, **options)

    return spoil


def _truncate(name):
    def spoil(inputs, tmp_path):
        path = tmp_path / "img" / name
        tifffile.imwrite(path, np.arange(256, dtype=np.uint16).reshape(16, 16), compression="zlib")
        path.write_bytes(path.read_bytes()[:-200])

    return spoil


def _corrupt(name):
    """A compressed image whose data is garbled inside an intact file: its header reads well."""

    def spoil(inputs, tmp_path):
        path = tmp_path / "img" / name
        tifffile.imwrite(path, np.arange(256, dtype=np.uint16).reshape(16, 16), compression="zlib")
        with tifffile.TiffFile(path) as tif:
            start = tif.pages[0].dataoffsets[0]
        data = bytearray(path.read_bytes())
        data[start : start + 16] = b"\xff" * 16
        path.write_bytes(bytes(data))

    return spoil


def _both(*spoils):
    def spoil(inputs, tmp_path):
        for each in spoils:
            each(inputs, tmp_path)

    return spoil


def _outside_root(inputs, tmp_path):
    inputs["config"]["input"]["image_root"] = str(tmp_path / "img")
    for row in inputs["rows"]:
        for ch in CHANNELS:
            row[f"path_{ch}"] = row[f"path_{ch}"].removeprefix("img/")
    inputs["rows"][0]["path_DNA"] = "../images.csv"


FIRST = "B02_s1_DNA.tif"
CASES = [
    # config, at parse time
    (
        "config typo",
        _set("features.backbnoe", "resnet50"),
        "parse",
        r"config features: Additional properties are not allowed \('backbnoe' was unexpected\)",
    ),
    ("config value out of range", _set("simulate.plates", 0), "parse", r"config simulate.plates: 0 is less than"),
    ("config unknown choice", _set("features.precision", "fp8"), "parse", r"config features.precision: 'fp8'"),
    ("config unknown input format", _set("input.format", "excel"), "parse", r"config input.format: 'excel'"),
    (
        "config channel name",
        _set("channels", ["DNA-1", "tubulin", "actin"]),
        "parse",
        r"config channels.0: 'DNA-1' does not match",
    ),
    (
        "config image table missing",
        _set("input.image_table", ""),
        "parse",
        r"config input.image_table: required when input.format is 'table'",
    ),
    (
        "config bbbc021 without root",
        _set("input.format", "bbbc021"),
        "parse",
        r"config input.image_root: required for bbbc021",
    ),
    (
        "config train without annotations",
        _set("segmentation.model", "train"),
        "parse",
        r"config segmentation.model: 'train' learns from the simulator's ground truth or from annotated images",
    ),
    (
        "config single cells kept without cells",
        _set("segmentation.qc", {**DEFAULT_CONFIG["segmentation"]["qc"], "min_cells": 0}),
        "parse",
        r"config segmentation.qc.min_cells: single-cell features",
    ),
    (
        "config cells exported without cells",
        _set("features", {**DEFAULT_CONFIG["features"], "level": "field", "export_cells": True}),
        "parse",
        r"config features.export_cells: cells are embedded only with features.level cell or both, not field",
    ),
    (
        "config cytoplasm channel unknown",
        _set("segmentation.cells", {"model": "cyto3", "channel": "mito", "diameter": 0}),
        "parse",
        r"config segmentation.cells.channel: 'mito' is not one of the channels",
    ),
    (
        "config dark level and dark frames both",
        _both(_set("illumination.dark_level", 100), _set("illumination.dark_frames", "img/dark.tif")),
        "parse",
        r"config illumination.dark_level: set it to 0 with illumination.dark_frames",
    ),
    (
        "config control in another case",
        _set("control", "dmso"),
        "parse",
        r"config control: 'dmso' is not a compound of the image table \(did you mean 'DMSO'\?\)",
    ),
    (
        "config YAML syntax",
        _config_text("input:\n  format: table\n image_table: x\n"),
        "parse",
        r"config/config.yaml: line 3, column \d+",
    ),
    (
        "config YAML python tag",
        _config_text("input: !!python/object/apply:os.system ['touch pwned']\n"),
        "parse",
        r"config/config.yaml: line 1, column \d+: could not determine a constructor",
    ),
    (
        "config simulated with other channels",
        _both(_set("input.format", "simulated"), _set("channels", ["DAPI", "Tubulin", "Actin"])),
        "parse",
        r"config channels: the simulated screen has channels \['DNA', 'tubulin', 'actin'\]",
    ),
    ("config model file missing", _set("segmentation.model", "nope.pth"), "parse", r"nope\.pth"),
    (
        "config model file not a Cellpose model",
        _both(_set("segmentation.model", "img/B02_s1_DNA.tif")),
        "parse",
        r"img/B02_s1_DNA.tif: not a Cellpose model file",
    ),
    (
        "config Cellpose built-in model unreachable",
        _set("segmentation.model", "cyto3"),
        "parse",
        r"config segmentation.model: Cellpose's built-in model 'cyto3': no file at .*cyto3, and .* cannot be reached",
    ),
    (
        "config backbone weights unreachable",
        _set("features.backbone", "resnet50"),
        "parse",
        r"config features.backbone: the ImageNet weights of resnet50: no file at .*resnet50-0676ba61\.pth",
    ),
    (
        "config paths outside the image root",
        _outside_root,
        "parse",
        r"P1_B02_s1 DNA: .*images\.csv resolves to .*, outside config input.image_root",
    ),
    # tables, at parse time
    (
        "table column missing",
        lambda s, t: [r.pop("well") for r in s["rows"]],
        "parse",
        r"images.csv: missing column\(s\) \['well'\]",
    ),
    (
        "table channel missing",
        lambda s, t: [r.pop("path_actin") for r in s["rows"]],
        "parse",
        r"images.csv: unknown channel\(s\) \['actin'\]",
    ),
    (
        "table duplicate site",
        _row_value(1, "site", "1"),
        "parse",
        r"images.csv: duplicate site P1/B02/site 1 \(lines \[2, 3\]\)",
    ),
    (
        "table duplicate site written A1 and A01",
        lambda s, t: s["rows"].append({**s["rows"][0], "well": "B2"}),
        "parse",
        r"images.csv: duplicate site P1/B02/site 1",
    ),
    (
        "table concentration not a number",
        _row_value(2, "concentration", "lots"),
        "parse",
        r"images.csv: line 4, column 'concentration': 'lots' is not a number",
    ),
    (
        "table site not whole",
        _row_value(3, "site", "1.5"),
        "parse",
        r"images.csv: line 5, column 'site': '1.5' is not a whole number",
    ),
    ("table site not a number", _row_value(0, "site", "one"), "parse", r"images.csv: line 2, column 'site': 'one'"),
    (
        "table without rows",
        lambda s, t: s.update(rows=[]),
        "parse",
        r"images.csv: the image table has a header but no rows",
    ),
    (
        "table plate with a slash",
        _row_value(0, "plate", "P/1"),
        "parse",
        r"images.csv: line 2: plate 'P/1' cannot name",
    ),
    (
        "table image missing",
        _row_value(0, "path_tubulin", "img/gone.tif"),
        "parse",
        r"1 image file\(s\) not found, e.g. P1_B02_s1 tubulin: .*gone\.tif",
    ),
    ("table path empty", _row_value(0, "path_DNA", ""), "parse", r"P1_B02_s1 DNA: empty path"),
    ("table path a directory", _row_value(0, "path_DNA", "img"), "parse", r"P1_B02_s1 DNA: .*img is a directory"),
    (
        "trained features held out, without unannotated compounds",
        _set("features.weights", "trained"),
        "parse",
        r"config features.train.protocol: held_out trains only on compounds without an MOA .* has 0 \(none\)",
    ),
    (
        "table plate without controls",
        lambda s, t: s["rows"].extend({**r, "plate": "P2"} for r in _rows()[:2]),
        "parse",
        r"plate\(s\) \['P2'\] have no 'DMSO' wells",
    ),
    (
        "moa table column missing",
        lambda s, t: s.update(moa="compound,mechanism\ntaxol,x\n"),
        "parse",
        r"moa.csv: missing column\(s\) \['moa'\]",
    ),
    (
        "moa table concentration not a number",
        lambda s, t: s.update(moa="compound,concentration,moa\ntaxol,x,y\n"),
        "parse",
        r"moa.csv: line 2, column 'concentration': 'x' is not a number",
    ),
    ("moa table missing", _set("input.moa_table", "/nowhere/moa.csv"), "parse", r"/nowhere/moa.csv: table not found"),
    (
        "image table missing",
        _set("input.image_table", "/nowhere/images.csv"),
        "parse",
        r"/nowhere/images.csv: table not found",
    ),
    # images, in the plate's first job (headers)
    (
        "image not a TIFF",
        lambda s, t: (t / "img" / FIRST).write_bytes(b"not a tiff"),
        "check_images",
        r"B02_s1_DNA.tif: not a readable TIFF",
    ),
    (
        "image RGB",
        _image(FIRST, np.zeros((16, 16, 3), np.uint8), photometric="rgb"),
        "check_images",
        r"B02_s1_DNA.tif: expected a 2-D grey image, got shape \(16, 16, 3\)",
    ),
    (
        "image a stack of pages",
        _image(FIRST, np.zeros((5, 16, 16), np.uint16)),
        "check_images",
        r"B02_s1_DNA.tif: a stack of 5 images; expected one 2-D grey image per file",
    ),
    ("image truncated", _truncate(FIRST), "check_images", r"B02_s1_DNA.tif: truncated: its image data ends at byte"),
    ("image compressed data corrupt", _corrupt(FIRST), "check_images", r"B02_s1_DNA.tif: not a readable TIFF"),
    (
        "image of another size",
        _image("B03_s2_DNA.tif", np.zeros((16, 17), np.uint16)),
        "check_images",
        r"B03_s2_DNA.tif: 16x17 pixels, but the plate's other images are 16x16",
    ),
    (
        "image of another pixel type",
        _image("B03_s2_DNA.tif", np.zeros((16, 16), np.float32)),
        "check_images",
        r"B03_s2_DNA.tif: float32 pixels, but the plate's other DNA images are uint16",
    ),
    (
        "image of booleans",
        _image(FIRST, np.zeros((16, 16), bool)),
        "check_images",
        r"B02_s1_DNA.tif: unsupported pixel type bool",
    ),
]
ACCEPTED = [
    ("wells written A1 and A01 are one well", lambda s, t: s["rows"][2].update(well="B3")),
    (
        "channels of different pixel types",
        lambda s, t: [tifffile.imwrite(t / r["path_actin"], np.zeros((16, 16), np.uint8)) for r in s["rows"]],
    ),
]


def _check_names(cases):
    return [case[0] for case in cases]


def _plan(tmp_path: Path, monkeypatch) -> pd.DataFrame:
    """What the Snakefile runs while Snakemake plans, here in this process: the config file, then
    ``screen.plan``. Returns the field table."""
    monkeypatch.chdir(tmp_path)
    screen.check_yaml("config/config.yaml")
    return screen.plan(yaml.safe_load(Path("config/config.yaml").read_text()), SCHEMA)


def _reachable(url: str) -> bool:
    import urllib.request

    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=5).close()
    except OSError:
        return False
    return True


def _check_images(fields: pd.DataFrame) -> None:
    """What each plate's check_images job runs."""
    for plate in fields[md.PLATE].unique():
        images.check_plate_images(md.plate_fields(fields, plate), CHANNELS)


@pytest.mark.parametrize(("name", "spoil", "stage", "message"), CASES, ids=_check_names(CASES))
def test_bad_input_stops_early_naming_the_culprit(tmp_path, monkeypatch, name, spoil, stage, message):
    if name == "config backbone weights unreachable" and _reachable(features.imagenet_weights_url("resnet50")):
        pytest.skip("this machine reaches download.pytorch.org: the weights are downloadable")
    if name == "config Cellpose built-in model unreachable" and _reachable(f"{segmentation.BUILTIN_MODEL_URL}/cyto3"):
        pytest.skip("this machine reaches www.cellpose.org: the model is downloadable")
    inputs = _valid_inputs(tmp_path)
    spoil(inputs, tmp_path)
    _write(tmp_path, inputs)
    if stage == "parse":
        with pytest.raises(md.InputError, match=message):
            _plan(tmp_path, monkeypatch)
    else:
        fields = _plan(tmp_path, monkeypatch)
        with pytest.raises(md.InputError, match=message):
            _check_images(fields)
    assert not (tmp_path / "pwned").exists()


THROUGH_SNAKEMAKE = [  # one case for each place a check runs
    "config typo",
    "config YAML python tag",
    "config model file not a Cellpose model",
    "table image missing",
    "image not a TIFF",
    "image compressed data corrupt",
]


@pytest.mark.parametrize("name", THROUGH_SNAKEMAKE)
def test_snakemake_stops_where_the_package_does(tmp_path, name):
    """The same faults through Snakemake: exit status 1, the one-line message (no schema dump),
    and no output of a failed job left behind."""
    import re

    _, spoil, stage, message = next(case for case in CASES if case[0] == name)
    inputs = _valid_inputs(tmp_path)
    spoil(inputs, tmp_path)
    _write(tmp_path, inputs)
    planned = snakemake(tmp_path, "-n", "--quiet", "rules", check=False)
    if stage == "parse":
        result = planned
    else:
        assert planned.returncode == 0, planned.stderr[-3000:]
        result = snakemake(tmp_path, "--cores", "1", "results/manifests/P1.parquet", check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert re.search(message, output), output[-3000:]
    assert "additionalProperties" not in output
    leftovers = [p for p in (tmp_path / "results").rglob("*") if p.is_file()] if (tmp_path / "results").exists() else []
    assert leftovers == [], leftovers
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(("name", "change"), ACCEPTED, ids=_check_names(ACCEPTED))
def test_odd_but_valid_input_is_accepted(tmp_path, monkeypatch, name, change):
    inputs = _valid_inputs(tmp_path)
    change(inputs, tmp_path)
    _write(tmp_path, inputs)
    fields = _plan(tmp_path, monkeypatch)
    _check_images(fields)
    assert len(fields) == 4
    assert set(fields[md.WELL]) == {well for well, _, _ in WELLS}  # "B3" read as the table's other B03


def test_plate_names_with_regex_characters_are_planned_and_run(tmp_path):
    """Plate names go into wildcard constraints escaped: 'P1 (rep+1)' is a plate, not a pattern."""
    inputs = _valid_inputs(tmp_path)
    for row in inputs["rows"]:
        row["plate"] = "P1 (rep+1)"
    _write(tmp_path, inputs)
    result = snakemake(tmp_path, "--cores", "1", "results/manifests/P1 (rep+1).parquet", check=False)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


TINY = {
    "plates": 2,
    "batches": 2,
    "sites": 1,
    "height": 96,
    "width": 96,
    "moas": 2,
    "control_wells": 2,
    "blank_fraction": 0.0,
    "debris_fraction": 0.0,
}


def _tiny_screen(folder: Path) -> Path:
    config = yaml.safe_load(yaml.safe_dump(DEFAULT_CONFIG))
    config["simulate"].update(TINY)
    config["segmentation"]["train"].update(epochs=3, fields=4)
    config["segmentation"]["qc"]["min_cells"] = 0
    config["features"]["level"] = "field"
    (folder / "config").mkdir(parents=True)
    (folder / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return folder


def test_a_killed_run_resumes_to_the_same_profiles_as_a_clean_one(tmp_path):
    """kill -9 in the middle of the plate jobs, unlock, run again: the profiles equal a clean run's
    exactly (so two runs of the same input agree, too)."""
    import os
    import signal
    import time

    target = "results/profiles/treatments.parquet"
    clean, killed = (_tiny_screen(tmp_path / name) for name in ("clean", "killed"))
    snakemake(clean, "--cores", "2", target)
    run = subprocess.Popen(
        [*SNAKEMAKE, "--directory", str(killed), "--cores", "2", target],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while not list((killed / "results").glob("corrected/*/*.tif")) and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert not (killed / target).exists()
    snakemake(killed, "--unlock")
    snakemake(killed, "--cores", "2", target)
    pd.testing.assert_frame_equal(pd.read_parquet(killed / target), pd.read_parquet(clean / target), check_exact=True)
