"""Segmentation with Cellpose (3.1): build or load a model, train it, and segment a plate with it.

Nuclei are segmented on the nuclear channel; whole cells, optionally, on a cytoplasm channel
with the nuclear channel as Cellpose's second channel. A model is named in config by a
Cellpose built-in name (``nuclei``, ``cyto3``: downloaded by Cellpose on first use), by a path
to a Cellpose model file, or is trained by the workflow. Models trained here may use a
shrunken U-Net; its layer widths are written to a JSON file beside the weights so that the
same network can be built before loading them. Each field's objects are measured as its masks
are made, by the function the caller passes (``measurement.measure_objects``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import pickle
import sys
import tempfile
from collections import deque
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .metadata import NUCLEI_COUNT, InputError, evenly_spread

log = logging.getLogger(__name__)

BUILTIN_MODELS = ("nuclei", "cyto", "cyto2", "cyto3")
MASK_SUFFIX = "_masks"  # Cellpose's naming of an annotated image's label file: <name>_masks.tif
# Cellpose's eval allocates 256 style channels, so the deepest level keeps 256 features.
SMALL_NBASE = (8, 16, 32, 256)


BUILTIN_MODEL_URL = "https://www.cellpose.org/models"  # where Cellpose downloads its built-in models from


def builtin_model_file(name: str) -> Path:
    """Where Cellpose keeps a built-in model's weights: under ``CELLPOSE_LOCAL_MODELS_PATH``, else
    ``~/.cellpose/models``, named as Cellpose 3.1 names them (``nucleitorch_0``, ``cyto3``)."""
    folder = os.environ.get("CELLPOSE_LOCAL_MODELS_PATH") or Path.home() / ".cellpose" / "models"
    return Path(folder) / (f"{name}torch_0" if name in ("cyto", "cyto2", "nuclei") else name)


def _cellpose():
    """Cellpose (and torch) are imported on first use: the workflow's parser needs neither."""
    from cellpose import models, resnet_torch

    _quiet_cellpose()
    return models, resnet_torch


class _CellposeChatter(logging.Filter):
    """Cellpose's per-call INFO lines, which read like problems in a job's log: 'no model weights
    loaded' (said before this module loads its own), the stack of fields 'read in as having N
    planes', the network's progress bar and timing, once per batch."""

    NOISE = ("no model weights loaded", "multi-stack tiff read in", "network run in", "it/s]", "[A")

    def filter(self, record):
        message = record.getMessage()
        return record.levelno > logging.INFO or not (message.strip() == "" or any(n in message for n in self.NOISE))


def _quiet_cellpose():
    for name in ("cellpose.models", "cellpose.transforms", "cellpose.core"):
        chatty = logging.getLogger(name)
        if not any(isinstance(f, _CellposeChatter) for f in chatty.filters):
            chatty.addFilter(_CellposeChatter())


def sidecar(path: str | Path) -> Path:
    return Path(f"{path}.json")


def new_model(nbase=SMALL_NBASE, diam_mean: float = 17.0, device=None):
    """An untrained Cellpose model for one grey channel, with a U-Net of the given widths."""
    import torch

    models, resnet_torch = _cellpose()
    device = device or torch.device("cpu")
    model = models.CellposeModel(pretrained_model=False, device=device, nchan=2, diam_mean=diam_mean)
    model.nbase = [2, *nbase]
    model.net = resnet_torch.CPnet(model.nbase, 3, sz=3, mkldnn=False, max_pool=True, diam_mean=diam_mean).to(device)
    model.diam_labels = diam_mean
    return model


def load_model(spec: str, device=None):
    """Model from a built-in name, a Cellpose model file, or a file trained by this workflow."""
    import torch

    models, _ = _cellpose()
    device = device or torch.device("cpu")
    if spec in BUILTIN_MODELS:
        try:
            return models.CellposeModel(model_type=spec, device=device)
        except OSError as err:  # urllib's URLError is an OSError
            raise RuntimeError(
                f"Cellpose could not download its built-in model {spec!r} ({err}). On a machine with internet, "
                f"run python -c \"from cellpose import models; models.CellposeModel(model_type='{spec}')\" and copy "
                f"~/.cellpose/models to this machine, or set CELLPOSE_LOCAL_MODELS_PATH to where the files are."
            ) from err
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(
            f"config segmentation.model: {spec!r} is neither a built-in Cellpose model "
            f"{BUILTIN_MODELS} nor a model file"
        )
    try:  # Cellpose reads model files as data only (torch.load with weights_only)
        if sidecar(path).is_file():
            meta = json.loads(sidecar(path).read_text())
            model = new_model(tuple(meta["nbase"]), meta["diam_mean"], device)
            model.net.load_model(str(path), device=device)
            model.diam_labels = model.net.diam_labels.item()
            return model
        return models.CellposeModel(pretrained_model=str(path), device=device)
    except (pickle.UnpicklingError, RuntimeError, EOFError, KeyError, ValueError) as err:
        raise InputError(
            f"{path}: not a Cellpose model file ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from err


def train(
    pictures: list[np.ndarray],
    masks: list[np.ndarray],
    out_path: str | Path,
    *,
    epochs: int,
    seed: int,
    nbase=SMALL_NBASE,
    learning_rate: float = 0.1,
    device=None,
) -> Path:
    """Train a small Cellpose U-Net from scratch on grey images and label masks; save it.

    ``epochs`` and ``seed`` are the config's ``segmentation.train`` keys."""
    import torch
    from cellpose import train as cp_train

    torch.manual_seed(seed)
    np.random.seed(seed)
    diam = median_diameter(masks)
    model = new_model(nbase, diam_mean=diam, device=device)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with _epochs_on_terminal():
        saved = cp_train.train_seg(
            model.net,
            train_data=[im.astype(np.float32) for im in pictures],
            train_labels=list(masks),
            channels=[0, 0],
            normalize=True,
            n_epochs=epochs,
            learning_rate=learning_rate,
            weight_decay=1e-4,
            SGD=True,
            batch_size=8,
            min_train_masks=1,
            save_path=str(out_path.parent),
            model_name=out_path.name,
            bsize=128,
        )
    saved_path = Path(saved[0] if isinstance(saved, tuple) else saved)
    if saved_path != out_path:
        saved_path.replace(out_path)
    sidecar(out_path).write_text(json.dumps({"nbase": list(nbase), "diam_mean": diam}))
    return out_path


@contextlib.contextmanager
def _epochs_on_terminal():
    """Cellpose's epoch and loss lines on stderr too, not only in the job's log: training is the
    longest job of a default run and would otherwise be silent."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("train_cellpose: epoch %(message)s"))
    handler.addFilter(lambda record: "train_loss" in record.getMessage())
    trainer = logging.getLogger("cellpose.train")
    level = trainer.level
    trainer.addHandler(handler)
    trainer.setLevel(logging.INFO)
    try:
        yield
    finally:
        trainer.removeHandler(handler)
        trainer.setLevel(level)


def median_diameter(masks: list[np.ndarray]) -> float | None:
    """The median of label images' median object diameters, as Cellpose measures them (the circle of
    equal area, from the median square root of the areas); None where no image holds an object."""
    from cellpose import utils

    per_image = [utils.diameters(m)[0] for m in masks if m.max() > 0]
    return float(np.median(per_image)) if per_image else None


def training_pairs(folder: str | Path, channel: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A user's annotated images: every ``<name>_masks.tif`` label image with its ``<name>.tif``.

    Multi-channel images give their ``channel``-th plane (channel-first or channel-last)."""
    import tifffile

    from . import images

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"config segmentation.train.images: folder {str(folder)!r} not found")
    mask_files = sorted(folder.glob(f"*{MASK_SUFFIX}.tif*"))
    if not mask_files:
        raise FileNotFoundError(
            f"config segmentation.train.images: no label images named <name>{MASK_SUFFIX}.tif "
            f"in {folder} (Cellpose's naming: image.tif with image{MASK_SUFFIX}.tif)"
        )
    pictures, masks = [], []
    for mask_file in mask_files:
        stem = mask_file.name.split(MASK_SUFFIX)[0]
        candidates = [folder / f"{stem}{ext}" for ext in (".tif", ".tiff")]
        image_file = next((c for c in candidates if c.is_file()), None)
        if image_file is None:
            raise FileNotFoundError(f"{mask_file}: no image {stem}.tif beside this label image")
        picture = tifffile.imread(image_file)
        mask = images.read_image(mask_file)
        if picture.ndim == 3:
            axis = 0 if picture.shape[0] < picture.shape[-1] else -1
            if channel >= picture.shape[axis]:
                raise ValueError(
                    f"{image_file}: config segmentation.train.channel {channel} but the image has "
                    f"{picture.shape[axis]} channels"
                )
            picture = np.take(picture, channel, axis=axis)
        if picture.shape != mask.shape:
            raise ValueError(
                f"{mask_file}: labels of shape {mask.shape} for an image of shape {picture.shape} ({image_file})"
            )
        pictures.append(picture)
        masks.append(mask)
    return pictures, masks


def ground_truth_pairs(
    fields: pd.DataFrame, masks_folder: str | Path, channel: str, count: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The first ``count`` fields holding nuclei in their ground-truth masks (the simulator's), as
    (image of ``channel``, labels) pairs: fields without nuclei teach the model nothing."""
    from . import images
    from .metadata import FIELD, path_column

    pictures, masks = [], []
    for _, row in fields.iterrows():
        if len(pictures) == count:
            break
        mask = images.read_image(images.mask_path(masks_folder, row[FIELD]))
        if mask.max() > 0:
            pictures.append(images.read_image(row[path_column(channel)]))
            masks.append(mask)
    return pictures, masks


DIAMETER_FIELDS = 8  # fields of a plate's intensity sample segmented to estimate its nuclear diameter
MAX_TILE = {"cpu": 512, "cuda": 2048}  # pixels per network tile: larger fields are tiled, as Cellpose tiles them
SAMPLED_FIELDS = 32  # fields of a plate sampled for its intensity bounds
SHARED_MEMORY = "/dev/shm"  # a tmpfs on Linux: files there stay in memory


@dataclass
class Flows:
    """The network's output for a stack of fields: flows (2, fields, H, W), cell probability
    (fields, H, W), and the dynamics' iteration count Cellpose's eval would use."""

    dP: np.ndarray
    cellprob: np.ndarray
    niter: float

    def field(self, k: int) -> Flows:
        return Flows(self.dP[:, k : k + 1], self.cellprob[k : k + 1], self.niter)

    def save(self, k: int, path: str | Path) -> None:
        """Field ``k``'s flows as one (3, H, W) float32 .npy file (flows, then probability), written
        in place: how they reach a mask worker. Pickled through the worker pool's pipe instead,
        with the field's stack, they took 58 ms per 1024x1280 field of the main thread on the H100 node."""
        planes = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(3, *self.cellprob.shape[1:]))
        planes[:2] = self.dP[:, k]
        planes[2] = self.cellprob[k]
        del planes

    @classmethod
    def load(cls, path: str | Path, niter: float) -> Flows:
        """One field's flows as :meth:`save` wrote them."""
        planes = np.load(path)
        return cls(planes[:2, None], planes[2:], niter)


def network_flows(
    model,
    images: np.ndarray,
    diameter: float | None = None,
    batch_size: int = 8,
    lowhigh=None,
    max_tile: int | None = None,
) -> Flows:
    """Cellpose's network on a stack of same-shape fields, as ``model.eval`` runs it before its masks.

    Grey (fields, H, W) stacks are segmented as they are; (fields, 2, H, W) stacks as a cytoplasm
    channel with the nuclear channel second, as Cellpose's cyto models expect. The fields go to
    the network ``batch_size`` at a time, each one tile (up to ``max_tile`` px, by default
    MAX_TILE for the model's device) instead of 224-px tiles that overlap. ``lowhigh`` (per
    channel [low, high]) replaces Cellpose's per-image 1-99th percentile scaling: with a plate's
    bounds, a blank field stays dark instead of having its noise stretched into "nuclei".

    Fields that fit one tile are resized, padded, run and resized back on the model's device
    (:func:`_one_tile_flows`); Cellpose's own loop does the same on the host, one field at a time,
    and took 70-90 ms per 1024x1280 field besides the network. Larger fields go through it, tiled."""
    from cellpose import transforms

    models, _ = _cellpose()
    stack = np.asarray(images, np.float32)
    two_channel = stack.ndim == 4
    diameter = diameter or float(model.diam_labels)
    rescale = model.diam_mean / diameter  # as eval computes it (float32 for built-in models)
    max_tile = max_tile or MAX_TILE.get(model.device.type, MAX_TILE["cpu"])
    tile = min(int(np.ceil(max(stack.shape[-2:]) * rescale / 16) * 16) + 16, max_tile)  # Cellpose pads 8 px a side
    x = transforms.convert_image(
        np.moveaxis(stack, 1, -1) if two_channel else stack,
        [1, 2] if two_channel else [0, 0],
        channel_axis=3 if two_channel else None,
        z_axis=0,
        do_3D=False,
        nchan=model.nchan,
    )
    bounds = None if lowhigh is None else np.asarray(lowhigh)
    normalize = {**models.normalize_default, "norm3D": False, "lowhigh": bounds}
    x = transforms.normalize_img(np.asarray(x), **normalize)
    if tile >= _padded_size(stack.shape[-2:], rescale):
        dP, cellprob = _one_tile_flows(model, x, rescale, batch_size)
        return Flows(dP, cellprob, 1 / rescale * 200)
    dP, cellprob, _ = model._run_net(
        x,
        rescale=rescale,
        augment=False,
        batch_size=batch_size,
        tile_overlap=0.1,
        bsize=tile,
        resample=True,
        do_3D=False,
    )
    return Flows(dP, cellprob, 1 / rescale * 200)


def _resized_size(shape, rescale: float) -> tuple[int, int]:
    """A field's size as Cellpose resizes it for the network."""
    return (int(shape[0] * rescale), int(shape[1] * rescale)) if rescale != 1.0 else tuple(shape)


def _padded_size(shape, rescale: float) -> int:
    """The longer side of a field resized and padded as Cellpose gives it to the network."""
    from cellpose import transforms

    height, width = _resized_size(shape, rescale)
    pad_top, pad_bottom, pad_left, pad_right = transforms.get_pad_yx(height, width)
    return max(height + pad_top + pad_bottom, width + pad_left + pad_right)


def _one_tile_flows(model, x: np.ndarray, rescale: float, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Cellpose's network on normalized (fields, H, W, channels) images, each field one tile, on the
    model's device: resized by ``rescale`` (bilinear, as Cellpose's OpenCV resize), zero-padded as
    Cellpose pads, ``batch_size`` fields a pass, cropped and resized back to the fields' size. Each
    pass's flows come to the host once, as (2, fields, H, W) flows and (fields, H, W) probabilities."""
    import torch
    import torch.nn.functional as F
    from cellpose import transforms
    from torch.utils import mkldnn

    fields, height, width, _ = x.shape
    resized = _resized_size((height, width), rescale)
    pad_top, pad_bottom, pad_left, pad_right = transforms.get_pad_yx(*resized)
    net = mkldnn.to_mkldnn(model.net) if model.net.mkldnn else model.net  # as Cellpose's forward pass
    net.eval()
    out = np.empty((fields, 3, height, width), np.float32)
    with torch.inference_mode():
        for start in range(0, fields, batch_size):
            images = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size])).to(model.device)
            images = images.permute(0, 3, 1, 2)
            if resized != (height, width):
                images = F.interpolate(images, size=resized, mode="bilinear", align_corners=False)
            flows = net(F.pad(images, (pad_left, pad_right, pad_top, pad_bottom)))[0]
            flows = flows[:, :, pad_top : pad_top + resized[0], pad_left : pad_left + resized[1]]
            if resized != (height, width):
                flows = F.interpolate(flows, size=(height, width), mode="bilinear", align_corners=False)
            out[start : start + len(flows)] = flows.float().cpu().numpy()
    return np.moveaxis(out[:, :2], 1, 0), out[:, 2]


def compact_labels(labels: np.ndarray) -> np.ndarray:
    """A label image as uint16, or uint32 where it holds 65,535 objects or more."""
    return labels.astype(np.uint16 if labels.max() < 65535 else np.uint32)


def masks_from_flows(flows: Flows, flow_threshold: float = 0.4, cellprob_threshold: float = 0.0) -> list[np.ndarray]:
    """Label images (uint16, or uint32 past 65,535 objects) from the network's flows: Cellpose's own
    dynamics, flow-error check and clean-up, on the CPU, one field after another."""
    import torch
    from cellpose import dynamics

    labels = []
    for k in range(flows.cellprob.shape[0]):
        mask = dynamics.resize_and_compute_masks(
            flows.dP[:, k],
            flows.cellprob[k],
            niter=flows.niter,
            cellprob_threshold=cellprob_threshold,
            flow_threshold=flow_threshold,
            interp=True,
            resize=None,
            min_size=15,
            max_size_fraction=0.4,
            device=torch.device("cpu"),
        )
        labels.append(compact_labels(mask))
    return labels


def segment(
    model,
    images: list[np.ndarray],
    diameter: float | None = None,
    *,
    batch_size: int = 8,
    flow_threshold: float = 0.4,
    cellprob_threshold: float = 0.0,
    lowhigh=None,
) -> list[np.ndarray]:
    """Label images of same-shape fields: ``network_flows``, then ``masks_from_flows``."""
    flows = network_flows(model, np.stack(images), diameter, batch_size, lowhigh)
    return masks_from_flows(flows, flow_threshold, cellprob_threshold)


def estimate_diameter(
    model,
    nuclear: list[np.ndarray],
    lowhigh=None,
    *,
    batch_size: int = 8,
    flow_threshold: float = 0.4,
    cellprob_threshold: float = 0.0,
) -> float | None:
    """The nuclear diameter (px) of some same-shape fields, for nuclei that may not be the size the
    model was trained on: the median diameter of what the model finds at its own size, measured
    again at that estimate (Cellpose's size model refines its guess the same way); None where the
    first pass finds no nucleus."""
    thresholds = {"batch_size": batch_size, "flow_threshold": flow_threshold, "cellprob_threshold": cellprob_threshold}
    estimate = None
    for _ in range(2):
        found = median_diameter(segment(model, nuclear, estimate, lowhigh=lowhigh, **thresholds))
        if found is None:
            return estimate
        estimate = found
    return estimate


def nuclear_diameter(
    model, nuclear: list[np.ndarray], lowhigh, *, diameter: float, batch_size: int, **thresholds
) -> tuple[float, str]:
    """The diameter (px) fields are segmented at, and where it comes from: ``diameter`` as
    configured, or where it is 0 estimated on the ``nuclear`` fields (:func:`estimate_diameter`), or
    the model's own where they hold no nucleus. The one choice of a plate's job and of the preview."""
    if diameter:
        return float(diameter), "configured"
    estimate = estimate_diameter(model, nuclear, lowhigh, batch_size=batch_size, **thresholds)
    return (estimate, "estimated") if estimate is not None else (float(model.diam_labels), "the model's own")


@dataclass
class Sample:
    """A few raw fields segmented as a plate's job would segment them (:func:`segment_sample`)."""

    masks: list[np.ndarray]
    diameter: float
    source: str  # of the diameter: configured, estimated or the model's own
    lowhigh: tuple[float, float]


def sample_fields(fields: pd.DataFrame, channel: str, count: int) -> tuple[list[str], list[np.ndarray]]:
    """``count`` fields of a plate's table, evenly spread, and their raw ``channel`` planes (float32)."""
    from . import images
    from .metadata import FIELD, path_column

    shown = fields.iloc[evenly_spread(len(fields), count)]
    return list(shown[FIELD]), [images.read_image(p).astype(np.float32) for p in shown[path_column(channel)]]


def segment_sample(
    model,
    nuclear: list[np.ndarray],
    *,
    diameter: float,
    batch_size: int,
    flow_threshold: float,
    cellprob_threshold: float,
    low_percentile: float,
    high_percentile: float,
) -> Sample:
    """Raw nuclear planes of some fields, segmented with the config's ``segmentation`` settings
    before any plate is corrected: scaled by their own ``low_percentile`` and ``high_percentile``,
    at :func:`nuclear_diameter`. The preview draws it; :func:`check_model` counts it."""
    from . import images

    lowhigh = images.plate_bounds(([plane] for plane in nuclear), low_percentile, high_percentile)[0]
    thresholds = {"batch_size": batch_size, "flow_threshold": flow_threshold, "cellprob_threshold": cellprob_threshold}
    chosen, source = nuclear_diameter(model, nuclear, lowhigh, diameter=diameter, **thresholds)
    return Sample(segment(model, nuclear, chosen, lowhigh=lowhigh, **thresholds), chosen, source, lowhigh)


MIN_FOUND_FRACTION = 0.1  # a model finding fewer than this share of the true nuclei finds almost nothing


def check_model(
    model,
    nuclear: list[np.ndarray],
    truth: list[np.ndarray] | None,
    *,
    name: str,
    plate: str,
    trained: bool,
    **settings,
) -> dict:
    """What a segmentation model finds on a few raw fields (:func:`segment_sample` with the config's
    ``segmentation`` ``settings``), before any plate is segmented with it: fields of ``plate``, and
    ``truth``, where the screen has it, their true labels.

    Returns the fields' size, the diameter, the nuclei found per field (and true), and ``problem``:
    None, or a message naming the model (``name``) and what to try, where it finds almost nothing:
    fewer than MIN_FOUND_FRACTION of the true nuclei, or without ground truth a median under one
    nucleus a field. A model finding more, but poorly, passes: segmentation accuracy scores it."""
    sample = segment_sample(model, nuclear, **settings)
    found = [int(m.max()) for m in sample.masks]
    true = None if truth is None else [int(t.max()) for t in truth]
    height, width = nuclear[0].shape
    what = (
        f"{name} finds {sum(found)} nuclei on {len(found)} fields of plate {plate} ({height}x{width} px) at diameter "
        f"{sample.diameter:.1f} px ({sample.source})"
    )
    if true is not None:
        failed = sum(found) < MIN_FOUND_FRACTION * sum(true)
        what += f", where the ground truth holds {sum(true)}"
    else:
        failed = float(np.median(found)) < 1
        what += f", a median of {float(np.median(found)):g} a field"
    advice = (
        "train it longer (segmentation.train.epochs) or on more fields (segmentation.train.fields), "
        if trained
        else "set segmentation.cellprob_threshold lower, "
    )
    problem = (
        f"{what}: {advice}set segmentation.diameter to the nuclei's diameter in pixels, or name another model "
        "(segmentation.model: nuclei, cyto3, a model file, or train); results/preview/segmentation.png shows "
        "what it finds"
        if failed
        else None
    )
    return {
        "model": name,
        "height": height,
        "width": width,
        "diameter": sample.diameter,
        "diameter_source": sample.source,
        "nuclei": found,
        "true_nuclei": true,
        "problem": problem,
    }


def segment_plate(
    folder,
    field_ids: list[str],
    masks_folder,
    measure: Callable[..., pd.DataFrame],
    *,
    channels: list[str],
    model,
    diameter: float,
    flow_threshold: float,
    cellprob_threshold: float,
    batch_size: int,
    low_percentile: float,
    high_percentile: float,
    cells: dict | None = None,
    workers: int = 2,
    progress=None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Segment a plate's corrected field stacks, write the label TIFFs to ``masks_folder``, and
    return per-field counts and the per-nucleus table (``Metadata_Field`` first), made by
    ``measure(nuclei, stack, channels, cells)`` for each field (``measurement.measure_objects``).

    The keywords are the config's ``segmentation`` block, with ``model`` a loaded nuclei model and,
    for whole cells, ``cells["model"]`` a loaded cell model (else falsy, as in config).
    ``workers`` threads read stacks ahead of the network, which runs ``batch_size`` fields per
    pass; ``workers`` processes turn finished batches' flows into masks, label TIFFs and per-cell
    measurements while the network runs the next batch. Each field's flows reach its worker as a
    file (:meth:`Flows.save`, :func:`handover_folder`), its stack from the corrected folder.
    Cellpose scales intensities by the plate's ``low_percentile`` and ``high_percentile``
    (sampled from up to ``SAMPLED_FIELDS`` fields), not each field's own. A ``diameter`` of 0 is
    estimated for the plate (``plate_diameter``)."""
    from . import images
    from .metadata import FIELD

    thresholds = {"flow_threshold": flow_threshold, "cellprob_threshold": cellprob_threshold}
    cell_model = (cells or {}).get("model") or None
    cytoplasm_index = channels.index(cells["channel"]) if cell_model is not None else None
    bounds = intensity_bounds(folder, field_ids, low_percentile, high_percentile)
    diameter = diameter or plate_diameter(model, folder, field_ids, bounds[0], batch_size=batch_size, **thresholds)
    counts, objects, pending = {}, [], deque()

    def collect(finished):
        field_id, result = finished
        counts[field_id], table = result.result()
        objects.append(table.assign(**{FIELD: field_id}))
        if progress is not None:
            progress.update(1)

    _, height, width = images.stack_shape(images.corrected_path(folder, field_ids[0]))
    in_flight = (2 * workers + 2 * batch_size) * 3 * height * width * 4 * (1 + (cell_model is not None))
    with _mask_pool(workers) as pool, tempfile.TemporaryDirectory(dir=handover_folder(2 * in_flight)) as handover:
        for ids, batch in images.corrected_batches(folder, field_ids, batch_size, workers):
            flows = {"nuclei": network_flows(model, images.from_uint16(batch[:, 0]), diameter, batch_size, bounds[0])}
            if cell_model is not None:
                flows["cells"] = network_flows(
                    cell_model,
                    images.from_uint16(batch[:, [cytoplasm_index, 0]]),
                    cells["diameter"] or None,
                    batch_size,
                    [bounds[cytoplasm_index], bounds[0]],
                )
            for k, field_id in enumerate(ids):
                handed = {}
                for compartment, compartment_flows in flows.items():
                    path = Path(handover) / f"{field_id}_{compartment}.npy"
                    compartment_flows.save(k, path)
                    handed[compartment] = (path, compartment_flows.niter)
                task = pool.submit(_field_masks, field_id, folder, channels, masks_folder, handed, thresholds, measure)
                pending.append((field_id, task))
            while pending and (pending[0][1].done() or len(pending) > 2 * workers + batch_size):
                collect(pending.popleft())
        while pending:
            collect(pending.popleft())
    per_cell = pd.concat(objects, ignore_index=True) if objects else pd.DataFrame({FIELD: []})
    table = pd.DataFrame([{FIELD: f, **counts[f]} for f in field_ids])
    return table, per_cell[[FIELD, *[c for c in per_cell.columns if c != FIELD]]]


def handover_folder(room: int) -> str | None:
    """Where fields' flows wait for their mask workers: SHARED_MEMORY where it is writable and has
    ``room`` bytes free (containers often give it 64 MB, and a full tmpfs kills the writer), else
    None, the system's temporary folder."""
    try:
        free = os.statvfs(SHARED_MEMORY)
    except OSError:
        return None
    return SHARED_MEMORY if os.access(SHARED_MEMORY, os.W_OK) and free.f_bavail * free.f_frsize >= room else None


def plate_diameter(model, folder, field_ids: list[str], lowhigh, *, batch_size: int, **thresholds) -> float:
    """The nuclear diameter a plate is segmented at when config leaves it at 0: estimated on
    DIAMETER_FIELDS of its corrected fields, evenly spread (:func:`nuclear_diameter`), and logged
    beside the model's own, which is kept where those fields hold no nucleus."""
    from . import images

    sampled = [field_ids[i] for i in evenly_spread(len(field_ids), DIAMETER_FIELDS)]
    nuclear = [images.read_corrected(folder, f)[0] for f in sampled]
    diameter, source = nuclear_diameter(model, nuclear, lowhigh, diameter=0, batch_size=batch_size, **thresholds)
    own = float(model.diam_labels)
    if source != "estimated":
        log.warning("no nuclei in %d sampled fields: segmenting at the model's diameter, %.1f px", len(sampled), own)
    else:
        log.info(
            "nuclear diameter %.1f px, estimated on %d fields (the model's own: %.1f px)", diameter, len(sampled), own
        )
    return diameter


def intensity_bounds(folder, field_ids: list[str], low: float, high: float) -> list[tuple[float, float]]:
    """Each channel's ``low`` and ``high`` percentiles over up to SAMPLED_FIELDS of a plate's
    corrected fields, evenly spread: Cellpose's intensity scaling for the whole plate."""
    from . import images

    sampled = evenly_spread(len(field_ids), SAMPLED_FIELDS)
    return images.plate_bounds((images.read_corrected(folder, field_ids[i]) for i in sampled), low, high)


def _field_masks(
    field_id: str,
    folder,
    channels: list[str],
    masks_folder,
    handed: dict[str, tuple[Path, float]],
    thresholds: dict,
    measure: Callable[..., pd.DataFrame],
) -> tuple[dict, pd.DataFrame]:
    """One field in a mask worker: its nuclei (and cells) labels from the flows handed over in
    files (``{compartment: (path, niter)}``, removed once read), written as TIFFs, then measured
    on the field's corrected stack."""
    from . import images

    labels = {}
    for compartment, (path, niter) in handed.items():
        flows = Flows.load(path, niter)
        Path(path).unlink()
        labels[compartment] = masks_from_flows(flows, **thresholds)[0]
        images.write_tiff(images.mask_path(masks_folder, field_id, compartment), labels[compartment])
    nucleus_labels = labels["nuclei"]
    table = measure(nucleus_labels, images.read_corrected(folder, field_id), channels, labels.get("cells"))
    count = {
        NUCLEI_COUNT: len(table),
        "Nuclei_MeanArea": float(table["Nuclei_AreaShape_Area"].mean()) if len(table) else 0.0,
    }
    return count, table


def _mask_pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes for masks, forked (a rule script cannot be re-imported by spawned ones) and
    started at once, before the network runs; each computes on one CPU thread, never on the GPU."""
    pool = ProcessPoolExecutor(max(workers, 1), mp_context=multiprocessing.get_context("fork"), initializer=_one_thread)
    for started in [pool.submit(int) for _ in range(max(workers, 1))]:
        started.result()
    return pool


def _one_thread():
    import warnings

    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="Sparse invariant checks")  # Cellpose's, once per worker
