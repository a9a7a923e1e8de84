"""The workflow end to end through Snakemake, on the embedded simulated screen."""

import itertools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import yaml
from classical import watershed_baseline
from conftest import SNAKEMAKE, snakemake

from morphoprof import illumination, measurement, segmentation, simulate
from morphoprof import metadata as md

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def _workdir(path: Path, **changes) -> Path:
    """A working directory with the default config, some blocks changed."""
    config = {**DEFAULT_CONFIG, **changes}
    (path / "config").mkdir(parents=True, exist_ok=True)
    (path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    workdir = _workdir(tmp_path_factory.mktemp("default"))
    snakemake(workdir, "--cores", "2")
    return workdir


def test_contract_outputs(default_run):
    treatments = pd.read_parquet(default_run / "results/profiles/treatments.parquet")
    meta = [c for c in treatments.columns if c.startswith("Metadata_")]
    assert list(treatments.columns[: len(meta)]) == meta
    assert len(treatments) == 24 and treatments["Metadata_Compound"].nunique() == 12
    scores = json.loads((default_run / "results/scores/moa.json").read_text())
    assert {"nsc", "nscb", "n_treatments", "n_compounds", "n_moas"} <= set(scores)
    assert (scores["n_treatments"], scores["n_compounds"], scores["n_moas"]) == (24, 12, 6)
    for plot in (
        "confusion_matrix.png",
        "umap.png",
        "similarity_heatmap.png",
        "distances.png",
        "normalizations.png",
        "illumination/SIM01_DNA.png",
        "qc/SIM01.png",
        "segmentation/SIM01_cell_counts.png",
        "segmentation/SIM04_overlays.png",
    ):
        assert (default_run / "results/plots" / plot).stat().st_size > 5000


def test_every_normalization_is_scored(default_run):
    table = pd.read_csv(default_run / "results/scores/normalizations.csv")
    assert sorted(table["normalization"].unique()) == ["plate_zscore", "robust_zscore", "sphering", "tvn", "zscore"]
    assert table["same_batch_neighbours"].between(0, 1).all() and table["same_batch_chance"].between(0, 1).all()
    assert sorted(table["family"].unique()) == ["CNN", "CNN+CellCNN", "CellCNN", "Intensity"]
    assert table[["nsc", "nscb", "map"]].apply(lambda c: c.between(0, 1)).all().all()
    both = table[table["family"] == "CNN+CellCNN"].set_index("normalization")
    scores = json.loads((default_run / "results/scores/moa.json").read_text())
    assert scores["feature_family"] == "CNN+CellCNN"  # features.level: both
    assert both.loc["zscore", "nsc"] == pytest.approx(scores["nsc"])  # the configured normalization, both ways


def test_html_report_gathers_the_plots(default_run):
    snakemake(default_run, "--report", "report.html")
    html = (default_run / "report.html").read_text(errors="replace")
    for name in (
        "confusion_matrix.png",
        "umap.png",
        "normalizations.csv",
        "SIM01_DNA.png",
        "segmentation_accuracy.csv",
    ):
        assert name in html


def test_zipped_report_gathers_the_plots(default_run):
    import zipfile

    snakemake(default_run, "--report", "report.zip")
    with zipfile.ZipFile(default_run / "report.zip") as archive:
        names = archive.namelist()
        html = archive.read(next(n for n in names if n.endswith("report.html"))).decode()
    for plot in ("/confusion_matrix.png", "/SIM01.png", "/SIM01_DNA.png", "/segmentation_accuracy.csv"):
        assert any(n.endswith(plot) for n in names), plot
    nsc = json.loads((default_run / "results/scores/moa.json").read_text())["nsc"]
    assert f"{nsc:.3f}" in sum(_table_rows(_landing_page(html)), [])


def _landing_page(html: str) -> str:
    """What the report opens on: the workflow description, embedded in the HTML as a JSON string."""
    return json.loads(re.search(r"^\s*var workflow_desc = (.*);$", html, re.M).group(1))


def _table_rows(page: str) -> list[list[str]]:
    """The cells of each table row on a page."""
    return [re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row) for row in re.findall(r"<tr>(.*?)</tr>", page, re.S)]


def test_the_report_opens_on_the_scores_and_the_qc_counts(default_run):
    """The report's first page shows NSC, NSCB and mAP of every scored level and baseline, as in
    moa.json, with the share of MOAs whose mAP is significant, the active treatments and the batch
    structure left, the fields kept (those the well profiles count) and dropped, and why, and the
    segmentation accuracy against the simulated ground truth, as in segmentation_accuracy.csv."""
    snakemake(default_run, "--report", "report.html")
    rows = _table_rows(_landing_page((default_run / "report.html").read_text(errors="replace")))
    scores = json.loads((default_run / "results/scores/moa.json").read_text())
    for level, family, summary in [
        *((level, s["feature_family"], s) for level, s in scores["levels"].items()),
        ("baseline", "Intensity", scores["baselines"]["Intensity"]),
    ]:
        shown = [summary[k] for k in ("nsc", "nscb", "nscb_common", "map", "map_significant_moas")] + [
            summary["activity"]["active_fraction"],
            *summary["batch_neighbours"].values(),
        ]
        weights = "ImageNet" if "CNN" in family else "none"
        assert [level, family, weights, *(f"{v:.3f}" for v in shown), str(summary["n_features"])] in rows
    assert ["both", "CNN+CellCNN", "ImageNet", f"{scores['nsc']:.3f}"] == next(r for r in rows if r[0] == "both")[:4]
    counts = dict(zip(next(r for r in rows if r[0] == "Metadata_Plate"), next(r for r in rows if r[0] == "all")))
    image_qc = pd.concat(pd.read_parquet(p) for p in (default_run / "results/qc").glob("*.parquet"))
    kept = pd.read_parquet(default_run / "results/profiles/wells_raw.parquet")["Metadata_Site_Count"].sum()
    assert (counts["fields"], counts["kept"]) == (str(len(image_qc)), str(kept))
    fields = pd.concat(pd.read_parquet(p) for p in (default_run / "results/manifests").glob("*.parquet"))
    unannotated = fields[md.MOA].isna()
    assert int(counts["unannotated"]) == unannotated.sum() > 0  # simulate.unannotated_compounds
    assert int(counts["dropped"]) == len(image_qc) - unannotated.sum() - kept > 0
    scored = image_qc[image_qc[md.FIELD].isin(fields.loc[~unannotated, md.FIELD])]
    for flag, reason in (("QC_Blank", "blank"), ("QC_Debris", "debris")):
        assert counts[reason] == str(scored[flag].sum())
    accuracy = (default_run / "results/scores/segmentation_accuracy.csv").read_text().splitlines()
    for line in accuracy:  # each plate's AP@0.5 against the ground truth, as written
        assert line.split(",") in rows, line


def test_a_model_that_finds_nothing_stops_the_run_before_any_plate_is_segmented(tmp_path, model_finding_nothing):
    """A one-plate screen of 96x96 px fields and a model file that finds no nucleus: the run stops in
    the model's check, naming the model and what it found, and no plate's segment_plate job starts."""
    tiny = {"plates": 1, "batches": 1, "sites": 1, "height": 96, "width": 96, "moas": 2, "control_wells": 2}
    workdir = _workdir(
        tmp_path / "run",
        simulate={**DEFAULT_CONFIG["simulate"], **tiny, "blank_fraction": 0, "debris_fraction": 0},
        segmentation={**DEFAULT_CONFIG["segmentation"], "model": str(model_finding_nothing)},
        illumination={**DEFAULT_CONFIG["illumination"], "correct": False},
    )
    result = snakemake(workdir, "--cores", "2", "results/segmentation/SIM01.parquet", check=False)
    log = result.stdout + result.stderr
    assert result.returncode != 0
    truth = sum(tifffile.imread(p).max() > 0 for p in (workdir / "results/simulated/masks/SIM01").glob("*.tif"))
    assert truth and (
        f"segmentation.model '{model_finding_nothing}' finds 0 nuclei on 8 fields of plate SIM01 (96x96 px)" in log
    ), log[-3000:]
    assert "rule segment_plate:" not in log and not (workdir / "logs/segment_plate").exists()


def test_simulated_tables_are_a_valid_generic_input(default_run):
    """The simulator's image and MOA tables read back through the generic-table input."""
    folder = default_run / "results/simulated"
    fields = md.generic_fields(folder / "images.csv", ["DNA", "tubulin", "actin"])
    md.check_image_files(fields, ["DNA", "tubulin", "actin"])
    fields = md.attach_moa(fields, md.read_moa_table(folder / "moa.csv"), "DMSO", folder / "moa.csv")
    assert len(fields) == 168 and fields[md.MOA].nunique() == 7  # 24 fields of 6 unannotated compounds


def test_cnn_profiles_recover_moa_better_than_mean_intensities(default_run):
    scores = json.loads((default_run / "results/scores/moa.json").read_text())
    assert scores["nsc"] > 0.8
    assert scores["nsc"] > scores["baselines"]["Intensity"]["nsc"]
    levels = scores["levels"]
    assert [levels[k]["feature_family"] for k in ("field", "cell", "both")] == ["CNN", "CellCNN", "CNN+CellCNN"]
    print("\nlevel  NSC   NSCB  mAP")
    for level, level_scores in levels.items():
        print(f"{level:6} {level_scores['nsc']:.2f}  {level_scores['nscb']:.2f}  {level_scores['map']:.3f}")
        assert level_scores["nsc"] > scores["baselines"]["Intensity"]["nsc"], level


SIMULATED_AP_THRESHOLD = 0.9


def test_segmentation_matches_the_simulated_ground_truth(default_run):
    """AP@0.5 (IoU matching) of the trained Cellpose model against the simulator's nuclei over all
    plates, asserted above SIMULATED_AP_THRESHOLD; the Otsu + watershed baseline's beside it."""
    truth, predicted, baseline = [], [], []
    for mask_file in sorted((default_run / "results/masks").glob("*/*_nuclei.tif")):
        predicted.append(tifffile.imread(mask_file))
        truth.append(tifffile.imread(default_run / "results/simulated/masks" / mask_file.parent.name / mask_file.name))
        raw = tifffile.imread(
            default_run
            / "results/simulated/images"
            / mask_file.parent.name
            / mask_file.name.replace("_nuclei.tif", "_DNA.tif")
        )
        baseline.append(watershed_baseline(raw, diameter=14))
    assert len(predicted) == 168
    trained, classical = (measurement.average_precision(truth, p) for p in (predicted, baseline))
    print(f"\nsimulated screen AP@0.5: trained Cellpose {trained:.3f}, Otsu + watershed {classical:.3f}")
    reported = pd.read_csv(default_run / "results/scores/segmentation_accuracy.csv")
    assert reported["Metadata_Plate"].tolist() == ["SIM01", "SIM02", "SIM03", "SIM04"]
    assert (reported["average_precision"] > SIMULATED_AP_THRESHOLD).all()
    tp = (
        reported["average_precision"]
        * (reported["true_objects"] + reported["found_objects"])
        / (1 + reported["average_precision"])
    )  # AP = TP / (TP + FP + FN) and TP + FP + FN = true + found - TP
    assert tp.sum() / (reported["true_objects"] + reported["found_objects"] - tp).sum() == pytest.approx(trained)
    assert trained > SIMULATED_AP_THRESHOLD

    checked = json.loads((default_run / "results/models/segmentation_check.json").read_text())
    assert checked["problem"] is None and sum(checked["nuclei"]) > SIMULATED_AP_THRESHOLD * sum(checked["true_nuclei"])

    counts = pd.read_parquet(default_run / "results/segmentation/SIM01.parquet")
    assert counts["Nuclei_Count"].median() > 10
    cells = pd.read_parquet(default_run / "results/cells/SIM01.parquet")
    assert len(cells) == counts["Nuclei_Count"].sum()
    assert {
        "Metadata_Plate",
        "Metadata_Well",
        "Metadata_Site",
        "Metadata_ObjectNumber",
        "Nuclei_Location_Center_X",
        "Nuclei_AreaShape_Area",
        "Nuclei_Intensity_MeanIntensity_actin",
    } <= set(cells.columns)


def test_masks_are_cellposes_own(default_run):
    """The rule's masks (network on batches of fields, masks in worker processes) are exactly what
    Cellpose's own eval gives for the same model, settings and plate intensity bounds."""
    from morphoprof import images

    model = segmentation.load_model(str(default_run / "results/models/cellpose_nuclei.pth"))
    folder = default_run / "results/corrected/SIM02"
    field_ids = list(pd.read_parquet(default_run / "results/segmentation/SIM02.parquet")["Metadata_Field"])
    settings = {**DEFAULT_CONFIG["segmentation"]}
    bounds = segmentation.intensity_bounds(folder, field_ids, settings["low_percentile"], settings["high_percentile"])
    thresholds = {k: settings[k] for k in ("batch_size", "flow_threshold", "cellprob_threshold")}
    diameter = segmentation.plate_diameter(model, folder, field_ids, bounds[0], **thresholds)
    shown = field_ids[:6]
    nuclei = np.stack([images.read_corrected(folder, f)[0] for f in shown])
    tile = min(int(np.ceil(max(nuclei.shape[-2:]) * model.diam_mean / diameter / 16) * 16) + 16, 512)
    reference, _, _ = model.eval(
        nuclei,
        z_axis=0,
        channels=[0, 0],
        diameter=diameter,
        batch_size=8,
        bsize=tile,
        normalize={"normalize": True, "norm3D": False, "lowhigh": np.asarray(bounds[0])},
        flow_threshold=settings["flow_threshold"],
        cellprob_threshold=settings["cellprob_threshold"],
    )
    for field_id, expected in zip(shown, reference):
        written = tifffile.imread(default_run / "results/masks/SIM02" / f"{field_id}_nuclei.tif")
        assert written.max() > 0 and np.array_equal(written, expected), field_id


@pytest.mark.parametrize("radius", [3.5, 20.0])
def test_nuclear_diameter_is_estimated(default_run, radius):
    """Nuclei half and 2.8 times the size the default model learnt (radius 7): the estimate from the
    model's own first pass lands within 10 % of the true median diameter, and segmenting at it
    scores AP@0.5 above 0.95 and no lower than at the model's diameter. The plate jobs log theirs."""
    from morphoprof import images

    params = simulate.ScreenParams(
        plates=1,
        batches=1,
        sites=2,
        moas=1,
        blank_fraction=0,
        debris_fraction=0,
        seed=3,
        nucleus_radius=radius,
        cells_per_field=min(60, 0.8 * simulate.max_cells_per_field(radius)),
        noise=2.5,
    )
    simulated = itertools.islice(simulate.simulate_plate(params, "SIM01"), 6)
    fields = [(raw[0].astype(np.float32), labels) for _, raw, labels in simulated]
    nuclear, truth = [plane for plane, _ in fields], [labels for _, labels in fields]
    bounds = images.plate_bounds(([plane] for plane in nuclear), 1, 99)[0]
    model = segmentation.load_model(str(default_run / "results/models/cellpose_nuclei.pth"))
    estimate = segmentation.estimate_diameter(model, nuclear, bounds)
    assert estimate == pytest.approx(segmentation.median_diameter(truth), rel=0.1)
    at_estimate, at_own = (
        measurement.average_precision(truth, segmentation.segment(model, nuclear, d, lowhigh=bounds))
        for d in (estimate, None)
    )
    print(f"\nradius {radius}: diameter {estimate:.1f} px, AP@0.5 {at_estimate:.3f} (model's own: {at_own:.3f})")
    assert at_estimate > 0.95 and at_estimate >= at_own
    assert "nuclear diameter" in (default_run / "logs/segment_plate/SIM01.log").read_text()


def test_segmentation_of_the_real_dsb2018_image(default_run, shared_data):
    """AP@0.5 on a real fluorescence image (DSB2018) with its ground truth, for the model trained
    on the simulated screen and for the classical baseline: reported, and both must find nuclei."""
    dsb = shared_data / "stardist_0.9.2_dsb2018_testimage"
    image, mask = tifffile.imread(dsb / "img2d.tif"), tifffile.imread(dsb / "mask2d.tif")
    diameter = 24.0  # the annotated nuclei's median diameter, as a user sets segmentation.diameter
    model = segmentation.load_model(str(default_run / "results/models/cellpose_nuclei.pth"))
    trained = measurement.average_precision([mask], segmentation.segment(model, [image.astype("float32")], diameter))
    classical = measurement.average_precision([mask], [watershed_baseline(image, diameter=diameter)])
    print(f"\nDSB2018 AP@0.5: trained Cellpose {trained:.3f}, Otsu + watershed {classical:.3f}")
    assert trained > 0.2 and classical > 0.2


def test_fields_without_cells_are_flagged_and_left_out(default_run):
    """The simulator's blank fields have no nuclei: segmentation QC flags them, and the well
    profiles stand on the annotated fields that pass it (and image QC) only."""
    flagged = pd.concat([pd.read_parquet(p) for p in (default_run / "results/qc/segmentation").glob("*.parquet")])
    truth = {
        p.name.removesuffix("_nuclei.tif"): tifffile.imread(p).max() == 0
        for p in (default_run / "results/simulated/masks").glob("*/*_nuclei.tif")
    }
    empty = [f for f, blank in truth.items() if blank]
    assert empty and set(empty) <= set(flagged.loc[flagged[md.QC_FEW_CELLS], md.FIELD])
    assert flagged[md.QC_PASS].mean() > 0.9
    image_qc = pd.concat([pd.read_parquet(p) for p in (default_run / "results/qc").glob("*.parquet")])
    fields = pd.concat([pd.read_parquet(p) for p in (default_run / "results/features").glob("*.parquet")])
    fields = fields[md.annotated(fields)].merge(flagged[[md.FIELD, md.QC_PASS]], on=md.FIELD)
    fields = fields.merge(image_qc[[md.FIELD, md.QC_PASS]], on=md.FIELD, suffixes=("_cells", "_image"))
    kept = fields[f"{md.QC_PASS}_cells"] & fields[f"{md.QC_PASS}_image"]
    wells = pd.read_parquet(default_run / "results/profiles/wells_raw.parquet")
    assert wells["Metadata_Site_Count"].sum() == kept.sum() < len(fields)


def test_dark_frames_are_subtracted_before_the_function_is_built(default_run, tmp_path):
    """illumination.dark_frames on a finished run: the asked plate's functions and corrected fields
    are made again, each function from its QC-passing raw fields less the frames' pixel-wise mean."""
    shutil.copytree(default_run / "results", tmp_path / "results")
    rng = np.random.default_rng(0)
    frames = (simulate.CAMERA_OFFSET + rng.normal(scale=15, size=(4, 256, 256))).astype(np.uint16)
    tifffile.imwrite(tmp_path / "dark.tif", frames, photometric="minisblack")
    workdir = _workdir(tmp_path, illumination={**DEFAULT_CONFIG["illumination"], "dark_frames": "dark.tif"})
    result = snakemake(workdir, "--cores", "2", "results/corrected/SIM01")
    log = result.stdout + result.stderr
    assert re.search(r"^qc_illumination\s+1$", log, re.M) and re.search(r"^correct_plate\s+1$", log, re.M), log
    manifest = pd.read_parquet(workdir / "results/manifests/SIM01.parquet")
    passed = manifest[
        manifest[md.FIELD].isin(pd.read_parquet(workdir / "results/qc/SIM01.parquet").query("QC_Pass")[md.FIELD])
    ]
    for channel in DEFAULT_CONFIG["channels"]:
        raw = np.stack([tifffile.imread(workdir / p) for p in passed[md.path_column(channel)]])
        mean = raw.mean(axis=0, dtype=np.float64).astype(np.float32)
        expected = illumination.illumination_function(mean - frames.mean(axis=0, dtype=np.float64).astype(np.float32))
        written = tifffile.imread(workdir / f"results/illumination/SIM01/{channel}.tif")
        assert np.allclose(written, expected, rtol=1e-5), channel
        assert not np.allclose(written, tifffile.imread(default_run / f"results/illumination/SIM01/{channel}.tif"))


def test_rerun_has_nothing_to_do(default_run):
    assert "Nothing to be done" in snakemake(default_run, "-n").stdout


def test_lint_is_clean():
    result = subprocess.run([*SNAKEMAKE, "--lint"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def test_docs_pycytominer_snippet_runs(default_run):
    """The manual's pycytominer and copairs block (docs/profiles.md), run as it is on the default run's profiles."""
    page = (ROOT / "docs/profiles.md").read_text()
    section = page[page.index("## With pycytominer and copairs") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    result = subprocess.run([sys.executable, "-c", code], cwd=default_run, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    kept, total, well_map = re.search(
        r"(\d+) of (\d+) CNN features kept; well-level mAP by MOA ([\d.]+)", result.stdout
    ).groups()
    assert 0 < int(kept) <= int(total) and 0.0 < float(well_map) <= 1.0


def test_cells_are_exported_when_asked_later(default_run, tmp_path):
    """Turning features.export_cells on after a run reruns only the asked plate's features, and
    writes one row per nucleus of its per-cell table, whose field means are the field profiles'."""
    shutil.copytree(default_run / "results", tmp_path / "results")
    workdir = _workdir(tmp_path, features={**DEFAULT_CONFIG["features"], "export_cells": True})
    result = snakemake(workdir, "--cores", "2", "results/cells/SIM01_embeddings.parquet")
    assert re.search(r"^extract_features\s+1$", result.stdout + result.stderr, re.M), result.stderr[-3000:]
    exported = pd.read_parquet(workdir / "results/cells/SIM01_embeddings.parquet")
    cells = pd.read_parquet(default_run / "results/cells/SIM01.parquet")
    key = ["Metadata_Field", "Metadata_ObjectNumber"]
    assert sorted(map(tuple, exported[key].values)) == sorted(map(tuple, cells[key].values))
    embedding = [c for c in exported.columns if c.startswith("CellCNN_")]
    assert len(embedding) == 3 * 1280 and embedding[0] == "CellCNN_DNA_0000"
    profiles = pd.read_parquet(default_run / "results/features/SIM01.parquet").set_index("Metadata_Field")
    means = exported.groupby("Metadata_Field")[embedding].mean()
    mean_columns = [c.replace("CellCNN_DNA_", "CellCNN_DNA_Mean_") for c in embedding[:1280]]
    assert np.allclose(means[embedding[:1280]], profiles.loc[means.index, mean_columns], atol=1e-4)
    size = (workdir / "results/cells/SIM01_embeddings.parquet").stat().st_size
    print(f"\nexported: {size / len(profiles) / 1e6:.2f} MB per field, {size / len(exported) / 1e3:.1f} kB per cell")


def test_cellprofiler_features_are_scored_beside_the_cnn(default_run, tmp_path):
    """features.cellprofiler on a finished run: each plate's nuclei are measured (CellProfiler's
    names, one row per nucleus of the per-cell table), their field means join the profiles, and
    the CellProfiler family is scored alone and with the CNN families, in moa.json and the table
    of normalizations. Snakemake's records come along, so that it sees the profiles' new input."""
    shutil.copytree(default_run / "results", tmp_path / "results")
    shutil.copytree(default_run / ".snakemake/metadata", tmp_path / ".snakemake/metadata")
    groups = ["intensity", "sizeshape", "texture", "granularity"]
    workdir = _workdir(tmp_path, features={**DEFAULT_CONFIG["features"], "cellprofiler": groups})
    snakemake(workdir, "--cores", "2", "results/scores/moa.json", "results/scores/normalizations.csv")
    measured = pd.read_parquet(workdir / "results/cells/SIM01_cellprofiler.parquet")
    cells = pd.read_parquet(default_run / "results/cells/SIM01.parquet")
    key = ["Metadata_Field", "Metadata_ObjectNumber"]
    assert measured[key].values.tolist() == cells[key].values.tolist()
    assert np.array_equal(measured["Nuclei_AreaShape_Area"], cells["Nuclei_AreaShape_Area"])
    assert {"Metadata_Well", "Nuclei_Texture_Contrast_actin_3_00_256", "Nuclei_Granularity_1_DNA"} <= set(measured)
    fields = pd.read_parquet(workdir / "results/features/SIM01_cellprofiler.parquet").set_index("Metadata_Field")
    assert np.allclose(fields["Nuclei_AreaShape_Area"], cells.groupby("Metadata_Field")["Nuclei_AreaShape_Area"].mean())
    scores = json.loads((workdir / "results/scores/moa.json").read_text())
    alone, combined = scores["baselines"]["Nuclei"], scores["baselines"]["CNN+CellCNN+Nuclei"]
    print(f"\nCellProfiler NSC {alone['nsc']:.2f} NSCB {alone['nscb']:.2f}; with CNN NSC {combined['nsc']:.2f}")
    assert alone["n_features"] > 100 and 0 <= alone["nsc"] <= 1
    assert combined["n_features"] == alone["n_features"] + scores["n_features"]
    table = pd.read_csv(workdir / "results/scores/normalizations.csv")
    assert {"Nuclei", "CNN+CellCNN+Nuclei"} <= set(table["family"])
    n_fields = sum(len(pd.read_parquet(p)) for p in (default_run / "results/manifests").glob("*.parquet"))
    seconds = {
        rule: sum(pd.read_csv(p, sep="\t")["s"].iloc[0] for p in (run / "benchmarks" / rule).glob("*.tsv")) / n_fields
        for rule, run in (("measure_cellprofiler", workdir), ("extract_features", default_run))
    }
    print("wall seconds per field, 2 cores: " + ", ".join(f"{rule} {s:.2f}" for rule, s in seconds.items()))


def test_trained_features_are_scored_beside_imagenet_without_rerunning_segmentation(default_run, tmp_path):
    """features.weights: trained on a finished run trains the backbone under the held-out protocol
    and embeds with it, and nothing upstream reruns; the trained levels are scored beside the
    ImageNet ones, whose scores stay as they were, and moa.json says no scored compound was trained on."""
    shutil.copytree(default_run / "results", tmp_path / "results")
    shutil.copytree(default_run / ".snakemake/metadata", tmp_path / ".snakemake/metadata")
    train = {**DEFAULT_CONFIG["features"]["train"], "epochs": 2, "crops_per_field": 4, "batch_size": 32}
    workdir = _workdir(tmp_path, features={**DEFAULT_CONFIG["features"], "weights": "trained", "train": train})
    planned = snakemake(workdir, "--dry-run", "--quiet", "rules").stdout
    rules = set(re.findall(r"^(\w+)\s+\d+$", planned, re.M)) - {"total"}
    assert {"train_features", "extract_trained_features", "aggregate_profiles"} <= rules, planned
    assert not rules & {"segment_plate", "extract_features", "correct_plate", "qc_illumination"}, planned
    snakemake(workdir, "--cores", "2")
    scores = json.loads((workdir / "results/scores/moa.json").read_text())
    before = json.loads((default_run / "results/scores/moa.json").read_text())
    assert scores["feature_family"] == "TrainedCNN+TrainedCellCNN"
    assert scores["training"]["protocol"] == "held_out" and scores["training"]["scored_compounds_trained_on"] == []
    sidecar = json.loads((workdir / "results/models/features.pt.json").read_text())
    assert sidecar["compounds"] == ["DMSO", *(f"UNK-{k}" for k in range(1, 7))] and "DMSO" in sidecar["classes"]
    for level in ("field", "cell", "both"):
        assert scores["levels"][level]["nsc"] == pytest.approx(before["levels"][level]["nsc"])
        assert 0 <= scores["levels"][f"trained_{level}"]["nsc"] <= 1
    headline = pd.read_csv(workdir / "results/scores/headline.csv", keep_default_na=False)
    assert headline.set_index("level").loc["trained_both", "weights"] == "trained (held_out)"
    assert set(pd.read_csv(workdir / "results/scores/normalizations.csv")["family"]) >= {"TrainedCNN", "CNN"}
    history = pd.read_csv(workdir / "results/models/features_training.csv")
    assert history["epoch"].tolist() == [1, 2] and (workdir / "results/plots/features_training.png").exists()
    print(
        "\ntrained (held_out, 2 epochs) against ImageNet NSC: "
        + ", ".join(
            f"{lv} {scores['levels'][f'trained_{lv}']['nsc']:.2f}/{before['levels'][lv]['nsc']:.2f}"
            for lv in ("field", "cell", "both")
        )
    )


def test_preview_segments_a_few_fields(default_run):
    result = snakemake(default_run, "--cores", "2", "results/preview/segmentation.png", "--config", "preview_fields=2")
    assert (default_run / "results/preview/segmentation.png").stat().st_size > 0
    log = (default_run / "logs/preview_segmentation.log").read_text()
    assert "previewed 2 fields: SIM01_" in log and "nuclei, diameter" in log, log + result.stderr[-2000:]
