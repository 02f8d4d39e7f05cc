"""Online self-blending (Shiohara & Yamasaki, CVPR 2022): real faces are all it needs.

Each epoch, every real face comes back twice: once as itself (label 0, an all-zero mask)
and once freshly self-blended (label 1): a colour- and frequency-altered, slightly shifted
copy of the face is blended back into it through a new, deformed, soft mask. The region
changes from sample to sample (one eye, the mouth, a cheek, half the face, or the whole
face hull, as Face X-ray and SBI vary their masks), so neither a detector nor a localizer
can solve the task by position. All randomness comes from ``(seed, epoch, index)``: the
same seed repeats a run, a new epoch gives new fakes. Items are ``(image, label, mask,
index)`` like :class:`dfcourse.localization.LocalizationDataset`, so the same engine
trains a detector (the label) and a localizer (the mask).
Built for the from-scratch detectors of notebook 02 (the reals + self-blends protocol) and the
localizer of notebook 04; benchmarks/ablate_detector.py measures it.
Used in notebooks 03 and 04.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from . import synth
from .datasets import FaceDataset, augment_with_map, load_face, to_tensor
from .faces import FaceDetector
from .io import atomic_path
from .runs import dataset_identity, fingerprint, rows_fingerprint

REGIONS = ("eye", "mouth", "cheek", "half", "hull")
REGION_P = (0.15, 0.15, 0.15, 0.15, 0.40)  # the whole hull most often, as in SBI
# Landmarks (fraction of the crop side) used when MTCNN finds no face in a crop: the
# demo's aligned faces (96 px face, 10 px margin in a 116 px square, see demo.py).
FALLBACK_LANDMARKS = np.array([[0.35, 0.40], [0.65, 0.40], [0.50, 0.57], [0.38, 0.73], [0.62, 0.73]],
                              np.float32)


def region_mask(shape, lm, rng, region: str) -> np.ndarray:
    """A hard {0, 1} mask of one named face region, sized and oriented by the 5 landmarks."""
    lm = np.asarray(lm, np.float32)
    eyes, mouth, eye_dist, face_h, angle = synth._geometry(lm)
    j = lambda: rng.uniform(0.85, 1.2)  # noqa: E731 - size jitter
    if region == "eye":
        c = lm[rng.integers(2)]
        return synth.ellipse_mask(shape, c, (0.42 * eye_dist * j(), 0.28 * eye_dist * j()), angle)
    if region == "mouth":
        return synth.ellipse_mask(shape, mouth + [0, 0.05 * face_h], (0.7 * eye_dist * j(), 0.35 * face_h * j()),
                                  angle)
    if region == "cheek":
        side = rng.integers(2)
        c = lm[side] + [(0.15 if side else -0.15) * eye_dist, 0.55 * face_h]
        return synth.ellipse_mask(shape, c, (0.35 * eye_dist * j(), 0.4 * face_h * j()), angle)
    hull = synth.face_mask(shape, lm, rng)
    if region == "hull":
        return hull
    if region == "half":  # left, right, upper or lower half of the hull, cut through its centre
        h, w = shape[:2]
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        c = lm.mean(0)
        t = np.radians(angle)
        u = (xs - c[0]) * np.cos(t) + (ys - c[1]) * np.sin(t)   # along the eye line
        v = -(xs - c[0]) * np.sin(t) + (ys - c[1]) * np.cos(t)  # down the face
        cut = [u < 0, u >= 0, v < 0, v >= 0][rng.integers(4)]
        return hull * cut
    raise ValueError(f"unknown region {region!r}; choose from {REGIONS}")


def self_blend_region(img, lm, rng, region=None, regions=REGIONS, p=REGION_P):
    """One self-blend of ``img`` in one region (drawn from ``regions`` when not given).

    Returns ``(fake, mask, region)``: ``mask`` is the blend weight in (0, 1] exactly on the
    pixels where ``fake`` differs from ``img`` and 0 everywhere else.
    """
    if region is None:
        pr = np.array([p[REGIONS.index(r)] for r in regions], float)
        region = regions[rng.choice(len(regions), p=pr / pr.sum())]
    _, _, eye_dist, face_h, _ = synth._geometry(lm)
    size = max(eye_dist, face_h)
    src = synth.frequency_mismatch(synth.colour_jitter(img, rng), rng, size)
    h, w = img.shape[:2]
    c = np.asarray(lm, np.float32).mean(0)
    A = cv2.getRotationMatrix2D((float(c[0]), float(c[1])), rng.uniform(-3, 3), rng.uniform(0.96, 1.04))
    A[:, 2] += rng.uniform(-0.03, 0.03, 2) * size
    src = cv2.warpAffine(src, A, (w, h), borderMode=cv2.BORDER_REFLECT)
    hard = region_mask(img.shape, lm, rng, region)
    mask = synth.soften(synth.elastic(hard, rng), rng, size if region in ("hull", "half") else 0.5 * size)
    fake = synth.blend(img, src, mask)
    mask = mask * (fake != img).any(-1)  # where rounding left a pixel unchanged, the map says so
    return fake, mask.astype(np.float32), region


def jitter_view(img, lm, rng, max_angle=8.0, scale=(0.9, 1.1), max_shift=0.05):
    """A new 'view' of a face crop: random rotation, scale and shift (replicated border),
    with the landmarks mapped along. Used when ``views=True``."""
    h, w = img.shape[:2]
    A = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-max_angle, max_angle), rng.uniform(*scale))
    A[:, 2] += rng.uniform(-max_shift, max_shift, 2) * w
    out = cv2.warpAffine(img, A, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out, (np.c_[lm, np.ones(len(lm))] @ A.T).astype(np.float32)


def real_landmarks(rows, size: int, cache=None, device="cpu") -> np.ndarray:
    """(N, 5, 2) landmarks of each real crop at ``size`` px: MTCNN on the crop, else the
    aligned-face fallback. ``cache`` (a JSON path) keeps them between runs."""
    cache = Path(cache) if cache else None
    known = json.loads(cache.read_text()) if cache and cache.is_file() else {}
    todo = [r for r in rows if str(r["path"]) not in known]
    if todo:
        detector = FaceDetector(device=device, min_face_size=12)
        for r in todo:
            img = np.asarray(Image.open(r["path"]).convert("RGB"))
            faces = detector.detect_one(img)
            lm = faces[0].landmarks / img.shape[1] if faces else FALLBACK_LANDMARKS
            known[str(r["path"])] = np.asarray(lm, float).round(4).tolist()
        if cache:
            with atomic_path(cache) as tmp:
                tmp.write_text(json.dumps(known))
    return np.array([known[str(r["path"])] for r in rows], np.float32) * size


class SelfBlendDataset(Dataset):
    """Reals and fresh self-blends of them: item ``2k`` is real ``k`` (label 0, zero mask),
    item ``2k + 1`` a new self-blend of it (label 1, its exact mask) drawn from
    ``(seed, epoch, k)``. ``rows`` are real index rows, ``landmarks`` their (N, 5, 2)
    landmarks at ``size`` px (see :func:`real_landmarks`). ``views=True`` also jitters
    each real's pose, scale and crop per epoch; ``augment_ops`` are applied after blending;
    ``masks=False`` drops the mask (``(image, label, index)``, to mix with ``FaceDataset``).
    Set ``.epoch`` (the engine does) to get the next epoch's fakes."""

    def __init__(self, rows, landmarks, size: int, seed: int = 0, regions=REGIONS, views: bool = True,
                 augment_ops=("flip",), masks: bool = True):
        self.rows, self.landmarks = list(rows), np.asarray(landmarks, np.float32)
        if len(self.rows) != len(self.landmarks):
            raise ValueError(f"{len(self.rows)} rows but {len(self.landmarks)} landmark sets")
        self.size, self.seed, self.regions, self.views = size, seed, tuple(regions), views
        self.augment_ops, self.masks = tuple(augment_ops), masks
        self.epoch = 0
        self._faces = {}

    def __len__(self):
        return 2 * len(self.rows)

    def identity(self) -> dict:
        """What a run trained on this dataset depends on (for main's ``dfcourse.runs``)."""
        return {"class": "SelfBlendDataset", "rows": rows_fingerprint(self.rows), "n": len(self.rows),
                "landmarks": fingerprint(self.landmarks.round(2).tolist()), "size": self.size, "seed": self.seed,
                "regions": list(self.regions), "views": self.views, "augment": list(self.augment_ops),
                "masks": self.masks}

    def _real(self, k) -> np.ndarray:
        if k not in self._faces:  # decoded once: a few MB in quick mode
            self._faces[k] = np.asarray(load_face(self.rows[k]["path"], self.size))
        return self._faces[k]

    def sample(self, i):
        """``(face uint8, label, mask float32, region or "")`` of item ``i`` before augmentation."""
        k, fake = divmod(i, 2)
        rng = np.random.default_rng([self.seed, self.epoch, k])
        face, lm = self._real(k), self.landmarks[k]
        if self.views:
            face, lm = jitter_view(face, lm, rng)
        if not fake:
            return face, 0, np.zeros(face.shape[:2], np.float32), ""
        out, mask, region = self_blend_region(face, lm, rng, regions=self.regions)
        return out, 1, mask, region

    def __getitem__(self, i):
        face, label, mask, _ = self.sample(i)
        if self.augment_ops:
            face, mask = augment_with_map(face, mask, np.random.default_rng([self.seed, self.epoch, i, 1]),
                                          self.augment_ops)
        x, y = to_tensor(np.ascontiguousarray(face)), torch.tensor(float(label))
        return (x, y, torch.from_numpy(np.ascontiguousarray(mask))[None], i) if self.masks else (x, y, i)


class EpochConcat(torch.utils.data.ConcatDataset):
    """``ConcatDataset`` that passes ``.epoch`` on to its parts (e.g. index crops + online
    self-blends in one training set)."""

    def identity(self) -> dict:
        return {"class": "EpochConcat", "parts": [dataset_identity(d) for d in self.datasets]}

    @property
    def epoch(self):
        return getattr(self.datasets[0], "epoch", 0)

    @epoch.setter
    def epoch(self, value):
        for d in self.datasets:
            if hasattr(d, "epoch"):
                d.epoch = value


def training_set(rows, size: int, seed: int = 0, with_fakes: bool = True, augment_ops=("flip",),
                 landmark_cache=None, device="cpu"):
    """The training set of the self-blend protocols and the fake-class weight that balances it.

    ``with_fakes=True``: every training row (no downsampling) plus a fresh self-blend of each
    real per epoch; ``with_fakes=False``: the "reals + self-blends only" protocol (the index's
    fakes are never seen). Returns ``(dataset, pos_weight)`` for ``TrainConfig(pos_weight=...)``.
    """
    reals = [r for r in rows if r["label"] == 0]
    if not reals:
        raise ValueError("self-blending needs real faces in the training rows")
    lm = real_landmarks(reals, size, cache=landmark_cache, device=device)
    sb = SelfBlendDataset(reals, lm, size, seed=seed, augment_ops=augment_ops, masks=False)
    if not with_fakes:
        return sb, 1.0
    n_fake = sum(r["label"] == 1 for r in rows) + len(reals)
    return EpochConcat([FaceDataset(rows, size, train=True, seed=seed, augment_ops=augment_ops), sb]), \
        2 * len(reals) / n_fake


def auc_by_family(rows, probs) -> dict:
    """Frame-level AUC of each forgery family (``method``) against all real rows: how a
    detector trained on self-blends does on families it never saw. ``{method: auc}``."""
    from sklearn.metrics import roc_auc_score

    probs = np.asarray(probs)
    real = [i for i, r in enumerate(rows) if r["label"] == 0]
    out = {}
    for m in sorted({r["method"] for r in rows if r["label"] == 1}):
        fake = [i for i, r in enumerate(rows) if r["method"] == m and r["label"] == 1]
        if real and fake:
            out[m] = float(roc_auc_score([0] * len(real) + [1] * len(fake), probs[real + fake]))
    return out
