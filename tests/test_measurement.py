import numpy as np
import pandas as pd
import pytest

from morphoprof import measurement


def _labels(shift=0):
    labels = np.zeros((40, 40), np.uint16)
    labels[5:15, 5 + shift : 15 + shift] = 1
    labels[20:30, 20:30] = 2
    return labels


def test_average_precision_counts_matches_at_iou_half():
    assert measurement.average_precision([_labels()], [_labels()]) == 1.0
    assert measurement.average_precision([_labels()], [np.zeros((40, 40), np.uint16)]) == 0.0
    # one nucleus shifted by 6 px (IoU 4/16 < 0.5): 1 TP, 1 FP, 1 FN
    assert measurement.average_precision([_labels()], [_labels(shift=6)]) == pytest.approx(1 / 3)


def test_per_cell_table_measures_each_nucleus_and_the_cell_around_it():
    nuclei = np.zeros((20, 20), np.uint16)
    nuclei[2:6, 2:6] = 1
    nuclei[10:14, 12:16] = 2
    cells = np.zeros((20, 20), np.uint16)
    cells[0:8, 0:8] = 5
    cells[8:18, 10:20] = 7
    stack = np.stack([nuclei * 1.0, np.where(cells > 0, 0.5, 0.0)]).astype(np.float32)
    table = measurement.measure_objects(nuclei, stack, ["DNA", "actin"], cells)
    assert table["Metadata_ObjectNumber"].tolist() == [1, 2]
    assert table[["Nuclei_Location_Center_Y", "Nuclei_Location_Center_X"]].to_numpy().tolist() == [
        [3.5, 3.5],
        [11.5, 13.5],
    ]
    assert table["Nuclei_AreaShape_Area"].tolist() == [16, 16]
    assert table["Nuclei_Intensity_MeanIntensity_DNA"].tolist() == [1.0, 2.0]
    assert table["Metadata_Cells_ObjectNumber"].tolist() == [5, 7] and table["Cells_AreaShape_Area"].tolist() == [
        64,
        100,
    ]
    assert table["Cells_Intensity_MeanIntensity_actin"].tolist() == [0.5, 0.5]
    assert len(measurement.measure_objects(np.zeros((8, 8), np.uint16), stack[:, :8, :8], ["DNA", "actin"])) == 0


def test_segmentation_accuracy_counts_found_missed_and_spurious_nuclei():
    truth = _labels()
    found = truth.copy()
    found[found == 2] = 0  # one nucleus missed
    found[30:34, 30:34] = 9  # one spurious object
    scores = measurement.segmentation_accuracy([truth], [found])
    n = int(truth.max())
    assert (scores["true_objects"], scores["found_objects"]) == (n, n)
    assert scores["recall"] == pytest.approx((n - 1) / n) and scores["precision"] == pytest.approx((n - 1) / n)
    assert scores["average_precision"] == pytest.approx((n - 1) / (n + 1))


def _simulated_field():
    from morphoprof import simulate

    params = simulate.ScreenParams(plates=1, batches=1, sites=1, moas=1, blank_fraction=0, debris_fraction=0)
    _, raw, labels = next(simulate.simulate_plate(params, "SIM01"))
    return np.clip(raw.astype(np.float32) / 8000, 0, 1), labels


CELLPROFILER_GROUPS = ["intensity", "sizeshape", "texture", "granularity", "correlation_pearson"]


def test_cellprofiler_measurements_agree_with_our_own_and_use_cellprofilers_names():
    """cp-measure's area and mean intensities of each simulated nucleus are the per-cell table's,
    in label order, with CellProfiler's column names; a label missing from the field has no row."""
    stack, labels = _simulated_field()
    labels[labels == 3] = 0
    table = measurement.cellprofiler_measurements(labels, stack, ["DNA", "tubulin", "actin"], CELLPROFILER_GROUPS)
    ours = measurement.measure_objects(labels, stack, ["DNA", "tubulin", "actin"])
    assert table["Metadata_ObjectNumber"].tolist() == ours["Metadata_ObjectNumber"].tolist()
    assert 3 not in table["Metadata_ObjectNumber"].tolist()
    assert np.array_equal(table["Nuclei_AreaShape_Area"], ours["Nuclei_AreaShape_Area"])
    for channel in ("DNA", "tubulin", "actin"):
        column = f"Nuclei_Intensity_MeanIntensity_{channel}"
        assert np.allclose(table[column], ours[column], rtol=1e-5)
    assert {
        "Nuclei_Texture_Contrast_DNA_3_00_256",
        "Nuclei_Granularity_1_actin",
        "Nuclei_Correlation_Pearson_DNA_tubulin",
        "Nuclei_AreaShape_FormFactor",
    } <= set(table.columns)
    blank = np.zeros_like(labels)
    assert len(measurement.cellprofiler_measurements(blank, stack, ["DNA", "tubulin", "actin"], ["intensity"])) == 0


def test_unknown_cellprofiler_measurement_is_named():
    stack, labels = _simulated_field()
    with pytest.raises(ValueError, match=r"unknown CellProfiler measurements \['haralick'\]"):
        measurement.cellprofiler_measurements(labels, stack, ["DNA", "tubulin", "actin"], ["texture", "haralick"])


def test_field_profiles_average_what_objects_look_like_not_where_they_are():
    objects = pd.DataFrame(
        {
            "Metadata_Field": ["F1", "F1", "F2"],
            "Metadata_ObjectNumber": [1, 2, 1],
            "Nuclei_Location_Center_X": [3.0, 9.0, 4.0],
            "Nuclei_AreaShape_Area": [10.0, 20.0, 30.0],
            "Nuclei_RadialDistribution_FracAtD_DNA_1of4": [0.2, np.nan, 0.4],
        }
    )
    profiles = measurement.field_profiles(objects)
    assert list(profiles.columns) == [
        "Metadata_Field",
        "Nuclei_AreaShape_Area",
        "Nuclei_RadialDistribution_FracAtD_DNA_1of4",
    ]
    assert profiles.to_numpy().tolist() == [["F1", 15.0, 0.2], ["F2", 30.0, 0.4]]


def _field_with_cells():
    """Two nuclei inside two cells of 120 and 300 px, and a nucleus whose centre is on background;
    actin is 0.2 in the first cell and 0.6 in the second, DNA 0.8 in every nucleus."""
    cells = np.zeros((40, 40), np.uint16)
    cells[0:10, 0:12] = 1
    cells[15:35, 15:30] = 2
    nuclei = np.zeros((40, 40), np.uint16)
    nuclei[3:7, 3:7] = 1
    nuclei[20:26, 20:26] = 2
    nuclei[36:39, 2:5] = 3
    actin = np.select([cells == 1, cells == 2], [0.2, 0.6], 0.0)
    return nuclei, cells, np.stack([np.where(nuclei > 0, 0.8, 0.0), actin])


def test_cellprofiler_measurements_of_whole_cells_join_each_nucleus_to_the_cell_around_it(tmp_path):
    """measure_plate on written stacks and masks: with whole cells, each nucleus' row holds cp-measure's
    measurements of the cell around its centre as ``Cells_*`` (NaN for a nucleus on background), and
    field means hold both compartments; without, only the nuclei are measured."""
    from morphoprof import families, images

    nuclei, cells, stack = _field_with_cells()
    for field_id in ("F1", "F2"):
        images.write_tiff(images.corrected_path(tmp_path / "corrected", field_id), images.to_uint16(stack))
        images.write_tiff(images.mask_path(tmp_path / "masks", field_id), nuclei)
        images.write_tiff(images.mask_path(tmp_path / "masks", field_id, "cells"), cells)
    args = (tmp_path / "corrected", tmp_path / "masks", ["F1", "F2"])
    settings = {"channels": ["DNA", "actin"], "cellprofiler": ["intensity", "sizeshape"], "workers": 1}

    table = measurement.measure_plate(*args, **settings, whole_cells=True)
    assert table.columns[:3].tolist() == ["Metadata_Field", "Metadata_ObjectNumber", "Metadata_Cells_ObjectNumber"]
    field = table[table["Metadata_Field"] == "F1"]
    assert field["Metadata_ObjectNumber"].tolist() == [1, 2, 3]
    assert field["Metadata_Cells_ObjectNumber"].tolist() == [1, 2, 0]
    assert field["Nuclei_AreaShape_Area"].tolist() == [16, 36, 9]
    assert field["Cells_AreaShape_Area"].tolist()[:2] == [120, 300]
    actin = field["Cells_Intensity_MeanIntensity_actin"].to_numpy()
    assert np.allclose(actin[:2], [0.2, 0.6], atol=1e-4)
    orphan = field.iloc[2][[c for c in field.columns if c.startswith("Cells_")]]
    assert orphan.isna().all()
    assert {"Cells_AreaShape_FormFactor", "Cells_Intensity_MeanIntensity_DNA"} <= set(table.columns)

    means = measurement.field_profiles(table)
    assert means.loc[0, "Cells_AreaShape_Area"] == 210.0  # the orphan left out
    assert families.feature_columns(means.assign(CellCNN_0=0.0), "Cells") == [
        c for c in means.columns if c.startswith("Cells_")
    ]

    nuclei_only = measurement.measure_plate(*args, **settings)
    assert not any(c.startswith("Cells_") or c == "Metadata_Cells_ObjectNumber" for c in nuclei_only.columns)
    pd.testing.assert_frame_equal(nuclei_only, table[nuclei_only.columns])


def test_a_cell_with_two_nuclei_counts_once_in_the_field_means():
    objects = pd.DataFrame(
        {
            "Metadata_Field": ["F1", "F1", "F1", "F2"],
            "Metadata_ObjectNumber": [1, 2, 3, 1],
            "Metadata_Cells_ObjectNumber": [1, 1, 2, 0],
            "Nuclei_AreaShape_Area": [10.0, 20.0, 30.0, 40.0],
            "Cells_AreaShape_Area": [100.0, 100.0, 400.0, np.nan],
        }
    )
    profiles = measurement.field_profiles(objects)
    assert profiles.columns.tolist() == ["Metadata_Field", "Nuclei_AreaShape_Area", "Cells_AreaShape_Area"]
    assert profiles.iloc[0, 1:].tolist() == [20.0, 250.0]  # cells 1 and 2 once each, not (100 + 100 + 400) / 3
    assert profiles.iloc[1, 1] == 40.0 and np.isnan(profiles.iloc[1, 2])  # a field whose nucleus has no cell


def test_per_cell_table_leaves_a_nucleus_on_background_without_a_cell():
    """measure_objects pairs nuclei with cells as measure_plate does (:func:`measurement.with_cells`)."""
    nuclei, cells, stack = _field_with_cells()
    table = measurement.measure_objects(nuclei, stack.astype(np.float32), ["DNA", "actin"], cells)
    assert table["Metadata_Cells_ObjectNumber"].tolist() == [1, 2, 0]
    assert table["Cells_AreaShape_Area"].tolist()[:2] == [120, 300] and np.isnan(table["Cells_AreaShape_Area"][2])
