"""What makes from-scratch training work: the notebook-02 engine ablated one change at a
time on the same data (the built-in demo data, random init, CPU), then the chosen recipe and
the "reals + online self-blends only" protocol. Prints one table: frame-level AUC on the
val and test splits, the epoch chosen on validation loss, and training seconds.

    python benchmarks/ablate_detector.py [--arch resnet18] [--size 96] [--epochs 6]
                                         [--only "NAME;NAME"] [--index PATH] [--csv PATH]
                                         [--batch-size 32]

``--csv`` merges the rows into a CSV (a row of the same variant, arch, size, epochs and batch
size is replaced) with the machine, its load and the date of each row; :func:`ablation_table`
reads ``benchmarks/results/ablate_detector.csv`` back as a table, labelled with them.

Every row is selected on validation only; test is scored once per row. Rows:

* ``course engine``: the engine as notebook 02 used it before issue 11 (class-balanced by
  downsampling, flip + colour jitter + blur + JPEG 40-100, lr 1e-4, patience 3);
* ``- jpeg`` / ``- blur`` / ``- jitter``: that augmentation switched off; ``flip only``;
* ``pos_weight``: all training rows with a fake-class weight instead of downsampling;
* ``lr 1e-3`` / ``+ warm-up``; ``no early stop`` (patience = epochs);
* ``frozen``: random backbone frozen, only the head learns (BatchNorm in eval mode);
* ``+ self-blends``: the training rows plus one fresh online self-blend per real per epoch;
* ``SB only``: reals + online self-blends only, validated on reals vs the demo's self-blends,
  tested on the families it never saw (swap, rerender), each against the test reals;
* ``online demo views (N)``: instead of the index's 3 fixed crops per identity, N fresh views of
  every training identity per epoch (``DemoViews``: 3 real, 1 self-blend, 1 swap, 1 rerender per
  view), optionally with a cosine learning-rate decay; ``SB only on online views``: the views'
  reals and self-blends only.

``--arch meso4`` is Meso-4 with its high-pass input (:class:`dfcourse.models.HighPass`),
``--arch meso4-plain`` the published net; the CSV keeps them apart by the ``arch`` column.
"""
import argparse
import csv
import datetime
import os
import platform
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score


def variants(epochs):
    course = dict(balance=True, ops=("flip", "jitter", "blur", "jpeg"), lr=1e-4, patience=3, pos_weight=False,
                  warmup=0, regime="full", selfblend=False, sb_only=False, views=0, monitor="val_loss",
                  schedule="none")
    tuned = dict(course, ops=("flip",), lr=1e-3, patience=epochs)
    return {
        "course engine": course,
        "- jpeg": dict(course, ops=("flip", "jitter", "blur")),
        "- blur": dict(course, ops=("flip", "jitter", "jpeg")),
        "- jitter": dict(course, ops=("flip", "blur", "jpeg")),
        "flip only": dict(course, ops=("flip",)),
        "all four, lr 1e-3": dict(course, lr=1e-3),
        "flip, lr 1e-3": dict(course, ops=("flip",), lr=1e-3),
        "flip, lr 1e-3, no early stop": tuned,
        "flip, lr 1e-3, patience 3 on val AUC": dict(course, ops=("flip",), lr=1e-3, monitor="val_auc"),
        "  + warm-up 1 epoch": dict(tuned, warmup=1),
        "  + pos_weight, all rows": dict(tuned, balance=False, pos_weight=True),
        "  frozen (BN eval)": dict(tuned, regime="frozen"),
        "  + self-blends": dict(tuned, selfblend=True),
        "  + self-blends, all rows, pos_weight": dict(tuned, selfblend=True, balance=False, pos_weight=True),
        "  + self-blends, all rows, pos_weight, cosine lr": dict(tuned, selfblend=True, balance=False, pos_weight=True,
                                                             schedule="cosine"),
        "  online demo views (2 per identity)": dict(tuned, views=2),
        "  online demo views (2) + self-blends": dict(tuned, views=2, selfblend=True),
        "  online demo views (2), cosine lr": dict(tuned, views=2, schedule="cosine"),
        "  online demo views (4)": dict(tuned, views=4),
        "  online demo views (4) + self-blends": dict(tuned, views=4, selfblend=True),
        "  online demo views (4), lr 3e-3": dict(tuned, views=4, lr=3e-3),
        "  online demo views (4), cosine lr": dict(tuned, views=4, schedule="cosine"),
        "  online demo views (6)": dict(tuned, views=6),
        "  online demo views (6), cosine lr": dict(tuned, views=6, schedule="cosine"),
        "  online demo views (8), cosine lr": dict(tuned, views=8, schedule="cosine"),
        "SB only (reals + self-blends)": dict(tuned, sb_only=True),
        "SB only, cosine lr": dict(tuned, sb_only=True, schedule="cosine"),
        "SB only on online views (2), cosine lr": dict(tuned, sb_only=True, views=2, schedule="cosine"),
        "SB only on online views (6), cosine lr": dict(tuned, sb_only=True, views=6, schedule="cosine"),
    }


def auc(rows, probs, methods=None):
    keep = [i for i, r in enumerate(rows) if methods is None or r["method"] in methods]
    y = np.array([rows[i]["label"] for i in keep])
    return float(roc_auc_score(y, probs[keep])) if len(set(y)) == 2 else float("nan")


def run(name, v, args, splits, landmarks):
    from dfcourse.datasets import FaceDataset
    from dfcourse.experiments import balance
    from dfcourse.models import build_detector
    from dfcourse.selfblend import EpochConcat, SelfBlendDataset
    from dfcourse.train import TrainConfig, fit, predict_probs

    train_rows, val_rows = splits["train"], splits["val"]
    reals = [r for r in train_rows if r["label"] == 0]
    if v["views"]:  # fresh demo frames of the train identities every epoch (3 reals : 3 fakes)
        from dfcourse.demo import DemoViews, demo_identities

        idents = demo_identities("train", 0, cache=Path(args.index_path).parent / "identities.json")
        if {i.name for i in idents} != {r["video_id"] for r in train_rows}:  # never a val/test identity
            raise SystemExit("online demo views need the built-in demo index (built with seed 0)")
        methods = ("original", "selfblend") if v["sb_only"] else ("original",) * 3 + ("selfblend", "swap", "rerender")
        train_ds = DemoViews(idents, args.size, views=v["views"], methods=methods, seed=args.seed, augment_ops=v["ops"])
        if v["sb_only"]:
            val_rows = [r for r in val_rows if r["method"] in ("original", "selfblend")]
        if v["selfblend"]:
            train_ds = EpochConcat([train_ds, SelfBlendDataset(reals, landmarks, args.size, seed=args.seed,
                                                               augment_ops=v["ops"], masks=False)])
        n_real = n_fake = len(train_ds) // 2
    elif v["sb_only"]:
        train_ds = SelfBlendDataset(reals, landmarks, args.size, seed=args.seed, masks=False)
        val_rows = [r for r in val_rows if r["method"] in ("original", "selfblend")]
        n_real = n_fake = len(reals)
    else:
        rows = balance(train_rows, args.seed) if v["balance"] else train_rows
        train_ds = FaceDataset(rows, args.size, train=True, seed=args.seed, augment_ops=v["ops"])
        n_real = sum(r["label"] == 0 for r in rows)
        n_fake = len(rows) - n_real
        if v["selfblend"]:
            sb_rows = [r for r in rows if r["label"] == 0]
            lm = landmarks[[reals.index(r) for r in sb_rows]]
            train_ds = EpochConcat([train_ds, SelfBlendDataset(sb_rows, lm, args.size, seed=args.seed,
                                                               augment_ops=v["ops"], masks=False)])
            n_real, n_fake = n_real + len(sb_rows), n_fake + len(sb_rows)
    cfg = TrainConfig(num_epochs=args.epochs, batch_size=args.batch_size, lr=v["lr"], patience=v["patience"], seed=args.seed,
                      num_workers=args.render_workers if v["views"] else 0,
                      warmup_epochs=v["warmup"], monitor=v["monitor"], schedule=v["schedule"],
                      pos_weight=n_real / n_fake if v["pos_weight"] else 1.0)
    torch.manual_seed(args.seed)
    net = build_detector(args.arch, pretrained=False, verbose=False).set_regime(v["regime"])
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        res = fit(net, train_ds, FaceDataset(val_rows, args.size), cfg, tmp, name=name)
    seconds = time.time() - t0
    val = auc(val_rows, predict_probs(net, FaceDataset(val_rows, args.size)))
    test_rows = splits["test"]
    p = predict_probs(net, FaceDataset(test_rows, args.size))
    w = cfg.num_workers
    out = {"name": name, "train": len(train_ds), "best": res["best_epoch"], "val": val, "test": auc(test_rows, p),
           "seconds": seconds, "threads": f"{max(1, torch.get_num_threads() - w)}+{w} render worker" if w > 0
           else torch.get_num_threads()}
    for m in ("selfblend", "swap", "rerender"):
        out[m] = auc(test_rows, p, ("original", m))
    return out


CSV_FIELDS = ["variant", "arch", "size", "epochs", "batch", "train", "best", "val", "test", "selfblend", "swap", "rerender",
              "seconds", "threads", "machine", "date", "data"]


def machine() -> str:
    """The machine a row ran on, in words (its load says how comparable its seconds are)."""
    return (f"{platform.machine()} CPU, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, "
            f"torch {torch.__version__.split('+')[0]}")


def write_csv(path, r, args):
    """Merge one result row into ``path``: the same variant, arch, size, epochs and batch is replaced."""
    path = Path(path)
    row = {"variant": r["name"].strip(), "arch": args.arch, "size": args.size, "epochs": args.epochs,
           "batch": args.batch_size,
           "threads": torch.get_num_threads(), "data": getattr(args, "data", ""),
           **{k: r[k] for k in CSV_FIELDS if k in r}}
    for k in ("val", "test", "selfblend", "swap", "rerender"):
        row[k] = f"{row[k]:.3f}"
    row["seconds"] = f"{row['seconds']:.0f}"
    fields = ("variant", "arch", "size", "epochs", "batch")
    key = [str(row[k]) for k in fields]
    old = list(csv.DictReader(open(path))) if path.is_file() else []
    old = [{**o, "batch": o.get("batch") or "32", "data": o.get("data") or "demo engine v1"} for o in old]
    old = [o for o in old if [o[k] for k in fields] != key]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        w.writerows(old + [row])



RESULTS_CSV = Path(__file__).resolve().parent / "results" / "ablate_detector.csv"


def ablation_table(path=RESULTS_CSV) -> tuple[str, list, list] | None:
    """The from-scratch ablation as ``--csv`` wrote it:
    ``(caption, header, rows)``, the caption naming the script, machine(s) and date(s) of
    the measurement; ``None`` when the CSV is absent (run the script to make it)."""
    path = Path(path)
    if not path.is_file():
        return None
    rows = list(csv.DictReader(open(path)))
    load = [float(m.group(1)) for r in rows if (m := re.search(r", load ([0-9.]+)", r["machine"]))]
    where = sorted({re.sub(r", load [0-9.]+", "", r["machine"]) for r in rows})
    if load:
        where[-1] += f" (load {min(load):.1f}-{max(load):.1f}: seconds compare rows only roughly)"
    when = sorted({r["date"][:10] for r in rows})
    data = sorted({r.get("data") or "demo engine v1" for r in rows})
    caption = (f"measured by benchmarks/ablate_detector.py on {'; '.join(where)}, {', '.join(when)}; {', '.join(data)}, "
               "random init, CPU; frame-level AUC, epoch chosen on validation, test scored once; per family = "
               "that family's test fakes vs all test reals")
    header = ["variant", "arch", "px", "epochs", "batch", "train items", "best ep", "val AUC", "test AUC", "selfblend", "swap",
              "rerender", "seconds"]
    keys = ["variant", "arch", "size", "epochs", "batch", "train", "best", "val", "test", "selfblend", "swap", "rerender",
            "seconds"]
    return caption, header, [[r[k] for k in keys] for r in rows]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--only", default="", help="semicolon-separated row names (default: all)")
    p.add_argument("--index", default="", help="index CSV (default: the course's demo data)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    p.add_argument("--render-workers", type=int, default=1,
                   help="DataLoader workers rendering the online views rows (as notebook 02 on a CPU: 1, and one "
                        "torch thread fewer); 0 renders in the training process")
    p.add_argument("--csv", default="", help="merge the rows into this CSV (e.g. benchmarks/results/ablate_detector.csv)")
    args = p.parse_args()

    from dfcourse import course as dc
    from dfcourse.index import read_index
    from dfcourse.selfblend import real_landmarks

    dc.setup_offline()
    torch.set_num_threads(args.threads or max(1, torch.get_num_threads()))
    index = args.index or dc.ensure_demo(dc.Course("ablate", True, "benchmark", "cpu", 0, "", True,
                                                   dc.project_root()))
    splits = {s: read_index(index, split=s) for s in ("train", "val", "test")}
    reals = [r for r in splits["train"] if r["label"] == 0]
    args.index_path = index
    from dfcourse.demo import built_version

    args.data = f"demo engine v{built_version(Path(index).parent)}" if built_version(Path(index).parent) else str(index)
    landmarks = real_landmarks(reals, args.size, cache=Path(index).parent / "landmarks.json")
    rows = []
    only = [s.strip() for s in args.only.split(";") if s.strip()]
    for name, v in variants(args.epochs).items():
        if only and name.strip() not in only:
            continue
        rows.append(run(name, v, args, splits, landmarks))
        r = rows[-1]
        r.update(machine=machine(), date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
        if args.csv:
            write_csv(args.csv, r, args)
        print(f"## {r['name']}: val {r['val']:.3f} test {r['test']:.3f} ({r['seconds']:.0f} s)", flush=True)
    print(f"\n{args.arch}, {args.size}px, up to {args.epochs} epochs, batch {args.batch_size}, random init, CPU "
          f"({torch.get_num_threads()} threads), demo data {index}; AUC frame level; "
          f"test per family = that family's fakes vs all test reals")
    head = ["variant", "train items", "best ep", "val AUC", "test AUC", "selfblend", "swap", "rerender", "seconds"]
    print(" | ".join(head))
    for r in rows:
        print(" | ".join([f"{r['name']:<38}", f"{r['train']:>5}", f"{r['best']:>2}", f"{r['val']:.3f}",
                          f"{r['test']:.3f}", f"{r['selfblend']:.3f}", f"{r['swap']:.3f}", f"{r['rerender']:.3f}",
                          f"{r['seconds']:.0f}"]))


if __name__ == "__main__":
    main()
