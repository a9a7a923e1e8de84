"""Figures: illumination functions, the MOA confusion matrix, a UMAP of treatment profiles."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def illumination(mean_image: np.ndarray, function: np.ndarray, title: str, path) -> None:
    """The plate's raw mean field beside its smoothed illumination function."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for ax, image, name in zip(axes, (mean_image, function), ("mean of fields", "illumination function")):
        shown = ax.imshow(image, cmap="magma")
        ax.set_title(name)
        ax.axis("off")
        fig.colorbar(shown, ax=ax, fraction=0.046)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def confusion_matrix(counts: pd.DataFrame, title: str, path) -> None:
    """Row-normalized confusion matrix of true (rows) against predicted MOA."""
    rates = counts.div(counts.sum(axis=1).replace(0, 1), axis=0)
    size = 2.5 + 0.45 * len(counts)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    shown = ax.imshow(rates.to_numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(counts.columns)), counts.columns, rotation=60, ha="right")
    ax.set_yticks(range(len(counts.index)), counts.index)
    for (i, j), n in np.ndenumerate(counts.to_numpy()):
        if n:
            ax.text(j, i, int(n), ha="center", va="center", color="white" if rates.iat[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted MOA (1-NN)")
    ax.set_ylabel("true MOA")
    ax.set_title(title)
    fig.colorbar(shown, ax=ax, fraction=0.046, label="fraction of treatments")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def embedding(coords: np.ndarray, labels: pd.Series, markers: pd.Series, title: str, path) -> None:
    """2-D embedding of treatments, coloured by MOA, marker by batch."""
    fig, ax = plt.subplots(figsize=(8, 6))
    colours = plt.get_cmap("tab20")
    shapes = "os^Dv<>pP*"
    for i, moa in enumerate(sorted(labels.unique())):
        for j, batch in enumerate(sorted(markers.unique())):
            sel = ((labels == moa) & (markers == batch)).to_numpy()
            if sel.any():
                ax.scatter(coords[sel, 0], coords[sel, 1], color=colours(i % 20), marker=shapes[j % len(shapes)],
                           s=40, label=moa if j == 0 else None, edgecolor="k", linewidth=0.3)
    ax.legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left", title="MOA (marker: batch)")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
