import numpy as np
import pytest

from morphoprof import segmentation


def _labels(shift=0):
    labels = np.zeros((40, 40), np.uint16)
    labels[5:15, 5 + shift:15 + shift] = 1
    labels[20:30, 20:30] = 2
    return labels


def test_average_precision_counts_matches_at_iou_half():
    assert segmentation.average_precision([_labels()], [_labels()]) == 1.0
    assert segmentation.average_precision([_labels()], [np.zeros((40, 40), np.uint16)]) == 0.0
    # one nucleus shifted by 6 px (IoU 4/16 < 0.5): 1 TP, 1 FP, 1 FN
    assert segmentation.average_precision([_labels()], [_labels(shift=6)]) == pytest.approx(1 / 3)


def test_unknown_model_is_named():
    with pytest.raises(FileNotFoundError, match="segmentation.model: 'my_model.pth' is neither"):
        segmentation.load_model("my_model.pth")


def test_small_network_round_trips_through_its_sidecar(tmp_path):
    model = segmentation.new_model(diam_mean=14.0)
    path = tmp_path / "m.pth"
    model.net.save_model(str(path))
    segmentation.sidecar(path).write_text('{"nbase": [8, 16, 32, 256], "diam_mean": 14.0}')
    loaded = segmentation.load_model(str(path))
    for key, value in model.net.state_dict().items():
        assert np.array_equal(loaded.net.state_dict()[key].numpy(), value.numpy()), key
    assert loaded.nbase == [2, 8, 16, 32, 256]
