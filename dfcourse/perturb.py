"""Benign changes to a face image at five levels: the perturbation suite.

The seven types of DeeperForensics-1.0 (Jiang et al., CVPR 2020), with the parameter table
of its perturbation code, plus real JPEG, down-and-up resampling and H.264:

=============  ========================================  ===============================
kind           what it does                              parameter at levels 1..5
=============  ========================================  ===============================
saturation     scale Cb/Cr about grey (DF "CS")          0.4, 0.3, 0.2, 0.1, 0.0
contrast       multiply every pixel (DF "CC")            0.85, 0.725, 0.6, 0.475, 0.35
block          grey 8x8 blocks pasted at random (DF      16, 32, 48, 64, 80 blocks per
               "BW")                                     256x256 px of image
noise          white Gaussian noise in Y, Cb, Cr (DF     variance 0.001, 0.002, 0.005,
               "GNC"), on the [0, 1] scale               0.01, 0.05
blur           Gaussian blur, kernel k, sigma k/6 (DF    k = 7, 9, 13, 17, 21
               "GB")
pixelate       down by an integer factor and back up     2, 3, 4, 5, 6
               (what DF's code calls "JPEG")
h264           H.264 (libx264) at a constant rate        CRF 30, 32, 35, 38, 40
               factor (DF "VC", applied per image)
jpeg           real JPEG re-compression                  quality 90, 75, 60, 45, 30
resample       down-and-up by a scale factor             0.9, 0.75, 0.6, 0.5, 0.4
=============  ========================================  ===============================

DeeperForensics applies its table to whole 1080p frames; here it applies to face crops, so
the spatial types (blur, pixelate, block) are stronger relative to the face than in the
paper: read level 1 here as "already a strong change". :data:`EXTRA` holds the milder
everyday cells the course also reports: blur sigma 0.7 px and H.264 at CRF 23 (the
FaceForensics++ "c23" setting); down-up 0.75 and JPEG 75 are resample and jpeg at level 2.

Every function takes and returns an RGB uint8 array and is deterministic given ``seed``.
The training augmentations of the recipes draw from the same functions
(:func:`dfcourse.datasets.augment`).
Used in notebooks 02 and 04 (robustness tables) and ``benchmarks/robustness.py``.
"""
from __future__ import annotations

import io

import cv2
import numpy as np

LEVELS = (1, 2, 3, 4, 5)
TABLE = {
    "saturation": (0.4, 0.3, 0.2, 0.1, 0.0),
    "contrast": (0.85, 0.725, 0.6, 0.475, 0.35),
    "block": (16, 32, 48, 64, 80),
    "noise": (0.001, 0.002, 0.005, 0.01, 0.05),
    "blur": (7, 9, 13, 17, 21),
    "pixelate": (2, 3, 4, 5, 6),
    "h264": (30, 32, 35, 38, 40),
    "jpeg": (90, 75, 60, 45, 30),
    "resample": (0.9, 0.75, 0.6, 0.5, 0.4),
}
KINDS = tuple(TABLE)
DEEPERFORENSICS = ("saturation", "contrast", "block", "noise", "blur", "pixelate", "h264")
# Everyday changes milder than the table: (label, kind, parameter). Down-and-up to 0.75 and
# JPEG 75 are the table's resample and jpeg at level 2.
EXTRA = (("blur sigma 0.7", "blur_sigma", 0.7), ("H.264 CRF 23", "h264", 23))


def _check(img) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"perturb needs an RGB uint8 image (H, W, 3), got {img.dtype} {img.shape}")
    return img


def saturation(img, factor: float) -> np.ndarray:
    ycc = cv2.cvtColor(img, cv2.COLOR_RGB2YCrCb).astype(np.float32)
    ycc[..., 1:] = 128 + (ycc[..., 1:] - 128) * factor
    return cv2.cvtColor(np.clip(np.round(ycc), 0, 255).astype(np.uint8), cv2.COLOR_YCrCb2RGB)


def contrast(img, factor: float) -> np.ndarray:
    return np.clip(img.astype(np.float32) * factor, 0, 255).astype(np.uint8)


def block(img, per_256: float, rng) -> np.ndarray:
    """Grey (128) 8x8 blocks at random places, ``per_256`` of them per 256x256 pixels."""
    h, w = img.shape[:2]
    out, width = img.copy(), min(8, h, w)
    for _ in range(int(round(per_256 * h * w / 256 ** 2))):
        y, x = rng.integers(0, h - width + 1), rng.integers(0, w - width + 1)
        out[y:y + width, x:x + width] = 128
    return out


def noise(img, variance: float, rng) -> np.ndarray:
    """White Gaussian noise of ``variance`` (on the [0, 1] scale) in Y, Cb and Cr."""
    ycc = cv2.cvtColor(img, cv2.COLOR_RGB2YCrCb).astype(np.float32)
    ycc += 255 * np.sqrt(variance) * rng.standard_normal(ycc.shape, dtype=np.float32)
    return cv2.cvtColor(np.clip(np.round(ycc), 0, 255).astype(np.uint8), cv2.COLOR_YCrCb2RGB)


def gaussian_noise(img, sigma: float, rng) -> np.ndarray:
    """Gaussian noise of ``sigma`` grey levels in each RGB channel."""
    x = img.astype(np.float32) + np.float32(sigma) * rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def blur(img, kernel: int) -> np.ndarray:
    """Gaussian blur with DeeperForensics' kernel size ``k`` and sigma ``k / 6``."""
    return cv2.GaussianBlur(img, (int(kernel), int(kernel)), kernel / 6)


def blur_sigma(img, sigma: float) -> np.ndarray:
    return img if sigma <= 0 else cv2.GaussianBlur(img, (0, 0), float(sigma))


def resample(img, scale: float) -> np.ndarray:
    """Down to ``scale`` of the side (area averaging) and back up (bilinear)."""
    h, w = img.shape[:2]
    if scale >= 1:
        return img
    small = cv2.resize(img, (max(2, round(w * scale)), max(2, round(h * scale))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def pixelate(img, factor: int) -> np.ndarray:
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, w // factor), max(1, h // factor)), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def jpeg(img, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].copy()


def h264(img, crf: int) -> np.ndarray:
    """One frame through libx264 at ``crf`` (PyAV's bundled FFmpeg), 4:2:0 chroma as in
    video. Odd sides are padded by one pixel for the encoder and cropped back."""
    import av

    h, w = img.shape[:2]
    frame = np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    buf = io.BytesIO()
    with av.open(buf, "w", format="h264") as out:  # a raw H.264 stream: no container to write and parse
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = frame.shape[1], frame.shape[0], "yuv420p"
        stream.options = {"crf": str(int(crf)), "preset": "veryfast"}
        for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    buf.seek(0)
    with av.open(buf, format="h264") as inp:
        inp.streams.video[0].thread_type = "NONE"  # one small frame: decoder threads only cost (same pixels)
        decoded = next(inp.decode(video=0)).to_ndarray(format="rgb24")
    return decoded[:h, :w].copy()


def apply(img, kind: str, param, seed: int = 0) -> np.ndarray:
    """Apply one change of ``kind`` with an explicit parameter (see the module's table;
    ``blur_sigma`` and ``gaussian_noise`` take a sigma)."""
    img = _check(img)
    if kind == "none":
        return img.copy()
    rng = np.random.default_rng(seed)
    fns = {"saturation": lambda: saturation(img, param), "contrast": lambda: contrast(img, param),
           "block": lambda: block(img, param, rng), "noise": lambda: noise(img, param, rng),
           "blur": lambda: blur(img, param), "blur_sigma": lambda: blur_sigma(img, param),
           "pixelate": lambda: pixelate(img, param), "h264": lambda: h264(img, param),
           "jpeg": lambda: jpeg(img, param), "resample": lambda: resample(img, param),
           "gaussian_noise": lambda: gaussian_noise(img, param, rng)}
    if kind not in fns:
        raise ValueError(f"unknown perturbation {kind!r}; choose from {sorted(fns)}")
    return fns[kind]()


def perturb(img, kind: str, level: int, seed: int = 0) -> np.ndarray:
    """``img`` (RGB uint8) under perturbation ``kind`` at ``level`` 1..5 (0: unchanged)."""
    if kind not in TABLE:
        raise ValueError(f"unknown perturbation {kind!r}; choose from {KINDS}")
    if level == 0:
        return _check(img).copy()
    if level not in LEVELS:
        raise ValueError(f"level must be 0 (none) or one of {LEVELS}, not {level!r}")
    return apply(img, kind, TABLE[kind][level - 1], seed)


def cells(kinds=KINDS, levels=LEVELS, extra=EXTRA) -> list[tuple[str, str, object]]:
    """The suite as ``(label, kind, parameter)`` cells: ``clean`` first, then every kind at
    every level, then the everyday extras."""
    out = [("clean", "none", None)]
    out += [(f"{k} L{lv}", k, TABLE[k][lv - 1]) for k in kinds for lv in levels]
    return out + list(extra)


def random_cell(rng, kinds=KINDS, levels=LEVELS):
    """One ``(kind, parameter)`` drawn uniformly from the suite: a shifted-validation change."""
    k = kinds[rng.integers(len(kinds))]
    return k, TABLE[k][levels[rng.integers(len(levels))] - 1]
