"""Synthetic forgeries with exact masks: self-blend, identity swap, region re-render.

Each function takes a real image (RGB uint8) and its 5 face landmarks (x, y: eyes,
nose, mouth corners) and returns ``(fake, mask)``: ``mask`` is the float blend weight
in [0, 1], exactly zero wherever ``fake`` equals the input. Sizes come from the
landmarks, so the same code works on a 128 px crop and on a full video frame.
Each takes ``cues``: the strength (0-1) of its colour and resolution mismatch. The demo
engine (:mod:`dfcourse.demo`, built by notebook 01) forges with these inside its capture
chain (:mod:`dfcourse.capture`); the residual between a fake and its source is notebook 04's
localization target. The demo engine's families are registered (:func:`register_family`): a
new one is one decorated function, and the demo data and its views follow.
Used in notebook 04.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

METHODS = ("selfblend", "swap", "rerender")  # the built-in families; FAMILIES (below) may hold more


def _geometry(lm):
    lm = np.asarray(lm, dtype=np.float32)
    eyes = (lm[0] + lm[1]) / 2
    mouth = (lm[3] + lm[4]) / 2
    eye_dist = float(np.linalg.norm(lm[1] - lm[0])) + 1e-3
    face_h = float(np.linalg.norm(mouth - eyes)) + 1e-3
    angle = float(np.degrees(np.arctan2(lm[1, 1] - lm[0, 1], lm[1, 0] - lm[0, 0])))
    return eyes, mouth, eye_dist, face_h, angle


def ellipse_mask(shape, center, axes, angle=0.0) -> np.ndarray:
    """A filled ellipse as a float32 {0, 1} map of ``shape[:2]``."""
    m = np.zeros(shape[:2], np.uint8)
    cv2.ellipse(m, (int(round(center[0])), int(round(center[1]))),
                (max(1, int(round(axes[0]))), max(1, int(round(axes[1])))), angle, 0, 360, 1, -1)
    return m.astype(np.float32)


def face_mask(shape, lm, rng, kind=None) -> np.ndarray:
    """Inner-face region from landmarks: an ellipse, or the expanded landmark hull."""
    eyes, mouth, eye_dist, face_h, angle = _geometry(lm)
    kind = kind or rng.choice(["ellipse", "hull"])
    if kind == "ellipse":
        center = (eyes + mouth) / 2 + [0, 0.1 * face_h]
        axes = (eye_dist * rng.uniform(0.95, 1.2), face_h * rng.uniform(1.2, 1.5))
        return ellipse_mask(shape, center, axes, angle)
    lm = np.asarray(lm, np.float32)
    c = lm.mean(0)
    pts = np.vstack([lm, eyes - [0, 0.6 * face_h], mouth + [0, 0.5 * face_h]])
    pts = c + (pts - c) * rng.uniform(1.3, 1.6)
    m = np.zeros(shape[:2], np.uint8)
    cv2.fillConvexPoly(m, cv2.convexHull(pts.astype(np.int32)), 1)
    return m.astype(np.float32)


def elastic(mask, rng, strength=0.08):
    """Deform a mask with a smooth random displacement field (scale from the mask size)."""
    ys, xs = np.nonzero(mask > 0)
    if len(xs) == 0:
        return mask
    size = max(np.ptp(xs), np.ptp(ys)) + 1
    h, w = mask.shape
    sigma = max(2.0, size / 6)
    dx = cv2.GaussianBlur(rng.uniform(-1, 1, (h, w)).astype(np.float32), (0, 0), sigma)
    dy = cv2.GaussianBlur(rng.uniform(-1, 1, (h, w)).astype(np.float32), (0, 0), sigma)
    amp = np.float32(strength * size / (np.abs(np.concatenate([dx, dy])).max() + 1e-6))
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(mask, gx + amp * dx, gy + amp * dy, cv2.INTER_LINEAR)


def soften(mask, rng, size) -> np.ndarray:
    """Soft edges (Gaussian blur scaled to the face), exact zeros below 1/255."""
    sigma = max(0.8, size * rng.uniform(0.03, 0.07))
    m = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigma)
    m = np.clip(m * rng.uniform(0.9, 1.0) / max(m.max(), 1e-6), 0, 1)
    m[m < 1 / 255] = 0
    return m


def colour_jitter(img, rng, amount: float = 1.0) -> np.ndarray:
    """Per-channel gain and bias plus a gamma change: a colour mismatch, scaled by ``amount``
    (0: none). On a grey image the change is one for all channels: a forgery of a
    black-and-white frame stays black and white."""
    x = img.astype(np.float32) / 255
    n = 1 if _is_grey(img) else 3
    gain, bias = rng.uniform(0.85, 1.15, n), rng.uniform(-0.06, 0.06, n)
    gamma = rng.uniform(0.8, 1.25)
    x = x * (1 + amount * (gain - 1)) + amount * bias
    x = np.clip(x, 0, 1) ** (gamma ** amount)
    return (x * 255).astype(np.float32)


def _is_grey(img) -> bool:
    img = np.asarray(img)
    return img.ndim == 3 and np.allclose(img[..., 0], img[..., 1]) and np.allclose(img[..., 1], img[..., 2])


def frequency_mismatch(img, rng, size, amount: float = 1.0) -> np.ndarray:
    """Blur, sharpen, or down-and-up resample: a frequency (resolution) mismatch, scaled by
    ``amount`` (0: none)."""
    img = img.astype(np.float32)
    kind = rng.choice(["blur", "sharpen", "resample"])
    if kind == "blur":
        sigma = amount * max(0.6, size * rng.uniform(0.01, 0.025))
        return cv2.GaussianBlur(img, (0, 0), sigma) if sigma > 0.05 else img
    if kind == "sharpen":
        soft = cv2.GaussianBlur(img, (0, 0), max(0.8, size * 0.02))
        return np.clip(img + amount * rng.uniform(0.8, 1.6) * (img - soft), 0, 255)
    h, w = img.shape[:2]
    f = 1 - amount * (1 - rng.uniform(0.35, 0.6))
    if f > 0.98:
        return img
    small = cv2.resize(img, (max(2, int(w * f)), max(2, int(h * f))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def generated(face, rng, scale=(0.4, 0.6), amount: float = 1.0) -> np.ndarray:
    """A face as a swap generator renders it: synthesised at the generator's lower resolution
    (a fraction ``scale`` of the crop, e.g. 64 px of 128, as autoencoder face swaps work)
    and resized up to the frame. ``amount`` scales the loss of resolution (0: none)."""
    h, w = face.shape[:2]
    f = 1 - amount * (1 - rng.uniform(*scale))
    if f > 0.98:
        return face.astype(np.float32)
    small = cv2.resize(face.astype(np.float32), (max(2, int(w * f)), max(2, int(h * f))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def blend(target, source, mask) -> np.ndarray:
    """``target * (1 - mask) + source * mask``, rounded; exactly ``target`` where mask is 0."""
    m = mask[..., None].astype(np.float32)
    out = target.astype(np.float32) * (1 - m) + source.astype(np.float32) * m
    out = np.clip(np.round(out), 0, 255).astype(np.uint8)
    np.copyto(out, target, where=(mask == 0)[..., None])
    return out


FULL = {"colour": 1.0, "resolution": 1.0}  # every cue at full strength


def self_blend(img, lm, rng, cues=FULL):
    """SBI-style self-blend: a colour/frequency-altered (``cues["colour"]``,
    ``cues["resolution"]``), slightly shifted copy of the face blended back into itself
    through a deformed soft mask."""
    _, _, eye_dist, face_h, _ = _geometry(lm)
    size = max(eye_dist, face_h)
    src = frequency_mismatch(colour_jitter(img, rng, cues["colour"]), rng, size, cues["resolution"])
    h, w = img.shape[:2]
    s = rng.uniform(0.96, 1.04)
    c = np.asarray(lm, np.float32).mean(0)
    A = cv2.getRotationMatrix2D((float(c[0]), float(c[1])), rng.uniform(-3, 3), s)
    A[:, 2] += rng.uniform(-0.03, 0.03, 2) * size
    src = cv2.warpAffine(src, A, (w, h), borderMode=cv2.BORDER_REFLECT)
    mask = soften(elastic(face_mask(img.shape, lm, rng), rng), rng, size)
    return blend(img, src, mask), mask


def colour_transfer(src, ref, region) -> np.ndarray:
    """Match the LAB mean and std of ``src`` to ``ref`` inside ``region`` (Reinhard)."""
    sel = region > 0.5
    if sel.sum() < 10:
        return src.astype(np.float32)
    s = cv2.cvtColor(np.clip(src, 0, 255).astype(np.uint8), cv2.COLOR_RGB2LAB).astype(np.float32)
    r = cv2.cvtColor(ref.astype(np.uint8), cv2.COLOR_RGB2LAB).astype(np.float32)
    out = (s - s[sel].mean(0)) / (s[sel].std(0) + 1e-3) * r[sel].std(0) + r[sel].mean(0)
    out = cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
    return out.astype(np.float32)


def swap(img, lm, donor, donor_lm, rng, cues=FULL):
    """Cross-identity swap: the donor face as a generator renders it (:func:`generated`, its
    resolution loss scaled by ``cues["resolution"]``), warped onto ``img`` by a 5-point
    similarity, colour-transferred, then tone-shifted by ``cues["colour"]``, blended into the
    inner face."""
    h, w = img.shape[:2]
    A, _ = cv2.estimateAffinePartial2D(np.asarray(donor_lm, np.float32), np.asarray(lm, np.float32))
    if A is None:
        raise ValueError("swap: cannot align the donor landmarks to the target")
    warped = cv2.warpAffine(generated(donor, rng, amount=cues["resolution"]), A, (w, h), borderMode=cv2.BORDER_REFLECT)
    valid = cv2.warpAffine(np.ones(donor.shape[:2], np.float32), A, (w, h)) > 0.99
    _, _, eye_dist, face_h, _ = _geometry(lm)
    region = face_mask(img.shape, lm, rng, kind="ellipse") * valid
    warped = colour_jitter(np.clip(colour_transfer(warped, img, region), 0, 255), rng, 0.5 * cues["colour"])
    if _is_grey(img):  # a black-and-white frame: the swapped face is black and white too
        warped = np.repeat(warped.mean(-1, keepdims=True), 3, -1)
    mask = soften(region, rng, max(eye_dist, face_h)) * valid
    mask[mask < 1 / 255] = 0
    return blend(img, warped, mask), mask


def rerender(img, lm, rng, region=None, cues=FULL):
    """NeuralTextures-like local re-rendering: the mouth or eye region resampled and smoothed
    (scaled by ``cues["resolution"]``) and shifted in tone (``cues["colour"]``)."""
    lm = np.asarray(lm, np.float32)
    eyes, mouth, eye_dist, face_h, angle = _geometry(lm)
    region = region or rng.choice(["mouth", "eyes"])
    if region == "mouth":
        center, axes = mouth + [0, 0.05 * face_h], (0.75 * eye_dist, 0.38 * face_h)
    else:
        center, axes = eyes, (1.0 * eye_dist, 0.32 * face_h)
    axes = (axes[0] * rng.uniform(0.9, 1.2), axes[1] * rng.uniform(0.9, 1.2))
    size = max(eye_dist, face_h)
    h, w = img.shape[:2]
    a, c = cues["resolution"], cues["colour"]
    f = 1 - a * (1 - rng.uniform(0.25, 0.4))
    small = cv2.resize(img, (max(2, int(w * f)), max(2, int(h * f))), interpolation=cv2.INTER_AREA)
    src = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    src = ((1 - a) * src + a * cv2.bilateralFilter(src, 5, 40, 5)).astype(np.float32)
    src = np.clip(src * (1 + c * rng.uniform(-0.1, 0.1)) + c * rng.uniform(-12, 12), 0, 255)
    mask = soften(ellipse_mask(img.shape, center, axes, angle), rng, size)
    return blend(img, src, mask), mask


def residual(fake, source) -> np.ndarray:
    """The greyscale residual |fake - source| (mean over channels), uint8."""
    d = np.abs(fake.astype(np.int16) - source.astype(np.int16))
    return (d.mean(-1) if d.ndim == 3 else d).round().astype(np.uint8)


def residual_target(fake, source, threshold: float = 0.05, blur_sigma: float = 1.0) -> np.ndarray:
    """Notebook 04's supervision target: binary float32 map, grey ``|fake - source|`` in [0, 1],
    Gaussian-blurred, ``> threshold`` (also ``dfcourse.localization.residual_target``)."""
    gap = np.abs(np.subtract(fake, source, dtype=np.float32)).mean(axis=-1) / 255.0
    if blur_sigma > 0:
        gap = cv2.GaussianBlur(gap, (0, 0), blur_sigma)
    return np.greater(gap, threshold).astype(np.float32)


# ------------------------------------------------------------------ forgery families
@dataclass(frozen=True)
class Family:
    """A forgery family of the demo engine: ``forge(face, lm, rng, donor, cues) -> (fake, mask)``;
    ``needs_donor``: it takes another identity's face (``donor`` is ``(face, landmarks)``)."""

    name: str
    forge: Callable
    needs_donor: bool = False


FAMILIES: dict[str, Family] = {}


def register_family(name: str, needs_donor: bool = False):
    """Decorator: add a forgery family. The demo data (:func:`dfcourse.demo.build_demo`), its
    online views (:class:`dfcourse.demo.DemoViews`, one real view per family, so the classes stay
    balanced) and the per-family test AUCs then include it."""
    def add(forge):
        if name in FAMILIES or name == "original":
            raise ValueError(f"forgery family {name!r} is already registered (or reserved)")
        FAMILIES[name] = Family(name, forge, needs_donor)
        return forge
    return add


def unregister_family(name: str) -> None:
    FAMILIES.pop(name)


def families() -> tuple[str, ...]:
    """The registered families, in registration order (the built-in three first)."""
    return tuple(FAMILIES)


@register_family("selfblend")
def _selfblend(face, lm, rng, donor, cues):
    return self_blend(face, lm, rng, cues)


@register_family("swap", needs_donor=True)
def _swap(face, lm, rng, donor, cues):
    return swap(face, lm, donor[0], donor[1], rng, cues)


@register_family("rerender")
def _rerender(face, lm, rng, donor, cues):
    return rerender(face, lm, rng, cues=cues)
