"""Face crops from the index as tensors, with the course's augmentations.

Augmentation (training only): horizontal flip by default. Colour jitter, Gaussian blur and
JPEG re-compression at quality 40-100 (the perturbations detectors meet in the wild) are
opt-in: from random init at 96 px they wash out the blending traces a detector has to learn
first (``benchmarks/ablate_detector.py``, issue 11); use them for robustness once it learns.
Each sample's randomness comes from ``(seed, epoch, index)``, so a run is repeatable.
Used in notebooks 02, 03 and 04.
"""
from __future__ import annotations

import io as _io

import numpy as np
import torch
from PIL import Image, ImageFilter
from torch.utils.data import Dataset

from .io import read_image
from .runs import rows_fingerprint


def jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = _io.BytesIO()
    img.save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    return Image.open(buf).convert("RGB")


AUGMENTATIONS = ("flip", "jitter", "blur", "jpeg")  # all of them: augment_ops=AUGMENTATIONS
DEFAULT_AUGMENTATIONS = ("flip",)


def augment(img: Image.Image, rng: np.random.Generator, ops=AUGMENTATIONS) -> Image.Image:
    """Flip, colour jitter, blur and JPEG, each with its own probability; ``ops`` picks
    which of them run (``benchmarks/ablate_detector.py`` measures each one)."""
    from PIL import ImageEnhance

    if rng.random() < 0.5 and "flip" in ops:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    if rng.random() < 0.8 and "jitter" in ops:
        for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
            img = enhancer(img).enhance(rng.uniform(0.8, 1.2))
    if rng.random() < 0.3 and "blur" in ops:
        img = img.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.1, 1.5)))
    if rng.random() < 0.5 and "jpeg" in ops:
        img = jpeg(img, rng.integers(40, 101))
    return img


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
