"""Robustness: a detector and a localizer scored on faces under benign changes.

:class:`PerturbedFaces` serves index rows under one change of :mod:`dfcourse.perturb` (the
same for every face: a cell of the suite), or under a change drawn per face (``shifted``:
the shifted validation and test sets of notebook 02). The change is applied to the face
crop as stored, before it is resized to the model's input, as a benign change to a photo
would be. Localization targets stay those of the clean face: a blur does not move where
the forgery is.
Used in notebooks 02 and 04 and ``benchmarks/robustness.py``.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from . import perturb
from .datasets import to_tensor
from .io import read_image
from .localization import load_map, predict_maps
from .metrics import localization_metrics
from .runs import rows_fingerprint
from .train import predict_probs


class PerturbedFaces(Dataset):
    """``(image, label, index)`` of ``rows`` under a change; with ``maps=True``
    ``(image, label, clean map, index)`` as :class:`dfcourse.localization.LocalizationDataset`.

    ``cell``: ``(kind, parameter)`` for every face (``("none", None)``: unchanged); or
    ``shifted=True``: each face under a change drawn from ``(seed, index)`` uniformly over
    ``kinds`` x ``levels`` of the suite."""

    def __init__(self, rows, size: int, cell=("none", None), shifted: bool = False, seed: int = 0,
                 kinds=perturb.KINDS, levels=perturb.LEVELS, maps: bool = False, target: str = "residual",
                 images=None):
        self.rows, self.size, self.cell, self.shifted, self.seed = list(rows), size, cell, shifted, seed
        self.images = images  # the rows' crops, already read (the suite reads them once for all its cells)
        self.kinds, self.levels, self.maps, self.target = tuple(kinds), tuple(levels), maps, target

    def __len__(self):
        return len(self.rows)

    def identity(self) -> dict:
        return {"class": "PerturbedFaces", "rows": rows_fingerprint(self.rows), "size": self.size,
                "cell": list(self.cell), "shifted": self.shifted, "seed": self.seed, "kinds": list(self.kinds),
                "levels": list(self.levels), "maps": self.maps}

    def change(self, i):
        """``(kind, parameter)`` applied to item ``i``."""
        if not self.shifted:
            return self.cell
        return perturb.random_cell(np.random.default_rng([self.seed, i]), self.kinds, self.levels)

    def face(self, i) -> np.ndarray:
        """Item ``i``'s face crop (RGB uint8, stored size) under its change."""
        kind, param = self.change(i)
        img = self.images[i] if self.images is not None else read_image(self.rows[i]["path"])
        return perturb.apply(img, kind, param, seed=self.seed * 100_003 + i)

    def __getitem__(self, i):
        img = Image.fromarray(self.face(i))
        if img.size != (self.size, self.size):
            img = img.resize((self.size, self.size), Image.BILINEAR)
        x, y = to_tensor(img), torch.tensor(float(self.rows[i]["label"]))
        if not self.maps:
            return x, y, i
        m = load_map(self.rows[i], self.size, self.target)
        m = np.zeros((self.size, self.size), np.float32) if m is None else m
        return x, y, torch.from_numpy(np.ascontiguousarray(m))[None], i


def _auc(y, p) -> float:
    return float(roc_auc_score(y, p)) if len(set(y)) == 2 else float("nan")


def detector_suite(net, rows, size: int, cells=None, batch_size: int = 64, device="cpu", seed: int = 0) -> list[dict]:
    """Frame-level AUC of a detector on ``rows`` under each cell of the suite
    (:func:`dfcourse.perturb.cells`). Rows of the result: ``cell``, ``kind``, ``param``, ``level``
    (0 for clean and the extras), ``auc``."""
    y = [int(r["label"]) for r in rows]
    images = [read_image(r["path"]) for r in rows]
    out = []
    for label, kind, param in tqdm(cells or perturb.cells(), desc="perturbations", leave=False):
        probs = predict_probs(net, PerturbedFaces(rows, size, (kind, param), seed=seed, images=images), batch_size,
                              device, progress=False)
        out.append({"cell": label, "kind": kind, "param": param, "level": _level(kind, param), "auc": _auc(y, probs)})
    return out


def localizer_suite(net, rows, size: int, cells=None, threshold: float = 0.5, batch_size: int = 32, device="cpu",
                    seed: int = 0, target: str = "residual") -> list[dict]:
    """A localizer on ``rows`` under each cell: pixel AUC and IoU over fakes (clean targets),
    false-positive area at ``threshold`` over reals, image AUC of its logit."""
    y = [int(r["label"]) for r in rows]
    gts = [g if g is not None else np.zeros((size, size), np.float32) for g in (load_map(r, size, target) for r in rows)]
    images = [read_image(r["path"]) for r in rows]
    out = []
    for label, kind, param in tqdm(cells or perturb.cells(), desc="perturbations", leave=False):
        probs, maps = predict_maps(net, PerturbedFaces(rows, size, (kind, param), seed=seed, images=images),
                                   batch_size, device)
        m = localization_metrics(maps, gts, y, image_scores=probs, threshold=threshold)
        out.append({"cell": label, "kind": kind, "param": param, "level": _level(kind, param),
                    "pixel_auc": m["pixel_auc"], "iou": m["iou"], "fp_area_real": m["fp_area_real"],
                    "image_auc": m.get("image_auc_logit", float("nan"))})
    return out


def _level(kind, param) -> int:
    values = perturb.TABLE.get(kind, ())
    return values.index(param) + 1 if param in values else 0


def pivot(results: list[dict], metric: str, kinds=perturb.KINDS, levels=perturb.LEVELS):
    """A table of ``metric`` with a row per kind and a column per level (plus the clean value
    and the extras below): ``(header, rows)`` for :func:`dfcourse.index.format_table`."""
    by = {(r["kind"], r["level"]): r[metric] for r in results}
    clean = next((r[metric] for r in results if r["kind"] == "none"), float("nan"))
    header = ["change", *[f"L{lv}" for lv in levels]]
    rows = [["clean", f"{clean:.3f}", *[""] * (len(levels) - 1)]]
    rows += [[k, *[f"{by[(k, lv)]:.3f}" if (k, lv) in by else "" for lv in levels]] for k in kinds
             if any((k, lv) in by for lv in levels)]
    rows += [[r["cell"], f"{r[metric]:.3f}", *[""] * (len(levels) - 1)] for r in results
             if r["kind"] != "none" and r["level"] == 0]
    return header, rows


def bar_cells(level: int = 2, kinds=perturb.KINDS, extra=perturb.EXTRA) -> list[tuple[str, str, object]]:
    """The cells the course's robustness bars are read on: every kind at ``level`` plus the
    everyday extras, after ``clean``."""
    return perturb.cells(kinds, (level,), extra)


def check_bars(det_rows=None, loc_rows=None, auc_ratio: float = 0.85, max_fp_area: float = 0.05) -> list[tuple[str, bool]]:
    """``(line, met)`` per cell: a detector keeps frame AUC >= ``auc_ratio`` x its clean AUC; a
    localizer's false-positive area on real faces stays <= ``max_fp_area``. Each line says the
    numbers and ends with ``met`` or ``NOT met``."""
    out = []
    if det_rows:
        clean = next(r["auc"] for r in det_rows if r["kind"] == "none")
        for r in det_rows:
            if r["kind"] != "none":
                ok = bool(r["auc"] >= auc_ratio * clean)
                out.append((f"detector  {r['cell']:<16} AUC {r['auc']:.3f} vs {auc_ratio} x clean {clean:.3f}: "
                            f"{'met' if ok else 'NOT met'}", ok))
    if loc_rows:
        for r in loc_rows:
            ok = bool(r["fp_area_real"] <= max_fp_area)
            out.append((f"localizer {r['cell']:<16} FP area on reals {r['fp_area_real']:.3f} (<= {max_fp_area}): "
                        f"{'met' if ok else 'NOT met'}", ok))
    return out


# ------------------------------------------------------------ shifted validation
def shifted_sets(splits, family=None, seed: int = 0) -> dict:
    """The rows of the shifted validation and test sets (notebook 02): every validation face,
    the fakes of the ``family`` held out of training included (the in-domain validation leaves
    them out), and every test face. :func:`choose` serves each face under a change drawn from
    the suite."""
    return {"val": list(splits["val"]), "test": list(splits["test"]), "family": family, "seed": seed}


def shifted_scores(result, sets, device="cpu", batch_size: int = 64) -> dict:
    """Frame-level AUC of a trained detector (a :func:`dfcourse.experiments.run_detector`
    result) on the shifted validation and test sets; also stored in ``result``."""
    net, size, seed = result["net"], result["size"], sets["seed"]
    for split, offset in (("val", 0), ("test", 1)):
        rows = sets[split]
        probs = predict_probs(net, PerturbedFaces(rows, size, shifted=True, seed=seed + offset), batch_size, device,
                              progress=False)
        result[f"shifted_{split}_auc"] = _auc([int(r["label"]) for r in rows], probs)
        if split == "val":
            result["threshold"] = operating_threshold([p for p, r in zip(probs, rows) if int(r["label"]) == 0])
    return {"val": result["shifted_val_auc"], "test": result["shifted_test_auc"]}


FPR = 0.05  # the operating point: at most this share of the shifted validation reals called fake
THRESHOLD_RULE = f"p(fake) above which {FPR:.0%} of the shifted validation reals fall"


def operating_threshold(real_probs, fpr: float = FPR) -> float:
    """The decision threshold at which a share ``fpr`` of the given real faces' scores lie
    above it (0.5 when there are none): a detector that is unsure of a face calls it real.
    ``predict`` uses the one notebook 02 saved with its detector."""
    real_probs = np.asarray(real_probs, float)
    return float(np.quantile(real_probs, 1 - fpr)) if len(real_probs) else 0.5


def choose(results, sets, device="cpu") -> dict:
    """The model in-domain validation picks (highest clean validation AUC) and the one the
    shifted validation picks (highest :func:`shifted_scores` validation AUC); test numbers
    play no part. ``{"in_domain": result, "shifted": result}``."""
    for r in results:
        if "shifted_val_auc" not in r:
            shifted_scores(r, sets, device)
    return {"in_domain": max(results, key=lambda r: r["val"]["frame"]["auc"]),
            "shifted": max(results, key=lambda r: r["shifted_val_auc"])}


def validation_picks(scores) -> dict:
    """``scores``: one dict per model (``name``, ``val_auc``, ``shifted_val_auc``). The names
    the clean and the shifted validation pick (NaN never; the first on a tie) and each
    model's ``drop`` (clean minus shifted), from the validation columns alone."""
    names = [s["name"] for s in scores]
    clean = np.array([s["val_auc"] for s in scores], float)
    shifted = np.array([s["shifted_val_auc"] for s in scores], float)
    return {"in_domain": names[int(np.nanargmax(clean))], "shifted": names[int(np.nanargmax(shifted))],
            "drop": dict(zip(names, (clean - shifted).tolist()))}


def selection_table(results, picks) -> tuple[list, list]:
    """Header and rows: each model's clean and shifted validation AUC, clean and shifted test
    AUC (frame level), and which validation picks it."""
    header = ["model", "weights", "val AUC (clean, in-domain)", "val AUC (shifted)", "test AUC (clean)",
              "test AUC (shifted)", "picked by"]
    rows = []
    for r in results:
        by = [k for k, name in (("in-domain", picks["in_domain"]["name"]), ("shifted", picks["shifted"]["name"]))
              if name == r["name"]]
        rows.append([r["name"], "pretrained" if r["pretrained"] else "random init", f"{r['val']['frame']['auc']:.3f}",
                     f"{r['shifted_val_auc']:.3f}", f"{r['test']['frame']['auc']:.3f}", f"{r['shifted_test_auc']:.3f}",
                     " + ".join(by)])
    return header, rows
