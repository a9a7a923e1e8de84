import numpy as np
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
