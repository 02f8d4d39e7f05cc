"""Careful file I/O: images in any mode, atomic writes, and a report of skipped items.

Every reader here raises :class:`BadInputError` with the file name and what to do,
so batch jobs can skip the item, list it, and carry on.
Used in notebooks/01_data_prep.ipynb and by every later notebook through the index.
"""
from __future__ import annotations

import contextlib
import csv
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm"}
MAX_SIDE = 4096  # larger images are downscaled on read; faces do not need more


class BadInputError(ValueError):
    """An input file or folder that cannot be used; the message names it and the fix."""


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it into place only on success.

    The temporary name keeps the suffix so writers that infer the format from it
    (``cv2.imwrite``, ``PIL.Image.save``) still work. Nothing is left half-written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def to_rgb_uint8(img: Image.Image) -> np.ndarray:
    """Any PIL image (grey, palette, RGBA, CMYK, 16-bit, float) as an RGB uint8 array."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max()
        if hi > 255:  # 16-bit or wider: scale to the full 8-bit range
            arr = arr * (255.0 / (65535.0 if hi <= 65535 else hi))
        arr = np.clip(arr, 0, 255).astype(np.uint8)
        return np.stack([arr] * 3, axis=-1)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")  # composite on white rather than on undefined colours
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, rgba)
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def read_image(path, max_side: int = MAX_SIDE) -> np.ndarray:
    """Read an image file as an RGB uint8 array (H, W, 3), honouring EXIF rotation."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{path}: no such file. Check the path.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.draft("RGB", (max_side, max_side))  # cheap JPEG downscale on decode
                img.load()
                img = ImageOps.exif_transpose(img)
                if max(img.size) > max_side:
                    img.thumbnail((max_side, max_side))
                arr = to_rgb_uint8(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadInputError(
            f"{path}: image is too large to decode safely ({e}). Downscale it below "
            f"{max_side}px a side first.") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise BadInputError(
            f"{path}: cannot read this image ({e.__class__.__name__}: {e}). "
            "It may be corrupt or not an image: re-download it or remove it.") from e
    if arr.shape[0] < 8 or arr.shape[1] < 8:
        raise BadInputError(f"{path}: image is only {arr.shape[1]}x{arr.shape[0]} px; use a larger one.")
    return arr


def save_image(path, arr: np.ndarray, quality: int = 95) -> Path:
    """Write a uint8 array (H, W[, 3]) atomically; format from the suffix. PNGs use zlib
    level 1: ~3x faster to write than PIL's default 6, ~15% larger (face crops, measured)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(arr, dtype=np.uint8)).save(tmp, quality=quality, compress_level=1)
    return path


def list_files(folder, exts) -> list[Path]:
    """Files under ``folder`` (recursive) with one of ``exts``, sorted for determinism."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in exts)


class SkipLog:
    """Items a batch job could not use, with the reason; written as a CSV beside the output."""

    def __init__(self):
        self.items: list[tuple[str, str]] = []

    def add(self, item, reason: str) -> None:
        self.items.append((str(item), str(reason)))

    def __len__(self) -> int:
        return len(self.items)

    def write(self, path) -> Path:
        path = Path(path)
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["item", "reason"])
            w.writerows(self.items)
        return path

    def summary(self, limit: int = 5) -> str:
        if not self.items:
            return "skipped: none"
        lines = [f"skipped {len(self.items)} item(s):"]
        lines += [f"  {item}: {reason}" for item, reason in self.items[:limit]]
        if len(self.items) > limit:
            lines.append(f"  ... and {len(self.items) - limit} more (see the skipped report)")
        return "\n".join(lines)
