"""What the CNN features are called and which are scored: levels, feature families, backbones and
weights, without torch, so that planning the workflow (the rules, ``screen``) never imports it.

A feature column is ``<family>_<channel>_...``; a profile level is scored on its families joined
by '+'. Features of a network fine-tuned on the screen (``features.weights: trained``) carry the
families' names with ``Trained`` in front, so the ImageNet families are scored beside them.
"""

from __future__ import annotations

FIELD_FAMILY, CELL_FAMILY = "CNN", "CellCNN"  # column prefixes: CNN_<channel>_0001, CellCNN_<channel>_Mean_0001
LEVELS = {"field": (FIELD_FAMILY,), "cell": (CELL_FAMILY,), "both": (FIELD_FAMILY, CELL_FAMILY)}
TRAINED = "Trained"  # prefix of the families of trained weights: TrainedCNN, TrainedCellCNN
WEIGHTS = ("imagenet", "trained")
PROTOCOLS = ("held_out", "transductive")
TORCHVISION_BACKBONES = {
    "resnet50": ("resnet50", "ResNet50_Weights", "fc"),
    "inception_v3": ("inception_v3", "Inception_V3_Weights", "fc"),
    "efficientnet_b0": ("efficientnet_b0", "EfficientNet_B0_Weights", "classifier"),
}
BACKBONES = ("efficientnet_lite0", *TORCHVISION_BACKBONES)


def trained_family(family: str) -> str:
    """The family (or '+'-joined families) of the same features from trained weights.

    Examples
    --------
    >>> trained_family("CNN+CellCNN")
    'TrainedCNN+TrainedCellCNN'
    """
    return "+".join(TRAINED + name for name in family.split("+"))


def level_family(level: str, weights: str = "imagenet") -> str:
    """The feature family a profile level is scored on: its families joined by '+'.

    Examples
    --------
    >>> level_family("both")
    'CNN+CellCNN'
    >>> level_family("cell", "trained")
    'TrainedCellCNN'
    """
    family = "+".join(LEVELS[level])
    return trained_family(family) if weights == "trained" else family


def scored_levels(level: str, weights: str = "imagenet") -> dict[str, str]:
    """The levels scored for a configured ``features.level``, with their families: with ``both``,
    each level alone beside the two together; with trained weights, the trained levels
    (``trained_<level>``) beside the ImageNet ones.

    Examples
    --------
    >>> scored_levels("field", "trained")
    {'field': 'CNN', 'trained_field': 'TrainedCNN'}
    """
    names = list(LEVELS) if level == "both" else [level]
    levels = {name: level_family(name) for name in names}
    if weights == "trained":
        levels |= {f"trained_{name}": level_family(name, weights) for name in names}
    return levels


def embeds_cells(level: str) -> bool:
    """Whether a level needs single-cell embeddings (and so segmented nuclei)."""
    return CELL_FAMILY in LEVELS[level]


def embeds_fields(level: str) -> bool:
    """Whether a level needs whole-field embeddings."""
    return FIELD_FAMILY in LEVELS[level]


def intensity_feature_names(channels: list[str]) -> list[str]:
    """The simple baseline profile: each channel's mean intensity."""
    return [f"Intensity_{ch}_Mean" for ch in channels]


def cnn_feature_names(channels: list[str], dim: int, family: str = FIELD_FAMILY) -> list[str]:
    """Embedding columns, ``<family>_<channel>_0000``...: whole fields', or single cells' one by one."""
    return [f"{family}_{ch}_{k:04d}" for ch in channels for k in range(dim)]


def cell_feature_names(channels: list[str], dim: int, stats, family: str = CELL_FAMILY) -> list[str]:
    """Single-cell embeddings summarized per field, ``<family>_<channel>_<Mean|Median>_0000``..."""
    return [f"{family}_{ch}_{stat.capitalize()}_{k:04d}" for stat in stats for ch in channels for k in range(dim)]


def feature_family(column: str) -> str:
    """The family of a feature column: the prefix before its first '_'.

    Examples
    --------
    >>> feature_family("CellCNN_DNA_Mean_0001"), feature_family("Intensity_actin_Mean")
    ('CellCNN', 'Intensity')
    """
    return column.split("_", 1)[0]


def feature_columns(table, family: str | None = None) -> list[str]:
    """A table's feature columns (those not ``Metadata_``), optionally of some families only:
    ``CNN``, or several joined by '+' (``CNN+CellCNN``).

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame(columns=["Metadata_Plate", "CNN_DNA_0000", "CellCNN_DNA_Mean_0000", "Intensity_DNA_Mean"])
    >>> feature_columns(table, "CNN+Intensity")
    ['CNN_DNA_0000', 'Intensity_DNA_Mean']
    """
    columns = [c for c in table.columns if not c.startswith("Metadata_")]
    wanted = None if family is None else set(family.split("+"))
    return [c for c in columns if wanted is None or feature_family(c) in wanted]
