"""Detection metrics at frame and video level, and the per-run artifacts.

scikit-learn computes AUC, AP, F1, accuracy and the confusion matrix; EER is read off
its ROC curve with linear interpolation where FPR and FNR cross. Every result says its
level (``frame`` or ``video``). Used in notebooks 02, 03 and 04.
"""
from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from sklearn import metrics as skm

from .io import atomic_path


def eer(y, p) -> float:
    """Equal error rate: where the false-positive rate equals the false-negative rate,
    linearly interpolated between the two ROC points around the crossing."""
    y, p = np.asarray(y), np.asarray(p)
    if len(np.unique(y)) < 2:
        return float("nan")
    fpr, tpr, _ = skm.roc_curve(y, p)
    fnr = 1 - tpr
    diff = fpr - fnr  # increases from -1 to +1 along the curve
    i = int(np.argmax(diff >= 0))
    if i == 0 or diff[i] == 0:
        return float(fpr[i])
    t = -diff[i - 1] / (diff[i] - diff[i - 1])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def binary_metrics(y, p, threshold: float = 0.5) -> dict:
    """AUC, EER, AP, accuracy and F1 at ``threshold``, confusion matrix ``[[TN, FP], [FN, TP]]``."""
    y, p = np.asarray(y).astype(int), np.asarray(p, dtype=float)
    pred = (p >= threshold).astype(int)
    both = len(np.unique(y)) == 2
    return {
        "n": int(len(y)), "n_fake": int(y.sum()),
        "auc": float(skm.roc_auc_score(y, p)) if both else float("nan"),
        "eer": eer(y, p),
        "ap": float(skm.average_precision_score(y, p)) if both else float("nan"),
        "acc": float(skm.accuracy_score(y, pred)),
        "f1": float(skm.f1_score(y, pred, zero_division=0)),
        "threshold": float(threshold),
        "confusion": skm.confusion_matrix(y, pred, labels=[0, 1]).tolist(),
    }


def video_scores(rows, probs):
    """Mean probability per video (grouped by ``video_id`` and label); returns ``(ids, y, p)``."""
    groups = defaultdict(list)
    for r, p in zip(rows, probs):
        groups[(r["video_id"], int(r["label"]))].append(float(p))
    keys = sorted(groups)
    return keys, np.array([k[1] for k in keys]), np.array([np.mean(groups[k]) for k in keys])


def evaluate(rows, probs, threshold: float = 0.5) -> dict:
    """``{"frame": metrics, "video": metrics}``; video level whenever rows have video ids
    and some video has more than one frame."""
    y = np.array([int(r["label"]) for r in rows])
    out = {"frame": binary_metrics(y, probs, threshold)}
    keys, vy, vp = video_scores(rows, probs)
    if rows and rows[0].get("video_id") and len(keys) < len(rows):
        out["video"] = binary_metrics(vy, vp, threshold)
    return out


def summary_line(name: str, result: dict, split: str) -> str:
    """``name | split | frame AUC .. EER .. | video AUC ..`` for printing."""
    f = result["frame"]
    s = f"{name} | {split} | frame: AUC {f['auc']:.3f} EER {f['eer']:.3f} AP {f['ap']:.3f} " \
        f"acc {f['acc']:.3f} F1 {f['f1']:.3f}"
    if "video" in result:
        s += f" | video: AUC {result['video']['auc']:.3f}"
    return s


def write_predictions(path, rows, probs) -> Path:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "probability", "video_id", "method"])
        for r, p in zip(rows, probs):
            w.writerow([r["path"], r["label"], f"{float(p):.6f}", r.get("video_id", ""), r.get("method", "")])
    return Path(path)


def write_json(path, data) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=float))
    return Path(path)


def save_run_artifacts(run_dir, rows, probs, result: dict, title: str, history=None,
                       figures_dir=None, prefix: str = "") -> dict:
    """metrics.json, predictions.csv, roc.png, confusion.png (and curves.png with a
    ``history``) in ``run_dir``; figures also copied to ``figures_dir`` as ``prefix_*.png``."""
    import matplotlib.pyplot as plt

    from . import viz

    run_dir = Path(run_dir)
    paths = {"metrics": write_json(run_dir / "metrics.json", result),
             "predictions": write_predictions(run_dir / "predictions.csv", rows, probs)}
    y = [int(r["label"]) for r in rows]
    figs = {"roc": viz.plot_roc(plt.subplots(figsize=(4, 4))[1], y, probs, title),
            "confusion": viz.plot_confusion(plt.subplots(figsize=(3.6, 3.2))[1],
                                            result["frame"]["confusion"], title)}
    if history:
        figs["curves"] = viz.plot_curves(plt.subplots(figsize=(5, 3.2))[1], history, title)
    for name, fig in figs.items():
        paths[name] = viz.save(fig, run_dir / f"{name}.png")
        if figures_dir is not None:
            viz.save(fig, Path(figures_dir) / f"{prefix}{name}.png")
        plt.close(fig)
    return paths
