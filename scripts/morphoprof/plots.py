"""Figures: illumination, segmentation QC and overlays, the MOA confusion matrix, profile embeddings, scores."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .metadata import NUCLEI_COUNT, QC_BLANK, QC_BLURRY, QC_DEBRIS, QC_PASS, QC_SATURATED


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


def embedding(coords: np.ndarray, moas: pd.Series, batches: pd.Series, title: str, path) -> None:
    """2-D embedding of treatments, coloured by MOA (left) and by batch (right)."""
    fig, axes = plt.subplots(1, 2, figsize=(14, 6))
    for ax, labels, name in zip(axes, (moas, batches), ("MOA", "batch")):
        colours = plt.get_cmap("tab20" if labels.nunique() > 10 else "tab10")
        for i, label in enumerate(sorted(labels.unique())):
            sel = (labels == label).to_numpy()
            ax.scatter(
                coords[sel, 0],
                coords[sel, 1],
                color=colours(i % colours.N),
                s=40,
                label=label,
                edgecolor="k",
                linewidth=0.3,
            )
        ax.legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left", title=name)
        ax.set_title(f"{title}: coloured by {name}")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def similarity_heatmap(similarity: np.ndarray, moas: pd.Series, title: str, path) -> None:
    """Treatment-by-treatment cosine similarity, ordered by MOA, MOA blocks outlined."""
    order = np.argsort(moas.to_numpy(), kind="stable")
    labels = moas.to_numpy()[order]
    fig, ax = plt.subplots(figsize=(9, 8))
    shown = ax.imshow(similarity[np.ix_(order, order)], cmap="RdBu_r", vmin=-1, vmax=1)
    starts = [0] + [i for i in range(1, len(labels)) if labels[i] != labels[i - 1]]
    ends = starts[1:] + [len(labels)]
    for start, end in zip(starts, ends):
        ax.add_patch(plt.Rectangle((start - 0.5, start - 0.5), end - start, end - start, fill=False, lw=1.2))
    centres = [(a + b - 1) / 2 for a, b in zip(starts, ends)]
    ax.set_xticks(centres, [labels[a] for a in starts], rotation=60, ha="right", fontsize=7)
    ax.set_yticks(centres, [labels[a] for a in starts], fontsize=7)
    fig.colorbar(shown, ax=ax, fraction=0.046, label="cosine similarity")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def distance_distributions(groups: dict[str, np.ndarray], title: str, path) -> None:
    """Histograms of pairwise cosine distances, one per kind of pair."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    bins = np.linspace(0, 2, 41)
    for name, values in groups.items():
        if len(values):
            ax.hist(values, bins=bins, density=True, alpha=0.5, label=f"{name} (n={len(values)})")
    ax.set_xlabel("cosine distance between treatment profiles")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def scores_by_method(table: pd.DataFrame, path) -> None:
    """Grouped bars: NSC, NSCB and mAP for each normalization and feature family."""
    metrics = ["nsc", "nscb", "map"]
    rows = table.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(rows)), 4.5))
    width = 0.8 / len(metrics)
    for i, metric in enumerate(metrics):
        heights = rows[metric].astype(float)  # a null score: no bar
        ax.bar(np.arange(len(rows)) + i * width, heights, width, label=metric.upper())
    ax.set_xticks(np.arange(len(rows)) + width, rows["normalization"] + "\n" + rows["family"], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.legend()
    ax.set_title("MOA retrieval by normalization")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def qc_fields(flagged: pd.DataFrame, nuclear: str, title: str, path) -> None:
    """Each field's nuclear focus score against its nuclear contrast, coloured by its image-QC flag."""
    colours = {QC_BLANK: "tab:grey", QC_DEBRIS: "tab:orange", QC_BLURRY: "tab:purple", QC_SATURATED: "tab:red"}
    x, y = flagged[f"QC_{nuclear}_Contrast"].to_numpy(), flagged[f"QC_{nuclear}_Focus"].to_numpy()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    passed = flagged[QC_PASS].to_numpy()
    ax.scatter(x[passed], y[passed], s=14, color="tab:blue", label=f"kept ({int(passed.sum())})")
    for flag, colour in colours.items():
        hit = flagged[flag].to_numpy()
        if hit.any():
            label = f"{flag.removeprefix('QC_').lower()} ({int(hit.sum())})"
            ax.scatter(x[hit], y[hit], s=28, color=colour, marker="x", label=label)
    ax.set_xlabel(f"{nuclear} contrast (std / mean)")
    ax.set_ylabel(f"{nuclear} focus score")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def cell_counts(flagged: pd.DataFrame, wells: pd.Series, low: float, high: float, title: str, path) -> None:
    """Segmented cells per field, one column per well, with the QC limits; flagged fields in red."""
    order = sorted(wells.unique())
    x = wells.map({w: i for i, w in enumerate(order)}).to_numpy()
    passed = flagged[QC_PASS].to_numpy()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.18 * len(order) + 2), 4))
    ax.scatter(x[passed], flagged[NUCLEI_COUNT].to_numpy()[passed], s=14, color="tab:blue", label="kept")
    ax.scatter(
        x[~passed],
        flagged[NUCLEI_COUNT].to_numpy()[~passed],
        s=24,
        color="tab:red",
        marker="x",
        label=f"flagged ({int((~passed).sum())})",
    )
    for limit in (low, high):
        ax.axhline(limit, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xticks(range(len(order)), order, rotation=90, fontsize=6)
    ax.set_xlabel("well")
    ax.set_ylabel("cells per field")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def mask_overlays(pictures: list[np.ndarray], masks: list[list[np.ndarray]], titles: list[str], path) -> None:
    """Grey fields with the outlines of their label images drawn over them (nuclei magenta, cells cyan),
    two pixels wide so that they show on saturated nuclei too."""
    from skimage import segmentation as sk_segmentation

    columns = min(len(pictures), 4)
    rows = -(-len(pictures) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 4.4 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, picture, labels, title in zip(axes.ravel(), pictures, masks, titles):
        rgb = np.repeat(np.clip(picture, 0, 1)[..., None], 3, axis=-1)
        for mask, colour in zip(labels, ((1.0, 0.0, 0.8), (0.0, 0.9, 0.9))):
            rgb[sk_segmentation.find_boundaries(mask, mode="thick")] = colour
        ax.imshow(rgb)
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def training_curve(history: pd.DataFrame, chosen_epoch: int | None, title: str, path) -> None:
    """Training and held-out loss (left) and accuracy (right) per epoch, the checkpoint kept marked."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for split, style in (("train", "-o"), ("validation", "-s")):
            column = f"{split}_{metric}"
            if history[column].notna().any():
                ax.plot(history["epoch"], history[column], style, label=split)
        if chosen_epoch is not None:
            ax.axvline(chosen_epoch, color="grey", linestyle="--", label=f"kept (epoch {chosen_epoch})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
