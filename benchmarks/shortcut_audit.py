"""The demo engine's shortcut audit, the half a test cannot afford: with each forgery cue
switched off in turn (and with every cue on), can a small net still find the fakes?

For each configuration, Meso-4 (high-pass input, random init) trains on fresh demo views of the
training identities rendered with those cues only (:class:`dfcourse.demo.DemoViews`, ``cues=``),
and is scored on fresh views of the validation identities with the same cues. Printed side by
side: validation AUC (frame level) per configuration, and each global statistic's AUC
(:mod:`dfcourse.shortcuts`) on the same validation views. The statistics half runs in the tests
(tests/test_shortcuts.py); this one trains, so it lives here.

    python benchmarks/shortcut_audit.py [--epochs 10] [--views 2] [--size 96]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from dfcourse import capture, course as dc, shortcuts
from dfcourse.demo import DemoViews, demo_identities
from dfcourse.index import format_table
from dfcourse.models import build_detector
from dfcourse.train import TrainConfig, fit, predict_probs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--views", type=int, default=2)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    course = dc.start("benchmarks_shortcut_audit", "", True, args.seed, "auto")
    cache = course.data / "landmarks" / "demo_identities.json"
    train_ids = demo_identities("train", cache=cache)
    val_ids = demo_identities("val", cache=cache)
    configs = {"all cues": capture.CUES, **{f"without {c}": tuple(x for x in capture.CUES if x != c)
                                           for c in capture.CUES}}
    rows = []
    for name, cues in configs.items():
        t0 = time.time()
        kw = dict(views=args.views, cues=cues, augment_ops=("flip",))
        train = DemoViews(train_ids, args.size, seed=args.seed, **kw)
        val = DemoViews(val_ids, args.size, seed=args.seed + 1000, **kw)
        torch.manual_seed(args.seed)
        net = build_detector("meso4", pretrained=False, verbose=False)
        cfg = TrainConfig(num_epochs=args.epochs, batch_size=8, lr=1e-3, schedule="cosine", patience=args.epochs,
                          seed=args.seed, device=course.device, num_workers=1)
        fit(net, train, val, cfg, course.runs / "shortcut_audit" / name.replace(" ", "_"), name=name)
        y = np.array([val.sample(i)[1] for i in range(len(val))])
        auc = roc_auc_score(y, predict_probs(net, val, 64, course.device))
        faces = [val.sample(i)[0] for i in range(len(val))]
        stats = shortcuts.audit([f for f, t in zip(faces, y) if t == 0], [f for f, t in zip(faces, y) if t == 1])
        rows.append([name, f"{auc:.3f}", f"{max(stats.values()):.3f} ({max(stats, key=stats.get)})",
                     f"{time.time() - t0:.0f}"])
    print(f"\ndemo engine views, Meso-4 (high-pass) from random init, {args.epochs} epochs, {args.views} views per "
          f"identity per epoch, {args.size}px, seed {args.seed}; validation identities, frame level")
    print(format_table(["cues on", "small net val AUC", "best global statistic AUC", "s"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
