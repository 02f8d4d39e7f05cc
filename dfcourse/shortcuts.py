"""The shortcut audit: can one global image statistic tell the demo's fakes from its reals?

A dataset with a planted cue (every real frame noisy, every forged region smooth) teaches a
model the cue, not the forgery. Each statistic below summarises a whole face crop in one
number; :func:`audit` reports how well each one alone separates real from fake (ROC AUC,
folded so that 0.5 is chance and 1.0 perfect in either direction). The tests require every
one to stay at or below :data:`MAX_AUC` on the demo data.
Used in notebook 01 and tests/test_demo.py.
"""
from __future__ import annotations

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score

MAX_AUC = 0.70


def _grey(img) -> np.ndarray:
    return cv2.cvtColor(np.asarray(img, np.uint8), cv2.COLOR_RGB2GRAY).astype(np.float32)


def highpass_energy(img) -> float:
    """Mean |image - its 3x3 local mean|: fine texture and sensor noise."""
    g = _grey(img)
    return float(np.abs(g - cv2.blur(g, (3, 3))).mean())


def laplacian_variance(img) -> float:
    """Variance of the Laplacian: the usual sharpness (focus) measure."""
    return float(cv2.Laplacian(_grey(img), cv2.CV_32F).var())


def brightness(img) -> float:
    return float(_grey(img).mean())


def saturation(img) -> float:
    """Mean chroma (HSV saturation): colour against black and white."""
    return float(cv2.cvtColor(np.asarray(img, np.uint8), cv2.COLOR_RGB2HSV)[..., 1].mean())


def blockiness(img) -> float:
    """JPEG/H.264 block strength (a compression-quality estimate): mean |step| across the
    8-pixel grid's lines over the mean |step| elsewhere."""
    g = _grey(img)
    dx, dy = np.abs(np.diff(g, axis=1)), np.abs(np.diff(g, axis=0))
    on_x, on_y = (np.arange(dx.shape[1]) % 8) == 7, (np.arange(dy.shape[0]) % 8) == 7
    on = np.r_[dx[:, on_x].ravel(), dy[on_y].ravel()].mean()
    off = np.r_[dx[:, ~on_x].ravel(), dy[~on_y].ravel()].mean()
    return float(on / (off + 1e-6))


STATISTICS = {"high-pass energy": highpass_energy, "Laplacian variance": laplacian_variance,
              "brightness": brightness, "saturation": saturation, "blockiness (JPEG estimate)": blockiness}


def folded_auc(y, scores) -> float:
    a = float(roc_auc_score(y, scores))
    return max(a, 1 - a)


def audit(reals, fakes, statistics=STATISTICS) -> dict:
    """``{statistic: folded AUC}`` of each statistic over ``reals`` vs ``fakes`` (RGB uint8)."""
    y = [0] * len(reals) + [1] * len(fakes)
    return {name: folded_auc(y, [fn(im) for im in list(reals) + list(fakes)]) for name, fn in statistics.items()}
