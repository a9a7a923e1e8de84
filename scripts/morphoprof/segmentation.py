"""Nuclei segmentation with Cellpose (3.1): build or load a model, train it, run it, score it.

A model is named in config by a Cellpose built-in name (``nuclei``, ``cyto3``: downloaded
by Cellpose on first use), by a path to a Cellpose model file, or is trained by the
workflow. Models trained here may use a shrunken U-Net; its layer widths are written to a
JSON file beside the weights so that the same network can be built before loading them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

BUILTIN_MODELS = ("nuclei", "cyto", "cyto2", "cyto3")
# Cellpose's eval allocates 256 style channels, so the deepest level keeps 256 features.
SMALL_NBASE = (8, 16, 32, 256)


def _cellpose():
    """Cellpose (and torch) are imported on first use: the workflow's parser needs neither."""
    from cellpose import models, resnet_torch

    return models, resnet_torch


def sidecar(path: str | Path) -> Path:
    return Path(f"{path}.json")


def new_model(nbase=SMALL_NBASE, diam_mean: float = 17.0, device=None):
    """An untrained Cellpose model for one grey channel, with a U-Net of the given widths."""
    import torch

    models, resnet_torch = _cellpose()
    device = device or torch.device("cpu")
    model = models.CellposeModel(pretrained_model=False, device=device, nchan=2, diam_mean=diam_mean)
    model.nbase = [2, *nbase]
    model.net = resnet_torch.CPnet(model.nbase, 3, sz=3, mkldnn=False, max_pool=True,
                                   diam_mean=diam_mean).to(device)
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
                f"~/.cellpose/models to this machine, or set CELLPOSE_LOCAL_MODELS_PATH to where the files are.") from err
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"config segmentation.model: {spec!r} is neither a built-in Cellpose model "
                                f"{BUILTIN_MODELS} nor a model file")
    if sidecar(path).is_file():
        meta = json.loads(sidecar(path).read_text())
        model = new_model(tuple(meta["nbase"]), meta["diam_mean"], device)
        model.net.load_model(str(path), device=device)
        model.diam_labels = model.net.diam_labels.item()
        return model
    return models.CellposeModel(pretrained_model=str(path), device=device)


def train(images: list[np.ndarray], masks: list[np.ndarray], out_path: str | Path, n_epochs: int = 100,
          nbase=SMALL_NBASE, learning_rate: float = 0.1, seed: int = 0, device=None) -> Path:
    """Train a small Cellpose U-Net from scratch on grey images and label masks; save it."""
    import torch
    from cellpose import train as cp_train, utils

    torch.manual_seed(seed)
    np.random.seed(seed)
    diam = float(np.median([utils.diameters(m)[0] for m in masks if m.max() > 0]))
    model = new_model(nbase, diam_mean=diam, device=device)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    saved = cp_train.train_seg(model.net, train_data=[im.astype(np.float32) for im in images],
                               train_labels=list(masks), channels=[0, 0], normalize=True,
                               n_epochs=n_epochs, learning_rate=learning_rate, weight_decay=1e-4,
                               SGD=True, batch_size=8, min_train_masks=1, save_path=str(out_path.parent),
                               model_name=out_path.name, bsize=128)
    saved_path = Path(saved[0] if isinstance(saved, tuple) else saved)
    if saved_path != out_path:
        saved_path.replace(out_path)
    sidecar(out_path).write_text(json.dumps({"nbase": list(nbase), "diam_mean": diam}))
    return out_path


def segment(model, images: list[np.ndarray], diameter: float | None = None, batch_size: int = 8,
            flow_threshold: float = 0.4, cellprob_threshold: float = 0.0) -> list[np.ndarray]:
    """Label images (uint16 or uint32) of nuclei in grey images, one Cellpose call for the list."""
    diameter = diameter or float(model.diam_labels)
    masks, _, _ = model.eval(list(images), channels=[0, 0], diameter=diameter, batch_size=batch_size,
                             flow_threshold=flow_threshold, cellprob_threshold=cellprob_threshold)
    return [m.astype(np.uint16 if m.max() < 65535 else np.uint32) for m in masks]


def average_precision(true: list[np.ndarray], pred: list[np.ndarray], threshold: float = 0.5) -> float:
    """AP at an IoU threshold over a set of images: TP / (TP + FP + FN), pooled."""
    from cellpose import metrics

    _, tp, fp, fn = metrics.average_precision(list(true), list(pred), threshold=[threshold])
    tp, fp, fn = tp.sum(), fp.sum(), fn.sum()
    return float(tp / max(tp + fp + fn, 1))
