"""Notebook 04's localizer ablated on the built-in demo data (quick mode, 96 px, random init,
CPU): which change lets a map beat the mean-mask prior (issue 15)? Every variant is trained
on the notebook's quick-mode training rows and scored on the **validation** split, each map's
threshold chosen there (the highest mean IoU over validation fakes, as notebook 04 does).
``--test NAME`` then scores that one chosen variant, and the prior, once on the test split.

    python benchmarks/ablate_localizer.py [--only "NAME;NAME"] [--test NAME] [--threads 2]

Columns: pixel AUC and IoU over fakes with a non-empty target, the false-positive area on
real faces (fraction of a real face above the threshold), their per-family IoU, the image
AUC of the localizer's logit, and the training seconds. "+ gate" rows are the same trained
model with each map multiplied by its predicted probability of fake (:func:`localization.gate`).
"""
import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dfcourse.models import IMAGENET_MEAN, IMAGENET_STD, Normalize, Weights


def _conv(c_in, c_out):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class UNetLocalizer(nn.Module):
    """A small U-Net trained from scratch (an ablation row, not a course model): four levels
    (full, 1/2, 1/4, 1/8 resolution), skips at every level, so blending traces a pixel wide are still seen by the decoder
    (ResNet18's stem has already divided the resolution by four). The image logit comes
    from the pooled bottleneck and the pooled map. ``forward(x) -> (logit, map logits)``."""

    def __init__(self, widths=(16, 32, 64, 128)):
        super().__init__()
        self.weights = Weights.random("unet", "a from-scratch model")
        self.widths = tuple(widths)
        self.normalize = Normalize(IMAGENET_MEAN, IMAGENET_STD)
        c = self.widths
        self.down = nn.ModuleList([nn.Sequential(_conv(3, c[0]), _conv(c[0], c[0]))] +
                                  [nn.Sequential(_conv(a, b), _conv(b, b)) for a, b in zip(c, c[1:])])
        self.up = nn.ModuleList([_conv(b + a, a) for a, b in zip(c, c[1:])])
        self.out = nn.Conv2d(c[0], 1, 1)
        self.cls = nn.Linear(c[-1] + 1, 1)
        self.arch = "unet"

    @property
    def pretrained(self) -> bool:
        return False

    def forward(self, x):
        h, skips = self.normalize(x), []
        for k, block in enumerate(self.down):
            h = block(h if k == 0 else F.max_pool2d(h, 2))
            skips.append(h)
        y = skips[-1]
        for k in range(len(self.up) - 1, -1, -1):
            y = F.interpolate(y, size=skips[k].shape[-2:], mode="bilinear", align_corners=False)
            y = self.up[k](torch.cat([y, skips[k]], 1))
        m = self.out(y)
        pooled = torch.cat([F.adaptive_avg_pool2d(skips[-1], 1).flatten(1), F.adaptive_max_pool2d(m, 1).flatten(1)], 1)
        return self.cls(pooled), m


def variants():
    base = dict(arch="resnet18", self_blend=False, real_weight=0.0, epochs=4, map_weight=1.0, batch_size=32, views=0)
    unet = dict(base, arch="unet", widths=(8, 16, 32, 64))
    meso = dict(base, arch="meso4", views=2, epochs=10, batch_size=8, schedule="cosine", highpass=True)
    return {
        "today (nb04 default)": base,
        "real-area penalty 1": dict(base, real_weight=1.0),
        "self-blends": dict(base, self_blend=True),
        "self-blends + real-area penalty 1": dict(base, self_blend=True, real_weight=1.0),
        "batch 8 (4x the steps)": dict(base, batch_size=8),
        "unet 8-64 (from-scratch U-Net)": unet,
        "demo views (1 per identity)": dict(base, views=1),
        "demo views (2 per identity)": dict(base, views=2),
        "demo views (1), 8 epochs": dict(base, views=1, epochs=8),
        "demo views (1) + real-area penalty 1": dict(base, views=1, real_weight=1.0),
        "unet 8-64 + demo views (1)": dict(unet, views=1),
        "meso4-plain localizer + demo views (2), 10 epochs, batch 8, cosine": dict(meso, highpass=False),
        "meso4 localizer (high-pass input) + demo views (2), 10 epochs, batch 8, cosine": meso,
    }


def scores(maps, gts, labels, methods, probs, thr):
    from dfcourse import metrics as M

    m = M.localization_metrics(maps, gts, labels, probs, thr)
    fam = {}
    for meth in sorted(set(methods) - {"original"}):
        keep = [i for i, mm in enumerate(methods) if mm == meth and (gts[i] > 0.5).any()]
        fam[meth] = float(np.mean([M.mask_iou(maps[i] > thr, gts[i] > 0.5) for i in keep])) if keep else np.nan
    return m, fam


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="")
    ap.add_argument("--test", default="", help="the variant chosen on validation: score it once on test")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="the run's seed, as notebook 04's SEED (init, views, order, balancing)")
    ap.add_argument("--home", default="", help="DFCOURSE_HOME (default: a temporary folder)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("DFCOURSE_HOME", args.home or tempfile.mkdtemp(prefix="ablate-loc-"))
    from dfcourse import course as dc
    from dfcourse import localization as L
    from dfcourse import metrics as M
    from dfcourse import recipes
    from dfcourse.experiments import balance
    from dfcourse.index import format_table, read_index
    from dfcourse.train import TrainConfig, fit

    course = dc.start("04_residual_localization", "", True, args.seed, "cpu")
    index_path = dc.ensure_index(course)
    p = recipes.NB04
    size = p["quick_size"]
    splits = {s: read_index(index_path, split=s) for s in ("train", "val", "test")}
    splits["train"] = balance(splits["train"], course.seed, p["quick_max_per_class"])
    todo = variants()
    if args.only:
        todo = {k: v for k, v in todo.items() if k in args.only.split(";")}
    if args.test:
        todo = {args.test: variants()[args.test]}
    split = "test" if args.test else "val"
    header = ["variant", "split", "pixel AUC", "IoU @ thr", "FP area reals", "IoU rerender", "IoU selfblend",
              "IoU swap", "image AUC", "train s"]
    rows = []
    plain = {k: L.LocalizationDataset(splits[k], size) for k in ("train", "val", "test")}
    gts = {k: [d.map(i) for i in range(len(d))] for k, d in plain.items()}
    labels = {k: np.array([r["label"] for r in d.rows]) for k, d in plain.items()}
    methods = {k: [r["method"] for r in d.rows] for k, d in plain.items()}
    prior = M.mean_mask_prior(gts["train"], labels["train"], [r["split"] for r in plain["train"].rows])
    pthr = M.best_threshold([prior] * int(labels["val"].sum()), [g for g, y in zip(gts["val"], labels["val"]) if y])
    pm, pfam = scores([prior] * len(gts[split]), gts[split], labels[split], methods[split], None, pthr)
    rows.append(["mean-mask prior (train fakes)", split, f"{pm['pixel_auc']:.3f}", f"{pm['iou']:.3f} @ {pthr:.2f}",
                 f"{pm['fp_area_real']:.3f}", *[f"{pfam[k]:.3f}" for k in sorted(pfam)], "-", "-"])
    for name, v in todo.items():
        params = {k: v[k] for k in ("self_blend", "map_weight")}
        ds = recipes.localizer_datasets({k: splits[k] for k in ("train", "val")}, size, course.seed,
                                        landmark_cache=recipes.landmark_cache(course), **params)
        if v["views"]:  # fresh views of the training identities each epoch, with notebook 04's residual targets
            from dfcourse.demo import IDENTITIES_FILE, DemoViews, demo_identities

            idents = demo_identities("train", 0, cache=course.data / "demo" / IDENTITIES_FILE)
            ds["train"] = DemoViews(idents, size, views=v["views"], seed=course.seed, masks=True, target="residual",
                                    residual_threshold=p["residual_threshold"], residual_blur=p["residual_blur"])
        torch.manual_seed(course.seed)
        net = (L.ResNetLocalizer(pretrained=False) if v["arch"] == "resnet18" else
               L.MesoLocalizer(highpass=v["highpass"]) if v["arch"] == "meso4" else UNetLocalizer(v["widths"]))
        scratch = v["arch"] == "meso4"  # trained as notebook 04 trains it: no early stop, a render worker
        cfg = TrainConfig(num_epochs=v["epochs"], batch_size=v["batch_size"], lr=1e-3,
                          patience=v["epochs"] if scratch else p["patience"], schedule=v.get("schedule", "none"),
                          num_workers=1 if scratch else 0,
                          seed=course.seed, device="cpu", log_every=100)
        t0 = time.time()
        with tempfile.TemporaryDirectory() as runs:
            fit(net, ds["train"], ds["val"], cfg, Path(runs), loss_fn=L.make_loss(v["map_weight"], v["real_weight"]),
                name=name, fresh=True)
        seconds = time.time() - t0
        vp, vmaps = L.predict_maps(net, plain["val"], 64)
        sp, smaps = (vp, vmaps) if split == "val" else L.predict_maps(net, plain[split], 64)
        for tag, vm, sm in ((name, vmaps, smaps), (f"{name} + gate", L.gate(vmaps, vp), L.gate(smaps, sp))):
            thr = M.best_threshold([m for m, y in zip(vm, labels["val"]) if y],
                                   [g for g, y in zip(gts["val"], labels["val"]) if y])
            m, fam = scores(sm, gts[split], labels[split], methods[split], sp, thr)
            rows.append([tag, split, f"{m['pixel_auc']:.3f}", f"{m['iou']:.3f} @ {thr:.2f}", f"{m['fp_area_real']:.3f}",
                         *[f"{fam[k]:.3f}" for k in sorted(fam)], f"{m['image_auc_logit']:.3f}", f"{seconds:.0f}"])
        print(format_table(header, rows), flush=True)
    print(f"\nquick mode, demo data, {size}px, random init, frame level, CPU threads {args.threads}; "
          f"thresholds chosen on validation fakes; {split} split scored")


if __name__ == "__main__":
    main()
