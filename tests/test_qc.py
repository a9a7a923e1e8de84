import numpy as np
import pandas as pd
import pytest

from morphoprof import qc, simulate

CHANNELS = list(simulate.CHANNELS)


def test_blank_and_debris_fields_are_flagged():
    settings = dict(plates=1, batches=1, sites=4, height=128, width=128, moas=2, blank_fraction=0.1, seed=3)
    clean = simulate.simulate_plate(simulate.ScreenParams(**settings, debris_fraction=0.0), "SIM01")
    rows, truth_blank, truth_debris = [], [], []
    for (_row, raw, labels), (_, without_debris, _) in zip(
        simulate.simulate_plate(simulate.ScreenParams(**settings, debris_fraction=0.1), "SIM01"), clean
    ):
        rows.append(qc.field_measurements(list(raw), CHANNELS))
        truth_blank.append(labels.max() == 0)
        truth_debris.append(not np.array_equal(raw, without_debris))  # the same field, rendered without debris
    flagged = qc.flag_fields(pd.DataFrame(rows), CHANNELS)
    assert any(truth_blank) and any(truth_debris)
    assert np.array_equal(flagged["QC_Blank"].to_numpy(), np.array(truth_blank))
    assert np.array_equal(flagged["QC_Debris"].to_numpy(), np.array(truth_debris))
    assert flagged["QC_Pass"].mean() > 0.7


def _plate(count=12, seed=0):
    """Raw uint16 fields of one simulated plate (no blank or debris fields of its own)."""
    params = simulate.ScreenParams(
        plates=1, batches=1, sites=4, height=192, width=192, moas=2, blank_fraction=0.0, debris_fraction=0.0, seed=seed
    )
    return [raw for _, (_row, raw, _labels) in zip(range(count), simulate.simulate_plate(params, "SIM01"))]


def _flags(fields):
    return qc.flag_fields(pd.DataFrame([qc.field_measurements(list(f), CHANNELS) for f in fields]), CHANNELS)


def test_compact_debris_bright_in_one_channel_is_flagged():
    fields = _plate()
    dna = fields[3][0]
    dna[90:99, 90:99] = np.minimum(dna.max() * 8, 60000)  # a 9x9 blob, 0.2 % of the field, in DNA only
    tubulin = fields[6][1]
    tubulin[:] = np.minimum(tubulin.astype(np.uint32) * 5, 60000)  # a strong tubulin phenotype: not debris
    flagged = _flags(fields)
    assert flagged["QC_Debris"].tolist() == [i == 3 for i in range(len(fields))]


def test_blurred_fields_are_flagged_whatever_their_nuclei_count():
    from scipy import ndimage as ndi

    fields = _plate()
    rng = np.random.default_rng(1)
    signal = ndi.gaussian_filter(fields[5].astype(np.float32), (0, 3, 3))  # defocused, then the camera's noise
    fields[5] = np.clip(signal + rng.normal(0, 1, signal.shape) * (np.sqrt(signal) + 15), 0, 65535).astype(np.uint16)
    sparse = fields[8]
    sparse[:, :, :128] = np.median(sparse, axis=(1, 2), keepdims=True).astype(np.uint16)  # two thirds empty, sharp
    flagged = _flags(fields)
    assert flagged["QC_Blurry"].tolist() == [i == 5 for i in range(len(fields))]


def test_focus_score_is_the_ratio_of_laplacian_of_gaussian_variances():
    """The DCT's variances are those of scipy's Laplacian of Gaussian (reflect border), to float32 rounding."""
    from scipy import ndimage as ndi

    for plane in _plate(count=2)[1]:
        values = plane.astype(np.float32)
        fine, coarse = (ndi.gaussian_laplace(values, sigma).var(dtype=np.float64) for sigma in qc.FOCUS_SCALES)
        assert qc.focus_score(values) == pytest.approx(fine / coarse, rel=1e-5)
    assert qc.focus_score(np.zeros((8, 8), np.float32)) == 0.0


def test_percentiles_from_the_histogram_are_numpy_s():
    rng = np.random.default_rng(4)
    for plane in (rng.integers(0, 65536, (50, 70)).astype(np.uint16), rng.integers(0, 7, (9, 11)).astype(np.uint8)):
        q = [0, 0.1, 12.5, 50, 99, 99.99, 100]
        assert np.allclose(qc.percentiles(plane, q), np.percentile(plane.astype(np.float32), q), rtol=1e-12, atol=0)
    floats = rng.random((9, 11)).astype(np.float32)
    assert np.array_equal(qc.percentiles(floats, [1, 99]), np.percentile(floats, [1, 99]))


def test_saturated_fields_are_flagged():
    fields = _plate()
    fields[7][1] = np.minimum(fields[7][1].astype(np.uint32) * 40, 65535).astype(np.uint16)  # tubulin over-exposed
    flagged = _flags(fields)
    assert flagged["QC_Saturated"].tolist() == [i == 7 for i in range(len(fields))]
    assert flagged.loc[7, "QC_tubulin_PercentMaximal"] > 1.0 and not flagged.loc[7, "QC_Pass"]
    assert qc.percent_maximal(np.full((4, 4), 1.0, np.float32)) == 0.0


def test_fields_without_cells_or_far_too_many_are_flagged():
    counts = pd.DataFrame({"Metadata_Field": list("abcdef"), "Nuclei_Count": [0, 30, 35, 40, 161, 38]})
    flagged = qc.flag_cell_counts(counts, min_cells=1, max_cells_factor=4)  # median 36.5: limit 146
    assert flagged["QC_FewCells"].tolist() == [True, False, False, False, False, False]
    assert flagged["QC_ManyCells"].tolist() == [False, False, False, False, True, False]
    assert flagged["QC_Pass"].tolist() == [False, True, True, True, False, True]
    assert qc.flag_cell_counts(counts, min_cells=0)["QC_FewCells"].sum() == 0


def _screen(contrasts_by_plate, segmentation_pass=True):
    rows = [(f"{plate}_f{i}", plate, c) for plate, cs in contrasts_by_plate.items() for i, c in enumerate(cs)]
    fields = pd.DataFrame({"Metadata_Field": [r[0] for r in rows], "Metadata_Plate": [r[1] for r in rows]})
    image = pd.DataFrame(
        {"Metadata_Field": fields["Metadata_Field"], "QC_DNA_Contrast": [r[2] for r in rows], "QC_Pass": True}
    )
    segmentation = pd.DataFrame({"Metadata_Field": fields["Metadata_Field"], "QC_Pass": segmentation_pass})
    return fields, image, segmentation


def test_a_plate_of_noise_is_flagged_against_the_screen_and_stops_the_run():
    import pytest

    from morphoprof.metadata import InputError

    fields, image, segmentation = _screen({"P1": [1.0, 1.1], "P2": [0.9, 1.2], "P3": [0.05, 0.06]})
    blank = r"plate\(s\) \['P3'\] have no field passing QC \(blank next to the screen's other plates: \['P3'\]"
    with pytest.raises(InputError, match=blank):
        qc.passing_fields(fields, image, segmentation, "DNA")
    assert qc.blank_plates(image, fields["Metadata_Plate"], "DNA") == ["P3"]
    fields, image, segmentation = _screen({"P1": [1.0, 1.1], "P2": [0.9, 1.2]})
    passed, blank = qc.passing_fields(fields, image, segmentation, "DNA")
    assert passed.all() and blank == []
    segmentation.loc[0, "QC_Pass"] = False
    assert qc.passing_fields(fields, image, segmentation, "DNA")[0].tolist() == [False, True, True, True]


def test_a_plate_whose_fields_lost_most_of_their_nuclei_is_named():
    """P3's fields are all but empty; P4 keeps its fields, at a tenth of the other plates' nuclei."""
    per_plate = {"P1": [30, 35, 40, 0], "P2": [32, 38, 36, 41], "P3": [0, 0, 1, 0], "P4": [3, 4, 2, 3]}
    fields = pd.DataFrame(
        [(f"{plate}_f{i}", plate) for plate, counts in per_plate.items() for i in range(len(counts))],
        columns=["Metadata_Field", "Metadata_Plate"],
    )
    counts = pd.DataFrame({"Metadata_Field": fields["Metadata_Field"], "Nuclei_Count": sum(per_plate.values(), [])})
    flagged = pd.concat(
        [qc.flag_cell_counts(counts[fields["Metadata_Plate"] == plate], min_cells=1) for plate in per_plate]
    )
    depleted = qc.depleted_plates(fields, flagged.iloc[::-1])  # in another order than the fields
    assert list(depleted) == ["P3", "P4"]  # P1 lost one field of four
    assert depleted["P3"].startswith("3 of 4 fields flagged by segmentation QC, a median of 0 nuclei a field")
    assert depleted["P4"] == (
        "0 of 4 fields flagged by segmentation QC, a median of 3 nuclei a field against 17.75 for the screen's "
        "median plate"
    )
    assert qc.depleted_plates(fields[fields["Metadata_Plate"] != "P3"], flagged).keys() == {"P4"}


def test_overlay_fields_span_the_plates_nuclei_counts():
    flagged = pd.DataFrame({"Metadata_Field": list("abcdefg"), "Nuclei_Count": [5, 50, 0, 20, 35, 10, 40]})
    shown = qc.overlay_fields(flagged, 4)
    assert shown["Nuclei_Count"].tolist() == [0, 10, 35, 50]
    assert len(qc.overlay_fields(flagged.head(2), 4)) == 2


def test_qc_summary_counts_fields_kept_and_dropped_per_plate_and_why():
    fields = pd.DataFrame(
        {
            "Metadata_Field": ["a", "b", "c", "d", "e", "f", "g"],
            "Metadata_Plate": ["P1"] * 3 + ["P2"] * 4,
            "Metadata_MOA": ["DMSO", "m1", "m1", "m2", "m2", None, None],  # f and g: compounds without an MOA
        }
    )
    image = pd.DataFrame(
        {
            "Metadata_Field": ["g", "f", "e", "d", "c", "b", "a"],  # in another order than the fields
            "QC_Blank": [True, False, False, False, False, False, True],
            "QC_Debris": [False, False, False, True, False, False, False],
            "QC_Blurry": [False, False, False, False, False, True, False],
            "QC_Saturated": [False, False, False, False, False, True, False],
        }
    )
    image["QC_Pass"] = ~image[list(qc.FLAGS)].any(axis=1)
    counts = [0, 30, 35, 200, 30, 30, 0]
    cells = qc.flag_cell_counts(pd.DataFrame({"Metadata_Field": list("abcdefg"), "Nuclei_Count": counts}))
    summary = qc.qc_summary(fields, image, cells).set_index("Metadata_Plate")
    assert summary.index.tolist() == ["P1", "P2", "all"]
    assert summary["fields"].tolist() == [3, 4, 7]
    assert summary["unannotated"].tolist() == [0, 2, 2]  # f and g, whatever their QC: never profiled
    assert summary["kept"].tolist() == [1, 1, 2]  # c and e
    assert summary["dropped"].tolist() == [2, 1, 3]
    # each dropped field has two flags: a blank and empty, b blurry and saturated, d debris and crowded; g's
    # blank flag is not counted, since g would not have been profiled anyway
    assert summary.loc["P1", ["blank", "blurry", "saturated", "too few nuclei"]].tolist() == [1, 1, 1, 1]
    assert summary.loc["P2", ["blank", "debris", "too many nuclei"]].tolist() == [0, 1, 1]
    assert summary.columns.tolist() == ["fields", "unannotated", "kept", "dropped", *qc.DROP_REASONS.values()]
    assert summary.loc["all"].tolist() == [7, 2, 2, 3, 1, 1, 1, 1, 1, 1]
