"""Face crops from the index as tensors, with the course's augmentations.

Augmentation (training only), each op with its own probability, applied to real and fake
faces alike after any forgery: a horizontal **flip** (p 0.5); **jitter** of brightness,
contrast and saturation by up to 20 % (p 0.5); Gaussian **blur** of sigma 0.2-1.5 px (p 0.3);
**JPEG** re-compression at quality 40-100 (p 0.5); **resample**, down to 0.4-0.95 of the side
and back up (p 0.3); Gaussian **noise** of 1-8 grey levels (p 0.2). They follow the
augmentations of DeepfakeBench (Yan et al. 2023) and SBI (Shiohara & Yamasaki 2022): the
changes a face meets between a camera and a detector, so a model cannot lean on sharpness,
noise or compression to tell real from fake. ``ROBUST_AUGMENTATIONS`` is all six (the
recipes' default, ``AUGMENT = "robust"`` in notebooks 02 and 04); ``DEFAULT_AUGMENTATIONS``
the flip alone. Each sample's randomness comes from ``(seed, epoch, index)``, so a run is
repeatable.
Used in notebooks 02, 03, 04 and 05.
"""
from __future__ import annotations

import io as _io

import numpy as np
import torch
from PIL import Image, ImageFilter
from torch.utils.data import Dataset

from . import perturb
from .io import read_image
from .runs import rows_fingerprint


def jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = _io.BytesIO()
    img.save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    return Image.open(buf).convert("RGB")


AUGMENTATIONS = ("flip", "jitter", "blur", "jpeg", "resample", "noise")
ROBUST_AUGMENTATIONS = AUGMENTATIONS
DEFAULT_AUGMENTATIONS = ("flip",)
AUGMENT_P = {"flip": 0.5, "jitter": 0.5, "blur": 0.3, "jpeg": 0.5, "resample": 0.3, "noise": 0.2}
# each op's range, drawn uniformly (JPEG quality: integers, both ends included)
AUGMENT_RANGE = {"jitter": (0.8, 1.2), "blur": (0.2, 1.5), "resample": (0.4, 0.95), "noise": (1, 8), "jpeg": (40, 100)}
AUGMENT_WHAT = {"flip": "horizontal flip", "jitter": "brightness, contrast, saturation factor",
                "blur": "Gaussian blur radius (px)", "resample": "down to this share of the side, back up",
                "noise": "Gaussian noise sigma (grey levels)", "jpeg": "JPEG re-compression quality"}
AUGMENT_CHOICES = {"robust": ROBUST_AUGMENTATIONS, "flip": DEFAULT_AUGMENTATIONS, "none": ()}


def augment_ops(name: str) -> tuple:
    """The ops of a notebook's ``AUGMENT`` parameter: ``robust``, ``flip`` or ``none``."""
    if name not in AUGMENT_CHOICES:
        raise ValueError(f"AUGMENT must be one of {sorted(AUGMENT_CHOICES)}, not {name!r}")
    return AUGMENT_CHOICES[name]


def augment_with_map(img, mask: np.ndarray, rng: np.random.Generator, ops):
    """A training face and its map augmented together: the flip (p 0.5) turns both, the other
    ``ops`` (:func:`augment`) change the face only. ``img`` is a PIL image or an RGB uint8
    array, returned as the same kind; ``rng`` is the item's own generator."""
    if "flip" in ops and rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if isinstance(img, Image.Image) else img[:, ::-1]
        mask = mask[:, ::-1]
    rest = tuple(o for o in ops if o != "flip")
    if rest and isinstance(img, Image.Image):
        img = augment(img, rng, rest)
    elif rest:
        img = np.asarray(augment(Image.fromarray(np.ascontiguousarray(img)), rng, rest))
    return img, mask


def augment(img: Image.Image, rng: np.random.Generator, ops=AUGMENTATIONS) -> Image.Image:
    """Flip, colour jitter, blur, JPEG, resampling and noise, each with its probability
    (``AUGMENT_P``); ``ops`` picks which of them run. The order is the capture chain's:
    optics, then noise, then compression."""
    from PIL import ImageEnhance

    draws = {op: rng.random() < AUGMENT_P[op] for op in AUGMENTATIONS}  # the same draws whatever ``ops``
    if draws["flip"] and "flip" in ops:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    if draws["jitter"] and "jitter" in ops:
        for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
            img = enhancer(img).enhance(rng.uniform(*AUGMENT_RANGE["jitter"]))
    if draws["blur"] and "blur" in ops:
        img = img.filter(ImageFilter.GaussianBlur(radius=rng.uniform(*AUGMENT_RANGE["blur"])))
    if draws["resample"] and "resample" in ops:
        img = Image.fromarray(perturb.resample(np.asarray(img), rng.uniform(*AUGMENT_RANGE["resample"])))
    if draws["noise"] and "noise" in ops:
        img = Image.fromarray(perturb.gaussian_noise(np.asarray(img), rng.uniform(*AUGMENT_RANGE["noise"]), rng))
    if draws["jpeg"] and "jpeg" in ops:
        lo, hi = AUGMENT_RANGE["jpeg"]
        img = jpeg(img, rng.integers(lo, hi + 1))
    return img


def augmentation_table(ops=AUGMENTATIONS) -> tuple[list[str], list[list[str]]]:
    """``(header, rows)``: each augmentation in ``ops``, what it changes, its range and probability."""
    rows = []
    for op in ops:
        lo_hi = AUGMENT_RANGE.get(op)
        rows.append([op, AUGMENT_WHAT[op], f"{lo_hi[0]:g} to {lo_hi[1]:g}" if lo_hi else "-", f"{AUGMENT_P[op]:g}"])
    return ["augmentation", "what it changes", "range (uniform)", "probability"], rows


def to_tensor(img) -> torch.Tensor:
    """RGB uint8 (H, W, 3) array or PIL image -> float tensor (3, H, W) in [0, 1]."""
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(arr.transpose(2, 0, 1).copy())


def load_face(path, size: int) -> Image.Image:
    img = Image.fromarray(read_image(path))
    return img if img.size == (size, size) else img.resize((size, size), Image.BILINEAR)


class FaceDataset(Dataset):
    """``(image, label, index)`` for rows of the index; ``image`` in [0, 1], ``size`` px square.
    ``augment_ops`` (training only) names the augmentations used, default flip only."""

    def __init__(self, rows, size: int = 224, train: bool = False, seed: int = 0,
                 augment_ops=DEFAULT_AUGMENTATIONS):
        self.rows, self.size, self.train, self.seed = list(rows), size, train, seed
        self.augment_ops = tuple(augment_ops)
        self.epoch = 0

    def __len__(self):
        return len(self.rows)

    def identity(self) -> dict:
        """What a run trained on this dataset depends on (see :mod:`dfcourse.runs`)."""
        return {"class": "FaceDataset", "rows": rows_fingerprint(self.rows), "n": len(self.rows),
                "size": self.size, "augment": list(self.augment_ops) if self.train else [], "seed": self.seed}

    def __getitem__(self, i):
        r = self.rows[i]
        img = load_face(r["path"], self.size)
        if self.train and self.augment_ops:
            img = augment(img, np.random.default_rng([self.seed, self.epoch, i]), self.augment_ops)
        return to_tensor(img), torch.tensor(float(r["label"])), i
