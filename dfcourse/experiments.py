"""One detector experiment end to end: build, train, pick the best epoch on validation,
score val and test, save artifacts. Also the notebook-02 baseline that later notebooks
load (or train, when notebook 02 has not been run).

Used in notebooks/02_resnet_baseline.ipynb; the baseline also in 03, 04 and 05.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .datasets import FaceDataset
from .metrics import evaluate, save_run_artifacts, summary_line
from .models import build_detector, load_checkpoint, save_checkpoint
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


def count_params(net) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in net.parameters())
    return sum(p.numel() for p in net.parameters() if p.requires_grad), total


def run_detector(name, arch, regime, splits, cfg: TrainConfig, size: int, run_dir, pretrained=True,
                 figures_dir=None, figure_prefix="", train_ds=None) -> dict:
    """Train one detector on ``splits["train"]``, select on ``splits["val"]``, report
    val and test at frame and video level. Returns a result dict (net included).
    ``train_ds`` replaces the training set (e.g. ``selfblend.training_set``)."""
    net = build_detector(arch, pretrained=pretrained).set_regime(regime)
    trainable, total = count_params(net)
    datasets = {s: FaceDataset(rows, size, train=(s == "train"), seed=cfg.seed) for s, rows in splits.items()}
    if train_ds is not None:
        datasets["train"] = train_ds
    res = fit(net, datasets["train"], datasets["val"], cfg, run_dir, name=name)
    out = {"name": name, "arch": arch, "regime": regime, "pretrained": net.pretrained,
           "pretrained_note": net.pretrained_note, "trainable": trainable, "total": total,
           "history": res["history"], "best_epoch": res["best_epoch"], "net": net, "size": size}
    for split in ("val", "test"):
        probs = predict_probs(net, datasets[split], cfg.batch_size, cfg.device)
        out[f"{split}_probs"], out[split] = probs, evaluate(splits[split], probs)
        print(summary_line(name, out[split], split))
    save_run_artifacts(Path(run_dir) / "test", splits["test"], out["test_probs"], out["test"],
                       f"{name} (test)", res["history"], figures_dir, figure_prefix)
    return out


def results_table(results) -> tuple[list, list]:
    """Header and rows for the comparison table; every number says its split and level."""
    header = ["model", "regime", "weights", "trainable", "best ep", "val AUC (frame)",
              "test AUC (frame)", "test EER", "test AP", "test acc", "test F1", "test AUC (video)"]
    rows = []
    for r in results:
        t = r["test"]["frame"]
        rows.append([r["name"], r["regime"], "pretrained" if r["pretrained"] else "random init",
                     f"{r['trainable']:,} ({100 * r['trainable'] / r['total']:.1f}%)", r["best_epoch"],
                     f"{r['val']['frame']['auc']:.3f}", f"{t['auc']:.3f}", f"{t['eer']:.3f}", f"{t['ap']:.3f}",
                     f"{t['acc']:.3f}", f"{t['f1']:.3f}",
                     f"{r['test']['video']['auc']:.3f}" if "video" in r["test"] else "-"])
    return header, rows


def baseline_path(course) -> Path:
    return course.root / "runs" / "checkpoints" / "detector_latest.pt"


def save_baseline(course, result) -> Path:
    """Save the chosen detector where ``predict`` and notebooks 03-05 find it."""
    return save_checkpoint(baseline_path(course), result["net"], size=result["size"], name=result["name"],
                           mode=course.mode, val_auc=result["val"]["frame"]["auc"])


def load_or_train_baseline(course, splits, size: int, cfg: TrainConfig):
    """The notebook-02 detector: loaded when notebook 02 saved one in this mode, else
    a ResNet18 fine-tuned here with the same engine (so each notebook also runs alone)."""
    path = baseline_path(course)
    if path.is_file():
        net = load_checkpoint(path, course.device)
        if net.meta.get("mode") == course.mode:
            print(f"notebook-02 detector loaded from {path} ({net.meta.get('name')}, "
                  f"{'pretrained' if net.pretrained else 'random init'})")
            return net, net.meta.get("size", size)
    print(f"no notebook-02 detector for {course.mode} mode at {path}: training a ResNet18 baseline now")
    res = run_detector("resnet18-full", "resnet18", "full", splits, cfg, size,
                       course.runs / "02_resnet_baseline" / "resnet18-full")
    save_baseline(course, res)
    return res["net"], size
