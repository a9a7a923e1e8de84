import numpy as np
import pytest

from morphoprof import segmentation
from morphoprof.metadata import InputError


def _labels(shift=0):
    labels = np.zeros((40, 40), np.uint16)
    labels[5:15, 5 + shift : 15 + shift] = 1
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


def _simulated_fields(n=6, seed=2):
    from morphoprof import simulate

    params = simulate.ScreenParams(
        plates=1, batches=1, sites=n, height=128, width=128, moas=1, blank_fraction=0, debris_fraction=0, seed=seed
    )
    return [(raw, labels) for _, raw, labels in simulate.simulate_plate(params, "SIM01")][:n]


def test_watershed_baseline_finds_the_simulated_nuclei():
    fields = _simulated_fields()
    predicted = [segmentation.watershed_baseline(raw[0]) for raw, _ in fields]
    ap = segmentation.average_precision([labels for _, labels in fields], predicted)
    assert ap > 0.6, ap
    assert segmentation.watershed_baseline(np.full((32, 32), 7, np.uint16)).max() == 0


def test_per_cell_table_measures_each_nucleus_and_the_cell_around_it():
    nuclei = np.zeros((20, 20), np.uint16)
    nuclei[2:6, 2:6] = 1
    nuclei[10:14, 12:16] = 2
    cells = np.zeros((20, 20), np.uint16)
    cells[0:8, 0:8] = 5
    cells[8:18, 10:20] = 7
    stack = np.stack([nuclei * 1.0, np.where(cells > 0, 0.5, 0.0)]).astype(np.float32)
    table = segmentation.measure_objects(nuclei, stack, ["DNA", "actin"], cells)
    assert table["Nuclei_Label"].tolist() == [1, 2]
    assert table[["Location_Center_Y", "Location_Center_X"]].to_numpy().tolist() == [[3.5, 3.5], [11.5, 13.5]]
    assert table["Nuclei_Area"].tolist() == [16, 16]
    assert table["Nuclei_Intensity_DNA_Mean"].tolist() == [1.0, 2.0]
    assert table["Cells_Label"].tolist() == [5, 7] and table["Cells_Area"].tolist() == [64, 100]
    assert table["Cells_Intensity_actin_Mean"].tolist() == [0.5, 0.5]
    assert len(segmentation.measure_objects(np.zeros((8, 8), np.uint16), stack[:, :8, :8], ["DNA", "actin"])) == 0


def test_two_channel_images_go_to_cellpose_as_cytoplasm_plus_nucleus():
    """A whole-cell model sees (cytoplasm, nucleus) images; the labels come back per field."""
    fields = _simulated_fields(2)
    model = segmentation.new_model(diam_mean=30.0)
    stacks = [raw[[2, 0]].astype(np.float32) for raw, _ in fields]
    labels = segmentation.segment(model, stacks, batch_size=4)
    assert [m.shape for m in labels] == [(128, 128), (128, 128)]


def test_training_pairs_follow_cellposes_naming(tmp_path):
    import tifffile

    fields = _simulated_fields(2)
    for i, (raw, labels) in enumerate(fields):
        tifffile.imwrite(tmp_path / f"img{i}.tif", raw, photometric="minisblack")  # (3, H, W): nuclei in plane 0
        tifffile.imwrite(tmp_path / f"img{i}_masks.tif", labels)
    pictures, masks = segmentation.training_pairs(tmp_path, channel=0)
    assert len(pictures) == 2 and np.array_equal(pictures[1], fields[1][0][0])
    assert np.array_equal(masks[0], fields[0][1])
    (tmp_path / "img0.tif").unlink()
    with pytest.raises(FileNotFoundError, match="img0_masks.tif: no image img0.tif"):
        segmentation.training_pairs(tmp_path)
    with pytest.raises(FileNotFoundError, match="no label images named"):
        segmentation.training_pairs((tmp_path / "empty").mkdir() or tmp_path / "empty")


@pytest.mark.parametrize("content", ["payload", "random bytes", "other network", "sidecar payload"])
def test_a_file_that_is_no_cellpose_model_is_named_and_never_run(tmp_path, content):
    import torch

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return open, (str(marker), "w")

    path = tmp_path / "model.pth"
    if content in ("payload", "sidecar payload"):
        torch.save({"output.2.weight": Payload()}, path)
    elif content == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    else:
        torch.save({"fc.weight": torch.zeros(3, 3)}, path)
    if content == "sidecar payload":
        segmentation.sidecar(path).write_text('{"nbase": [8, 16, 32, 256], "diam_mean": 14.0}')
    with pytest.raises(InputError, match=r"model\.pth: not a Cellpose model file"):
        segmentation.load_model(str(path))
    assert not marker.exists()


def test_cellposes_per_call_chatter_stays_out_of_the_log(caplog):
    import logging

    fields = _simulated_fields(2)
    with caplog.at_level(logging.INFO):
        model = segmentation.new_model(diam_mean=14.0)
        segmentation.segment(model, [raw[0].astype(np.float32) for raw, _ in fields], batch_size=2)
    chatter = [r.getMessage() for r in caplog.records if r.name.startswith("cellpose")]
    assert not [m for m in chatter if "no model weights" in m or "planes" in m or "it/s" in m], chatter


def test_training_shows_its_epochs_on_the_terminal(tmp_path, capfd):
    fields = _simulated_fields(2)
    segmentation.train([raw[0] for raw, _ in fields], [labels for _, labels in fields], tmp_path / "m.pth", n_epochs=1)
    assert "train_cellpose: epoch 0, train_loss=" in capfd.readouterr().err
