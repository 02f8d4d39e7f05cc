"""Pure plot helpers: arrays in, a matplotlib figure out; no I/O beyond an optional save.

Used in every notebook.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np


def overlay(image, heat, alpha: float = 0.45, cmap: str = "jet") -> np.ndarray:
    """Blend a [0, 1] map over an RGB uint8 image; returns RGB uint8."""
    heat = np.clip(np.asarray(heat, dtype=np.float32), 0, 1)
    colour = plt.get_cmap(cmap)(heat)[..., :3]
    out = (1 - alpha) * np.asarray(image, np.float32) / 255 + alpha * colour
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


def mask_overlay(image, mask, alpha: float = 0.55, colour=(255, 40, 40)) -> np.ndarray:
    """Tint ``image`` with ``colour`` in proportion to a [0, 1] mask; untouched where it is 0."""
    m = np.clip(np.asarray(mask, dtype=np.float32), 0, 1)[..., None] * alpha
    out = np.asarray(image, np.float32) * (1 - m) + np.asarray(colour, np.float32) * m
    return out.round().astype(np.uint8)


def image_grid(images, titles=None, ncols: int = 6, size: float = 2.0, suptitle=None, colorbar: str | None = None,
               cmap: str = "jet"):
    """Images (RGB or grey arrays) in a grid with optional titles; returns the figure.
    ``colorbar``: the label of one colourbar for the grid's heatmaps (``cmap`` over [0, 1],
    as :func:`overlay` paints them). Constrained layout keeps titles off the images above."""
    images = list(images)
    n = max(1, len(images))
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols + (0.8 if colorbar else 0),
                                                    size * nrows + (0.4 if suptitle else 0)),
                             squeeze=False, layout="constrained")
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            im = np.asarray(images[i])
            ax.imshow(im, cmap="gray" if im.ndim == 2 else None, vmin=0, vmax=255 if im.dtype == np.uint8 else 1)
            if titles is not None:
                ax.set_title(str(titles[i]), fontsize=8)
    if colorbar:
        heat_colorbar(fig, axes, colorbar, cmap)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def heat_colorbar(fig, axes, label: str, cmap: str = "jet"):
    """One colourbar for heatmaps painted with ``cmap`` over [0, 1] on ``axes``."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    sm = ScalarMappable(norm=Normalize(0, 1), cmap=cmap)
    axes = np.asarray(axes, dtype=object).ravel().tolist()
    if len(axes) == 1:  # beside one panel, in its grid cell: tight_layout keeps working
        return fig.colorbar(sm, ax=axes[0], fraction=0.046, pad=0.02, label=label)
    return fig.colorbar(sm, ax=axes, shrink=0.8, label=label)


def draw_faces(ax, image, faces, title=None):
    """An image with face boxes, the 5 landmarks and probabilities drawn on ``ax``."""
    ax.imshow(image)
    for f in faces:
        x1, y1, x2, y2 = f.box
        ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color="lime", lw=1.5))
        ax.scatter(f.landmarks[:, 0], f.landmarks[:, 1], s=8, c="red")
        ax.text(x1, y1 - 3, f"p={f.prob:.2f}", color="lime", fontsize=7)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=8)
    return ax.figure


def bar_table(ax, labels, values, title="", fmt="{:.3f}"):
    """A labelled horizontal bar chart of named values (for metric tables)."""
    y = np.arange(len(labels))
    ax.barh(y, values, color="tab:blue")
    ax.set_yticks(y, labels)
    for yi, v in zip(y, values):
        ax.text(v, yi, " " + fmt.format(v), va="center", fontsize=8)
    ax.set_title(title)
    ax.invert_yaxis()
    return ax.figure


def save(fig, path) -> Path:
    """Save a figure (PNG, 120 dpi) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def plot_roc(ax, y, p, title=""):
    """ROC curve with its AUC in the legend (frame level)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fpr, tpr, _ = roc_curve(y, p)
    ax.plot(fpr, tpr, label=f"AUC {roc_auc_score(y, p):.3f}")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title or "ROC (frame level)")
    ax.legend(loc="lower right")
    return ax.figure


def plot_confusion(ax, cm, title=""):
    """A 2x2 confusion matrix ``[[TN, FP], [FN, TP]]`` with counts written in."""
    cm = np.asarray(cm)
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "black")
    ax.set_xticks([0, 1], ["real", "fake"])
    ax.set_yticks([0, 1], ["real", "fake"])
    ax.set(xlabel="predicted", ylabel="true", title=title or "confusion (frame level, t=0.5)")
    return ax.figure


def plot_curves(ax, history, title=""):
    """Training and validation loss per epoch (and validation AUC on a second axis)."""
    ep = [h["epoch"] for h in history]
    ax.plot(ep, [h["train_loss"] for h in history], "o-", label="train loss")
    ax.plot(ep, [h["val_loss"] for h in history], "o-", label="val loss")
    ax.set(xlabel="epoch", ylabel="BCE loss", title=title or "training curves")
    handles, labels = ax.get_legend_handles_labels()
    if all("val_auc" in h for h in history):
        ax2 = ax.twinx()
        ax2.plot(ep, [h["val_auc"] for h in history], "s--", c="tab:green", label="val AUC (frame)")
        ax2.set_ylabel("val AUC")
        ax2.set_ylim(0, 1)
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    # below the axes, so that no curve is hidden under it
    ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=len(labels), fontsize=8,
              frameon=False)
    return ax.figure


def localization_row(axes, image, gt, pred, threshold: float = 0.5, title: str = ""):
    """image | ground truth | predicted map | thresholded overlay, on four axes."""
    axes[0].imshow(image)
    axes[0].set_title(title or "image", fontsize=8)
    axes[1].imshow(gt, cmap="gray", vmin=0, vmax=1)
    axes[1].set_title("ground truth", fontsize=8)
    shown = axes[2].imshow(pred, cmap="jet", vmin=0, vmax=1)
    axes[2].set_title("predicted map", fontsize=8)
    axes[2].figure.colorbar(shown, ax=axes[2], fraction=0.046, pad=0.02, label="p(manipulated)")
    axes[3].imshow(mask_overlay(image, (np.asarray(pred) > threshold).astype(np.float32)))
    axes[3].set_title(f"map > {threshold:.2f}", fontsize=8)
    for ax in axes:
        ax.axis("off")
    return axes[0].figure


def plot_cascade(ax, steps, curves, title="", ylabel="similarity to the original maps", bound=None):
    """Cascading randomisation (Adebayo et al., 2018): one line per ``{label: values}``, one
    value per step (``steps[0]`` the original net, then each layer group randomised on top of
    the ones before it). ``bound``: a dashed line at the verdict's threshold."""
    x = np.arange(len(steps))
    for label, values in curves.items():
        ax.plot(x, values, "o-", label=label)
    ax.axhline(0, c="grey", lw=0.6)
    if bound is not None:
        ax.axhline(bound, c="k", ls="--", lw=0.8, label=f"bound {bound}")
    ax.set_xticks(x, [s if i == 0 else f"+{s}" for i, s in enumerate(steps)], rotation=30)
    ax.set(xlabel="randomised, cumulatively from the top", ylabel=ylabel, title=title, ylim=(-1.05, 1.05))
    ax.legend(fontsize=8)
    return ax.figure


def plot_robustness(ax, results, metric: str, title: str = "", ylabel: str = "", bound=None,
                    bound_label: str = "bar"):
    """``metric`` against perturbation level, one line per kind (rows of
    :func:`dfcourse.robustness.detector_suite` / ``localizer_suite``); the clean value as a
    dashed line at level 0 of every kind, ``bound`` (a bar to meet, or a baseline: say which
    with ``bound_label``) as a dotted line."""
    clean = next((r[metric] for r in results if r["kind"] == "none"), None)
    kinds = [k for k in dict.fromkeys(r["kind"] for r in results) if k != "none"]
    for k in kinds:
        pts = sorted((r["level"], r[metric]) for r in results if r["kind"] == k and r["level"] > 0)
        if pts:
            xs, ys = zip(*([(0, clean)] if clean is not None else []) + pts)
            ax.plot(xs, ys, marker="o", ms=3, lw=1.2, label=k)
    if clean is not None:
        ax.axhline(clean, ls="--", c="grey", lw=0.8, label="clean")
    if bound is not None:
        ax.axhline(bound, ls=":", c="black", lw=1.0, label=bound_label)
    ax.set(xlabel="level (0 = clean)", ylabel=ylabel or metric, title=title, xticks=range(0, 6))
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.22), frameon=False)  # off the curves
    return ax.figure


def plot_gap(ax, names, first, second, first_ci=None, second_ci=None, labels=("in-domain", "unseen"), title=""):
    """One row per model: two AUCs joined by a line (the gap between them), each with its
    interval when given; chance (0.5) dotted."""
    y = np.arange(len(names))[::-1]
    for k, (vals, ci, colour, label) in enumerate(((first, first_ci, "tab:blue", labels[0]),
                                                   (second, second_ci, "tab:orange", labels[1]))):
        vals = np.asarray(vals, float)
        err = None
        if ci is not None:
            ci = np.asarray(ci, float)
            err = np.abs(np.stack([vals - ci[:, 0], ci[:, 1] - vals]))
        ax.errorbar(vals, y + (0.12 if k == 0 else -0.12), xerr=err, fmt="o", color=colour, label=label, capsize=2,
                    ms=5, lw=1)
    for yi, a, b in zip(y, first, second):
        ax.plot([a, b], [yi + 0.12, yi - 0.12], c="grey", lw=0.8)
    ax.axvline(0.5, ls=":", c="grey", lw=1)
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("test AUC (frame level)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="lower left")

