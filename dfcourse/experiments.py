"""One detector experiment end to end: build, train, pick the best epoch on validation,
score val and test, save artifacts; and the comparison table of notebook 02.

Used in notebooks 02, 03 and 04.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .datasets import FaceDataset
from .metrics import evaluate, save_run_artifacts, summary_line
from .models import build_detector, count_params
from .train import TrainConfig, fit, predict_probs


def balance(rows, seed: int = 0, max_per_class=None) -> list[dict]:
    """Downsample the larger class (and each class to ``max_per_class``), deterministically."""
    rng = np.random.default_rng(seed)
    by = {0: [r for r in rows if r["label"] == 0], 1: [r for r in rows if r["label"] == 1]}
    n = min(len(by[0]), len(by[1]))
    if max_per_class:
        n = min(n, max_per_class)
    out = []
    for cls_rows in by.values():
        idx = np.sort(rng.choice(len(cls_rows), size=n, replace=False))
        out += [cls_rows[i] for i in idx]
    return out


def run_detector(name, arch, regime, splits, cfg: TrainConfig, size: int, run_root, pretrained=True,
                 figures_dir=None, figure_prefix="", fresh: bool = False, train_ds=None, val_ds=None,
                 augment_ops=("flip",), options: dict | None = None) -> dict:
    """Train one detector on ``splits["train"]``, select on ``splits["val"]``, report
    val and test at frame and video level. The run folder is ``run_root/<identity>``
    (a finished run of the same settings and data is reloaded). ``train_ds`` replaces the
    training set (e.g. ``selfblend.training_set``), ``val_ds`` the validation set (its items
    in the order of ``splits["val"]``); ``augment_ops`` are the training augmentations of the
    index's faces (:func:`dfcourse.datasets.augment`); ``options`` the detector's build options
    (:func:`dfcourse.models.build_detector`). Returns a result dict (net included)."""
    net = build_detector(arch, pretrained=pretrained, options=options).set_regime(regime)
    trainable, total = count_params(net)
    datasets = {s: FaceDataset(rows, size, train=(s == "train"), seed=cfg.seed, augment_ops=augment_ops)
                for s, rows in splits.items()}
    if train_ds is not None:
        datasets["train"] = train_ds
    if val_ds is not None:
        datasets["val"] = val_ds
    res = fit(net, datasets["train"], datasets["val"], cfg, run_root, name=name, fresh=fresh)
    out = {"name": name, "arch": arch, "regime": regime, "pretrained": net.pretrained, "weights": net.weights,
           "trainable": trainable, "total": total, "history": res["history"], "best_epoch": res["best_epoch"],
           "net": net, "size": size, "run_dir": res["run_dir"], "reloaded": res["reloaded"]}
    for split in ("val", "test"):
        probs = predict_probs(net, datasets[split], cfg.batch_size, cfg.device)
        out[f"{split}_probs"], out[split] = probs, evaluate(splits[split], probs)
        print(summary_line(name, out[split], split))
    save_run_artifacts(res["run_dir"] / "test", splits["test"], out["test_probs"], out["test"],
                       f"{name}, {net.weights.label} (test)", res["history"], figures_dir, figure_prefix)
    return out


def results_table(results) -> tuple[list, list]:
    """Header and rows for the comparison table; every number says its split and level."""
    header = ["model", "regime", "weights", "trainable", "best ep", "run", "val AUC (frame)",
              "test AUC (frame)", "test EER", "test AP", "test acc@0.5", "test F1@0.5", "test AUC (video)"]
    rows = []
    for r in results:
        t = r["test"]["frame"]
        rows.append([r["name"], r["regime"], "pretrained" if r["pretrained"] else "random init",
                     f"{r['trainable']:,} ({100 * r['trainable'] / r['total']:.1f}%)", r["best_epoch"],
                     f"{'reloaded' if r.get('reloaded') else 'trained'} {Path(r['run_dir']).name}",
                     f"{r['val']['frame']['auc']:.3f}", f"{t['auc']:.3f}", f"{t['eer']:.3f}", f"{t['ap']:.3f}",
                     f"{t['acc']:.3f}", f"{t['f1']:.3f}",
                     f"{r['test']['video']['auc']:.3f}" if "video" in r["test"] else "-"])
    return header, rows
