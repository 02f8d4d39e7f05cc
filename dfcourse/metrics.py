"""Metrics: detection at frame and video level, maps against masks, and run artifacts.

Detection: scikit-learn computes AUC, AP, F1, accuracy and the confusion matrix; EER is
read off its ROC curve with linear interpolation where FPR and FNR cross. Every result
says its level (``frame`` or ``video``).
Maps (localization and CAMs) against ground-truth masks: IoU and Dice of binary maps,
pixel AUC, the validation-chosen threshold, pointing game and energy in mask.
Used in notebooks 02, 03, 04 and 05.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn import metrics as skm

from . import viz
from .io import atomic_path


def eer(y, p) -> float:
    """Equal error rate: where the false-positive rate equals the false-negative rate,
    linearly interpolated between the two ROC points around the crossing."""
    y, p = np.asarray(y), np.asarray(p)
    if len(np.unique(y)) < 2:
        return float("nan")
    fpr, tpr, _ = skm.roc_curve(y, p)
    gap = fpr - (1 - tpr)  # FPR - FNR: rises from -1 to +1 along the curve
    hi = int(np.flatnonzero(gap >= 0)[0])  # the first ROC point at or past the crossing
    if hi == 0 or gap[hi] == 0:
        return float(fpr[hi])
    w = gap[hi] / (gap[hi] - gap[hi - 1])  # the weight of the point before it
    return float(w * fpr[hi - 1] + (1 - w) * fpr[hi])


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
    """Mean probability per video (grouped by ``video_id`` and label); returns ``(ids, y, p)``,
    ``ids`` the sorted ``(video_id, label)`` keys. One pass: each frame's group index, then the
    sums and counts of all groups at once (``np.bincount``)."""
    frame_keys = [(r["video_id"], int(r["label"])) for r in rows]
    keys = sorted(set(frame_keys))
    pos = {k: i for i, k in enumerate(keys)}
    group = np.fromiter((pos[k] for k in frame_keys), dtype=np.int64, count=len(frame_keys))
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    if len(p) != len(group):
        raise ValueError(f"{len(group)} rows but {len(p)} probabilities: score every row once")
    sums = np.bincount(group, weights=p, minlength=len(keys))
    counts = np.bincount(group, minlength=len(keys))
    return keys, np.array([k[1] for k in keys]), sums / np.maximum(counts, 1)


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
    run_dir = Path(run_dir)
    paths = {"metrics": write_json(run_dir / "metrics.json", result),
             "predictions": write_predictions(run_dir / "predictions.csv", rows, probs)}
    y = [int(r["label"]) for r in rows]
    figs = {"roc": viz.plot_roc(plt.subplots(figsize=(4, 4))[1], y, probs, title),
            "confusion": viz.plot_confusion(plt.subplots(figsize=(3.6, 3.2))[1],
                                            result["frame"]["confusion"], title)}
    if history:
        # the curves are training's (train and validation), whichever split ``title`` names
        figs["curves"] = viz.plot_curves(plt.subplots(figsize=(5, 3.2))[1], history,
                                         f"{title.rsplit('(', 1)[0].rstrip()}: train / val curves")
    for name, fig in figs.items():
        paths[name] = viz.save(fig, run_dir / f"{name}.png")
        if figures_dir is not None:
            viz.save(fig, Path(figures_dir) / f"{prefix}{name}.png")
        plt.close(fig)
    return paths


# ------------------------------------------------- maps against ground-truth masks
def mask_iou(pred, gt) -> float:
    """IoU of two binary maps; 1.0 when both are empty."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    union = (pred | gt).sum()
    return float((pred & gt).sum() / union) if union else 1.0


def dice(pred, gt) -> float:
    """Dice = F1 of two binary maps; 1.0 when both are empty."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    s = pred.sum() + gt.sum()
    return float(2 * (pred & gt).sum() / s) if s else 1.0


def pixel_auc(maps, gts, max_pixels: int = 2_000_000, seed: int = 0) -> float:
    """ROC AUC over all pixels of the given maps (subsampled beyond ``max_pixels``). Maps in
    [0, 1] are ranked on :data:`AUC_LEVELS` levels (:func:`binned_auc`: one pass instead of a
    sort, within about 1e-5 of the exact AUC); other maps exactly (:func:`binary_auc`)."""
    s, t = np.concatenate([m.ravel() for m in maps]), np.concatenate([g.ravel() for g in gts]).astype(int)
    if len(s) > max_pixels:
        idx = np.random.default_rng(seed).choice(len(s), max_pixels, replace=False)
        s, t = s[idx], t[idx]
    if not 0 < t.sum() < len(t):
        return float("nan")
    if len(s) > 100_000 and s.min() >= 0 and s.max() <= 1:
        return binned_auc(t, s)
    return binary_auc(t, s)


AUC_LEVELS = 1 << 20  # score levels of binned_auc: scores closer than 1e-6 count as tied


def binned_auc(labels, scores, levels: int = AUC_LEVELS) -> float:
    """ROC AUC of ``scores`` in [0, 1] counted on ``levels`` equal bins (scores in one bin
    count as tied, one half): linear time, for millions of pixels."""
    t = np.asarray(labels).astype(bool).ravel()
    b = np.minimum((np.asarray(scores, np.float64).ravel() * levels).astype(np.int64), levels - 1)
    pos = np.bincount(b[t], minlength=levels).astype(np.float64)
    neg = np.bincount(b[~t], minlength=levels).astype(np.float64)
    below = np.cumsum(neg) - neg
    return float((pos * (below + 0.5 * neg)).sum() / (pos.sum() * neg.sum()))


def binary_auc(labels, scores) -> float:
    """ROC AUC of ``scores`` for binary ``labels`` (ties count one half), as
    ``sklearn.metrics.roc_auc_score`` computes it, from one sort: the probability that a
    positive scores above a negative (Mann-Whitney U / (n_pos n_neg)). Millions of pixels
    in a fraction of a second, where sklearn's ROC curve takes several times longer."""
    t = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores).ravel()
    n_pos = int(t.sum())
    n_neg = len(t) - n_pos
    if not n_pos or not n_neg:
        raise ValueError("AUC needs both classes among the labels")
    order = np.argsort(s)
    s, t = s[order], t[order]
    group = np.cumsum(np.r_[True, s[1:] != s[:-1]]) - 1  # one group per distinct score
    pos = np.bincount(group, weights=t)
    neg = np.bincount(group, weights=~t)
    below = np.cumsum(neg) - neg  # negatives scoring strictly lower than each group
    return float((pos * (below + 0.5 * neg)).sum() / (n_pos * n_neg))


def _fakes_with_target(maps, gts, labels=None):
    """(map, binary gt) pairs of fakes whose target is not empty: a fake with nothing to
    localize (the change vanished under the threshold) cannot score IoU either way."""
    labels = [1] * len(maps) if labels is None else labels
    return [(m, g > 0.5) for m, g, y in zip(maps, gts, labels) if int(y) == 1 and (g > 0.5).any()]


def best_threshold(maps, gts, candidates=np.linspace(0.05, 0.95, 19)) -> float:
    """The threshold with the highest mean IoU over the given (validation) fakes."""
    pairs = _fakes_with_target(maps, gts)
    ious = np.array([[mask_iou(m > t, g) for m, g in pairs] for t in candidates])  # (threshold, face)
    return float(np.asarray(candidates)[ious.mean(axis=1).argmax()])


def localization_metrics(maps, gts, labels, image_scores=None, threshold: float = 0.5) -> dict:
    """Over fakes with a non-empty target: pixel AUC, mean IoU and Dice (F1) at ``threshold``.
    Over reals: the false-positive area (mean fraction of pixels above it). Image-level AUC
    from the map maximum (and from ``image_scores`` if given), over all faces."""
    labels = np.asarray(labels).astype(int)
    pairs = _fakes_with_target(maps, gts, labels)
    rl = np.flatnonzero(labels == 0)
    nan = float("nan")
    out = {"threshold": float(threshold), "n_fake": len(pairs), "n_fake_empty_target": int(labels.sum()) - len(pairs),
           "n_real": int(len(rl)),
           "pixel_auc": pixel_auc([m for m, _ in pairs], [g for _, g in pairs]) if pairs else nan,
           "iou": float(np.mean([mask_iou(m > threshold, g) for m, g in pairs])) if pairs else nan,
           "dice": float(np.mean([dice(m > threshold, g) for m, g in pairs])) if pairs else nan,
           "fp_area_real": float(np.mean([(maps[i] > threshold).mean() for i in rl])) if len(rl) else nan}
    if labels.any() and len(rl):
        out["image_auc_map_max"] = float(skm.roc_auc_score(labels, [float(np.max(m)) for m in maps]))
        if image_scores is not None:
            out["image_auc_logit"] = float(skm.roc_auc_score(labels, image_scores))
    return out


def mean_mask_prior(gts, labels, splits=None) -> np.ndarray:
    """The best image-independent map: the mean ground-truth mask of the training fakes
    (those with a non-empty target). ``splits`` (one per map) guards the rule: anything
    but ``train`` there is an error, since a prior fitted on test maps is a leak."""
    if splits is not None and set(splits) - {"train"}:
        raise ValueError(f"the mean-mask prior is fitted on the training split only; got {sorted(set(splits))}")
    pairs = _fakes_with_target(gts, gts, labels)
    if not pairs:
        raise ValueError("no training fake with a non-empty mask: cannot fit the mean-mask prior")
    return np.mean([g.astype(np.float32) for _, g in pairs], axis=0)


def gaussian_prior(size: int, sigma: float = 0.22) -> np.ndarray:
    """A centred Gaussian blob, peak 1, standard deviation ``sigma`` x ``size``: the
    "faces are in the middle of the crop" prior."""
    r = (np.arange(size, dtype=np.float32) - (size - 1) / 2) / (sigma * size)
    return np.exp(-0.5 * (r[None, :] ** 2 + r[:, None] ** 2)).astype(np.float32)


def prior_rows(priors: dict, val, test, threshold_for=None) -> dict:
    """Score image-independent maps like a model: ``priors`` maps a name to one map;
    ``val``/``test`` are ``(gts, labels)``. Each prior's threshold is chosen on validation
    fakes (or given by ``threshold_for[name]``). Returns ``{name: localization_metrics}``."""
    out = {}
    for name, prior in priors.items():
        thr = (threshold_for or {}).get(name)
        if thr is None:
            v = [(g, y) for g, y in zip(*val) if int(y) == 1]
            thr = best_threshold([prior] * len(v), [g for g, _ in v])
        out[name] = localization_metrics([prior] * len(test[0]), test[0], test[1], None, thr)
    return out


def localization_table(results: dict, prior: str) -> tuple[list, list]:
    """Header and rows of a localization table. ``results``: name -> ``(metrics at 0.5 or
    None, metrics at the validation-chosen threshold)`` from :func:`localization_metrics`;
    every row's gain is measured against ``results[prior]`` and its false-positive area on
    real faces is at its own (validation-chosen) threshold."""
    ref = results[prior][1]
    header = ["map", "pixel AUC", "IoU@0.5", "IoU@val-best", "Dice@val-best", "FP area on reals",
              f"AUC gain vs {prior}", f"IoU gain vs {prior}", "image AUC (logit)"]
    rows = []
    for name, (m05, mb) in results.items():
        rows.append([name, f"{mb['pixel_auc']:.3f}", f"{m05['iou']:.3f}" if m05 else "-",
                     f"{mb['iou']:.3f} @ {mb['threshold']:.2f}", f"{mb['dice']:.3f}", f"{mb['fp_area_real']:.3f}",
                     f"{mb['pixel_auc'] - ref['pixel_auc']:+.3f}", f"{mb['iou'] - ref['iou']:+.3f}",
                     f"{mb['image_auc_logit']:.3f}" if "image_auc_logit" in mb else "-"])
    return header, rows


def pointing_game(cam, mask) -> bool:
    """Is the map's maximum inside the (binary) ground-truth mask?"""
    cam, mask = np.asarray(cam), np.asarray(mask) > 0.5
    return bool(mask.flat[int(np.argmax(cam))])


def energy_in_mask(cam, mask) -> float:
    """Fraction of the map's total (non-negative) energy that falls inside the mask (0.0 for
    a map without energy). Computed as one weighted mean: the mask's share under weights
    given by the map."""
    weights = np.maximum(np.asarray(cam, dtype=np.float64).ravel(), 0.0)
    if not weights.any():
        return 0.0
    return float(np.average(np.asarray(mask).ravel() > 0.5, weights=weights))


def cam_scores(cams, masks, threshold: float = 0.5) -> dict:
    """Mean pointing game, energy-in-mask and IoU (map > threshold) over fakes with a
    non-empty mask."""
    pairs = [(c, m) for c, m in zip(cams, masks) if (np.asarray(m) > 0.5).any()]
    return {"pointing_game": float(np.mean([pointing_game(c, m) for c, m in pairs])),
            "energy_in_mask": float(np.mean([energy_in_mask(c, m) for c, m in pairs])),
            "iou": float(np.mean([mask_iou(np.asarray(c) > threshold, np.asarray(m) > 0.5) for c, m in pairs])),
            "n": len(pairs)}


def bootstrap_auc(labels, scores, n: int = 200, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """A percentile bootstrap interval for the AUC: faces resampled with replacement ``n``
    times (resamples with one class only are skipped). On a small test split the interval
    is wide, and two models whose intervals overlap are not shown to differ."""
    y, s = np.asarray(labels).astype(int), np.asarray(scores, float)
    rng = np.random.default_rng(seed)
    aucs = []
    for _ in range(n):
        idx = rng.integers(0, len(y), len(y))
        if 0 < y[idx].sum() < len(idx):
            aucs.append(binary_auc(y[idx], s[idx]))
    if not aucs:
        return float("nan"), float("nan")
    lo, hi = np.quantile(aucs, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)
