"""The features stage's training: the backbone fine-tuned on the screen's own cells (rule train_features).

Weakly supervised, as DeepProfiler and its successors train: each nucleus's crop is labelled with
its compound (or treatment), the control a class of its own, and the backbone, started from its
ImageNet weights, learns to tell them apart through a linear head over its per-channel
embeddings, the same embeddings the profiles are made of. Which compounds are trained on is the
protocol: ``held_out`` takes only compounds the MOA table does not annotate (and the control), so
that no scored compound is ever seen; ``transductive`` takes every treatment, as the literature
does, and every score it produces says so. The checkpoint is chosen on held-out wells by their
classification loss, never by an MOA score.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from . import features, images
from . import metadata as md

log = logging.getLogger(__name__)

HISTORY_COLUMNS = [
    "epoch",
    "learning_rate",
    "train_loss",
    "train_accuracy",
    "validation_loss",
    "validation_accuracy",
    "seconds",
    "crops_per_second",
]


def training_fields(
    fields: pd.DataFrame, *, protocol: str, labels: str, control: str, min_compounds: int = 1
) -> pd.DataFrame:
    """The fields trained on, each with its class (``label``): under ``held_out`` those of the
    compounds without an MOA and of the control, under ``transductive`` every field. The label is
    the compound, or with ``labels: treatment`` the compound and concentration; the control is one
    class whatever its concentration.

    Examples
    --------
    >>> fields = pd.DataFrame({md.COMPOUND: ["DMSO", "taxol", "X"], md.CONCENTRATION: [0.0, 1.0, 3.0],
    ...                        md.MOA: ["DMSO", "Microtubule stabilizers", None]})
    >>> training_fields(fields, protocol="held_out", labels="treatment", control="DMSO")["label"].tolist()
    ['DMSO', 'X 3']
    """
    if protocol == "held_out":
        kept = fields[(fields[md.COMPOUND] == control) | ~md.annotated(fields)]
    elif protocol == "transductive":
        kept = fields
    else:
        raise ValueError(f"config features.train.protocol: {protocol!r} is not one of held_out, transductive")
    compounds = sorted(set(kept[md.COMPOUND]) - {control})
    if len(compounds) < min_compounds:
        raise md.InputError(
            f"config features.train.protocol: {protocol} leaves {len(compounds)} compound(s) to train on, fewer "
            f"than features.train.min_compounds ({min_compounds})"
        )
    if labels == "treatment":
        label = kept[md.COMPOUND] + " " + kept[md.CONCENTRATION].map("{:g}".format)
    else:
        label = kept[md.COMPOUND].copy()
    label[kept[md.COMPOUND] == control] = control
    return kept.assign(label=label.to_numpy()).reset_index(drop=True)


def held_out_wells(fields: pd.DataFrame, share: float, seed: int = 0) -> np.ndarray:
    """Which fields are held out to choose the checkpoint: of each class's wells, a seeded
    ``share`` (rounded, and at least one where a class has two wells or more)."""
    held = np.zeros(len(fields), bool)
    if share <= 0:
        return held
    rng = np.random.default_rng([seed, 1])
    for _, group in fields.groupby("label", sort=True):
        wells = sorted(set(zip(group[md.PLATE], group[md.WELL])))
        count = min(len(wells) - 1, max(1, round(share * len(wells))))
        chosen = {wells[k] for k in rng.permutation(len(wells))[:count]}
        held[group.index[[w in chosen for w in zip(group[md.PLATE], group[md.WELL])]]] = True
    return held


@dataclass
class TrainingCells:
    """The crops trained on: ``crops`` (cells, channels, size, size) uint16, each with its class
    index, plate index, compound and whether its well is held out for validation."""

    crops: torch.Tensor
    labels: np.ndarray
    plates: np.ndarray
    compounds: np.ndarray
    validation: np.ndarray
    classes: list[str]


def training_cells(
    fields: pd.DataFrame,
    cells: pd.DataFrame,
    folders: dict[str, str],
    *,
    crop_size: int,
    crops_per_field: int,
    validation_wells: float,
    seed: int = 0,
    progress=None,
) -> TrainingCells:
    """Crops of ``crop_size`` px around up to ``crops_per_field`` nuclei of each field of
    :func:`training_fields` (a seeded subset of the per-cell tables' centres), cut from the
    corrected stacks in each plate's folder of ``folders``; the wells of :func:`held_out_wells`
    are marked for validation."""
    centres = features.cell_centres(cells)
    held = held_out_wells(fields, validation_wells, seed)
    classes = sorted(set(fields["label"]))
    plates = sorted(set(fields[md.PLATE]))
    rng = np.random.default_rng([seed, 2])
    crops, rows = [], []
    for k, (field_id, plate, compound, label) in enumerate(
        zip(fields[md.FIELD], fields[md.PLATE], fields[md.COMPOUND], fields["label"])
    ):
        if progress is not None:
            progress.update(1)
        chosen = centres.get(field_id, np.zeros((0, 2)))
        if len(chosen) > crops_per_field:
            chosen = chosen[np.sort(rng.choice(len(chosen), crops_per_field, replace=False))]
        if not len(chosen):
            continue
        stack = torch.from_numpy(images.read_stack(images.corrected_path(folders[plate], field_id)).astype(np.int32))
        owners = torch.zeros(len(chosen), dtype=torch.long)
        crops.append(features.crop_cells(stack[None], owners, torch.from_numpy(chosen), crop_size).to(torch.uint16))
        rows += [(classes.index(label), plates.index(plate), compound, held[k])] * len(chosen)
    if not crops:
        raise md.InputError("features.train: the fields trained on have no segmented nuclei to crop")
    labels, plate_index, compounds, validation = (np.array(column) for column in zip(*rows))
    return TrainingCells(torch.cat(crops), labels, plate_index, compounds, validation.astype(bool), classes)


def minibatches(
    labels: np.ndarray, plates: np.ndarray, *, batch_size: int, steps: int, seed: int, plate_batches: bool = False
) -> Iterator[np.ndarray]:
    """``steps`` minibatches of crop indices, classes balanced by sampling: each crop is drawn by
    choosing a class uniformly, then one of its crops. With ``plate_batches`` every minibatch is
    drawn from one plate (chosen uniformly), among the classes that plate holds, so that what
    tells the classes apart cannot be what tells the plates apart."""
    rng = np.random.default_rng([seed, 3])
    groups = [np.arange(len(labels))] if not plate_batches else [np.flatnonzero(plates == p) for p in np.unique(plates)]
    pools = [[group[labels[group] == c] for c in np.unique(labels[group])] for group in groups]
    for _ in range(steps):
        pool = pools[rng.integers(len(pools))]
        classes = rng.integers(len(pool), size=batch_size)
        yield np.array([pool[c][rng.integers(len(pool[c]))] for c in classes])


def augment(crops: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random flips, 90-degree rotations, resized crops of 80-100 % of the area, and per-channel
    brightness and contrast (0.8-1.2) of a (cells, channels, size, size) float batch in [0, 1]."""
    from torchvision.ops import roi_align

    n, c, size, _ = crops.shape
    device = crops.device

    def uniform(*shape, low=0.0, high=1.0):
        return torch.rand(shape, generator=generator, device=device) * (high - low) + low

    flipped = uniform(n) < 0.5
    crops = torch.where(flipped[:, None, None, None], crops.flip(-1), crops)
    turns = torch.randint(4, (n,), generator=generator, device=device)[:, None, None, None]
    for k in (1, 2, 3):
        crops = torch.where(turns == k, torch.rot90(crops, k, (-2, -1)), crops)
    side = size * uniform(n, low=0.8, high=1.0).sqrt()
    top, left = uniform(n) * (size - side), uniform(n) * (size - side)
    boxes = torch.stack([torch.arange(n, device=device, dtype=side.dtype), left, top, left + side, top + side], 1)
    crops = roi_align(crops, boxes, output_size=size, spatial_scale=1.0, sampling_ratio=2, aligned=True)
    brightness, contrast = uniform(n, c, 1, 1, low=0.8, high=1.2), uniform(n, c, 1, 1, low=0.8, high=1.2)
    mean = crops.mean((2, 3), keepdim=True)
    return ((crops - mean) * contrast + mean).mul_(brightness).clamp_(min=0)


class CropClassifier(nn.Module):
    """The backbone's per-channel embeddings of a crop, concatenated as in the profiles, then a
    linear layer to the classes."""

    def __init__(self, backbone: features.Backbone, channels: int, classes: int, scale: float = 1.0):
        super().__init__()
        self.backbone, self.scale = backbone, scale
        self.net = backbone.net
        with torch.no_grad():
            width = self.net.eval()(torch.zeros(1, 3, 96, 96)).shape[1]  # Inception needs 75 px or more
        self.head = nn.Linear(channels * width, classes)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        embedded = self.net(features.grey_images(crops, self.backbone, self.scale))
        return self.head(embedded.reshape(len(crops), -1))


def _as_input(crops: torch.Tensor, device: torch.device) -> torch.Tensor:
    return crops.to(device, non_blocking=True).float().div_(images.UINT16_MAX)


def _evaluate(model: CropClassifier, cells: TrainingCells, device: torch.device, batch_size: int):
    """Mean cross-entropy and accuracy of the held-out crops (None, None where there are none)."""
    index = np.flatnonzero(cells.validation)
    if not len(index):
        return None, None
    model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for chunk in np.array_split(index, math.ceil(len(index) / batch_size)):
            logits = model(_as_input(cells.crops[chunk], device))
            target = torch.from_numpy(cells.labels[chunk]).to(device)
            loss += F.cross_entropy(logits, target, reduction="sum").item()
            correct += int((logits.argmax(1) == target).sum())
    return loss / len(index), correct / len(index)


def train(
    cells: TrainingCells,
    backbone: features.Backbone,
    *,
    epochs: int,
    learning_rate: float,
    schedule: str = "cosine",
    weight_decay: float = 1e-4,
    batch_size: int = 64,
    plate_batches: bool = False,
    mixup: float = 0.0,
    cell_scale: float = 1.0,
    precision: str = "auto",
    seed: int = 0,
    device: torch.device | None = None,
    progress=None,
) -> tuple[dict, pd.DataFrame, int]:
    """Fine-tune ``backbone`` (from its ImageNet weights) to tell the classes of ``cells`` apart.

    An epoch is as many class-balanced crops (:func:`minibatches`) as there are training crops,
    augmented (:func:`augment`; with ``mixup`` > 0, mixed with Beta(mixup, mixup) weights); the
    learning rate follows ``schedule`` (``cosine``: down to 0 over all epochs; ``constant``).
    ``precision`` is ``features.precision``'s: on a GPU by default the steps run under float16
    autocast, their gradients scaled. Returns the backbone's state dict at the epoch of lowest
    held-out loss (the last epoch where no well is held out), the per-epoch history
    (:data:`HISTORY_COLUMNS`) and that epoch. Seeded: the same inputs give the same weights on a CPU."""
    device = device or torch.device("cpu")
    torch.manual_seed(seed)
    generator = torch.Generator(device=device).manual_seed(seed)
    mixing = np.random.default_rng([seed, 4])
    channels = cells.crops.shape[1]
    model = CropClassifier(backbone, channels, len(cells.classes), cell_scale).to(device)
    dtype = features.autocast_dtype(precision, device)
    autocast = (lambda: torch.autocast(device.type, dtype)) if dtype else contextlib.nullcontext
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    train_index = np.flatnonzero(~cells.validation)
    steps = max(1, len(train_index) // batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    total = epochs * steps
    decay = (lambda step: 0.5 * (1 + math.cos(math.pi * step / total))) if schedule == "cosine" else (lambda step: 1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, decay)
    history, best, best_loss, best_epoch = [], None, math.inf, epochs
    for epoch in range(1, epochs + 1):
        model.train()
        started, loss_sum, correct = time.perf_counter(), 0.0, 0
        rate = optimizer.param_groups[0]["lr"]
        batches = minibatches(
            cells.labels[train_index],
            cells.plates[train_index],
            batch_size=batch_size,
            steps=steps,
            seed=seed * 1000 + epoch,
            plate_batches=plate_batches,
        )
        for batch in batches:
            chosen = train_index[batch]
            x = augment(_as_input(cells.crops[chosen], device), generator)
            target = torch.from_numpy(cells.labels[chosen]).to(device)
            with autocast():
                if mixup > 0:
                    weight = float(mixing.beta(mixup, mixup))
                    order = torch.randperm(len(x), generator=generator, device=device)
                    logits = model(weight * x + (1 - weight) * x[order])
                    loss = weight * F.cross_entropy(logits, target)
                    loss = loss + (1 - weight) * F.cross_entropy(logits, target[order])
                else:
                    logits = model(x)
                    loss = F.cross_entropy(logits, target)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            loss_sum += loss.item() * len(x)
            correct += int((logits.argmax(1) == target).sum())
        seconds = time.perf_counter() - started
        validation_loss, validation_accuracy = _evaluate(model, cells, device, 4 * batch_size)
        seen = steps * batch_size
        history.append(
            dict(
                zip(
                    HISTORY_COLUMNS,
                    (epoch, rate, loss_sum / seen, correct / seen, validation_loss, validation_accuracy),
                ),
                seconds=seconds,
                crops_per_second=seen / seconds,
            )
        )
        if validation_loss is None or validation_loss < best_loss:
            best_loss = math.inf if validation_loss is None else validation_loss
            best, best_epoch = copy.deepcopy(model.net.state_dict()), epoch
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{loss_sum / seen:.3f}", held_out_accuracy=_shown(validation_accuracy))
        log.info(
            "epoch %d/%d: loss %.4f, held-out loss %s, accuracy %s, %.0f crops/s",
            epoch,
            epochs,
            loss_sum / seen,
            _shown(validation_loss),
            _shown(validation_accuracy),
            seen / seconds,
        )
    state = {key: value.detach().cpu() for key, value in best.items()}
    return state, pd.DataFrame(history, columns=HISTORY_COLUMNS), best_epoch


def _shown(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def weights_sidecar(
    cells: TrainingCells, settings: dict, history: pd.DataFrame, chosen_epoch: int, device: torch.device
) -> dict:
    """What a trained weights file was made from, written beside it as JSON: the backbone, the
    protocol and labels, the classes and compounds trained on, the epochs and the one kept."""
    accuracy = history.loc[history["epoch"] == chosen_epoch, "validation_accuracy"].iloc[0]
    return {
        "backbone": settings["backbone"],
        "protocol": settings["protocol"],
        "labels": settings["labels"],
        "classes": cells.classes,
        "compounds": sorted(set(cells.compounds)),
        "training_crops": int((~cells.validation).sum()),
        "validation_crops": int(cells.validation.sum()),
        "crop_size": int(cells.crops.shape[-1]),
        "epochs": int(settings["epochs"]),
        "chosen_epoch": int(chosen_epoch),
        "chosen_by": "held-out classification loss" if cells.validation.any() else "last epoch (no held-out wells)",
        "validation_accuracy": None if pd.isna(accuracy) else float(accuracy),
        "seed": int(settings["seed"]),
        "device": device.type,
    }
