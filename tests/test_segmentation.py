import os

import numpy as np
import pytest
from classical import watershed_baseline

from morphoprof import measurement, screen, segmentation
from morphoprof.metadata import InputError


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
    predicted = [watershed_baseline(raw[0]) for raw, _ in fields]
    ap = measurement.average_precision([labels for _, labels in fields], predicted)
    assert ap > 0.6, ap
    assert watershed_baseline(np.full((32, 32), 7, np.uint16)).max() == 0


@pytest.mark.parametrize(
    ("diameter", "max_tile"),
    [(None, None), (11.0, None), (23.0, None), (11.0, 96)],
    ids=["model's size", "upscaled", "downscaled", "tiled"],
)
def test_network_flows_are_cellposes_own(diameter, max_tile):
    """The flows segmentation computes (each field one tile, on the model's device; or Cellpose's
    tiles where a field is larger than a tile) are those of Cellpose's ``model.eval`` on each field
    with the same intensity bounds, size and tile."""
    import torch

    torch.manual_seed(0)
    model = segmentation.new_model()
    fields = np.stack([raw[0].astype(np.float32) for raw, _ in _simulated_fields(3)])
    bounds = [float(np.percentile(fields, 1)), float(np.percentile(fields, 99))]
    ours = segmentation.network_flows(model, fields, diameter, 2, lowhigh=bounds, max_tile=max_tile)
    for k, field in enumerate(fields):
        _, (_, flows, cellprob, *_), _ = model.eval(
            field,
            channels=[0, 0],
            diameter=diameter or model.diam_labels,
            normalize={"lowhigh": bounds},
            bsize=max_tile or 4096,
            compute_masks=False,
        )
        assert np.allclose(ours.dP[:, k], flows, atol=1e-5) and np.allclose(ours.cellprob[k], cellprob, atol=1e-5)


@pytest.mark.skipif(not os.access(segmentation.SHARED_MEMORY, os.W_OK), reason="no writable /dev/shm here")
def test_flows_wait_in_shared_memory_only_where_it_has_room():
    assert segmentation.handover_folder(1 << 20) == segmentation.SHARED_MEMORY
    assert segmentation.handover_folder(1 << 60) is None  # the system's temporary folder instead


def test_two_channel_images_go_to_cellpose_as_cytoplasm_plus_nucleus():
    """A whole-cell model sees (cytoplasm, nucleus) stacks as Cellpose's ``eval`` with channels
    [1, 2] does; swapping the two channels changes the flows, and labels come back per field."""
    import torch

    torch.manual_seed(0)
    fields = _simulated_fields(2)
    model = segmentation.new_model(diam_mean=30.0)
    stacks = np.stack([raw[[2, 0]].astype(np.float32) for raw, _ in fields])
    ours = segmentation.network_flows(model, stacks, batch_size=4)
    for k, stack in enumerate(stacks):
        _, (_, flows, cellprob, *_), _ = model.eval(
            stack, channels=[1, 2], channel_axis=0, diameter=model.diam_labels, bsize=4096, compute_masks=False
        )
        assert np.allclose(ours.dP[:, k], flows, atol=1e-5) and np.allclose(ours.cellprob[k], cellprob, atol=1e-5)
    swapped = segmentation.network_flows(model, stacks[:, ::-1], batch_size=4)
    assert not np.allclose(swapped.cellprob, ours.cellprob, atol=1e-3)
    labels = segmentation.segment(model, list(stacks), batch_size=4)
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
    caplog.clear()
    with caplog.at_level(logging.INFO):  # the lines Cellpose's eval writes, as its loggers write them
        logging.getLogger("cellpose.models").info("multi-stack tiff read in as having 2 planes 1 channels")
        logging.getLogger("cellpose.core").info(" 50%|#####     | 1/2 [00:01<00:01,  1.00it/s]")
        logging.getLogger("cellpose.models").warning("multi-stack tiff read in as having 2 planes 1 channels")
    assert [(r.name, r.levelname) for r in caplog.records] == [("cellpose.models", "WARNING")]  # warnings still pass


def test_training_shows_its_epochs_on_the_terminal(tmp_path, capfd):
    fields = _simulated_fields(2)
    segmentation.train(
        [raw[0] for raw, _ in fields], [labels for _, labels in fields], tmp_path / "m.pth", epochs=1, seed=0
    )
    assert "train_cellpose: epoch 0, train_loss=" in capfd.readouterr().err


@pytest.mark.parametrize(("name", "file"), [("nuclei", "nucleitorch_0"), ("cyto2", "cyto2torch_0"), ("cyto3", "cyto3")])
def test_builtin_models_are_looked_for_where_cellpose_keeps_them(tmp_path, monkeypatch, name, file):
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(tmp_path))
    assert segmentation.builtin_model_file(name) == tmp_path / file
    (tmp_path / file).write_bytes(b"")
    url = f"{segmentation.BUILTIN_MODEL_URL}/{file}"
    screen.check_downloadable(tmp_path / file, url, "model", timeout=0.001)  # present: no download asked


NUCLEI_SETTINGS = screen.segmentation_settings(  # the shipped config's
    screen.partial_config(None, screen.CONFIG / "config.yaml", screen.CONFIG / "config.schema.yaml"), nuclei=True
)


def test_a_model_that_finds_nothing_is_named_with_what_to_try(model_finding_nothing):
    fields = _simulated_fields(4)
    nuclear, truth = [raw[0].astype(np.float32) for raw, _ in fields], [labels for _, labels in fields]
    model = segmentation.load_model(str(model_finding_nothing))
    checked = segmentation.check_model(
        model, nuclear, truth, name="segmentation.model 'zero.pth'", plate="SIM01", trained=False, **NUCLEI_SETTINGS
    )
    true = sum(int(t.max()) for t in truth)
    assert checked["nuclei"] == [0, 0, 0, 0] and checked["true_nuclei"] == [int(t.max()) for t in truth]
    assert checked["problem"].startswith(
        "segmentation.model 'zero.pth' finds 0 nuclei on 4 fields of plate SIM01 (128x128 px) at diameter 14.0 px "
        f"(the model's own), where the ground truth holds {true}: set segmentation.cellprob_threshold lower"
    )
    without_truth = segmentation.check_model(model, nuclear, None, name="m", plate="P", trained=True, **NUCLEI_SETTINGS)
    assert "a median of 0 a field: train it longer (segmentation.train.epochs)" in without_truth["problem"]
