"""The capture chain of the demo engine: what every demo frame, real or forged, goes through.

A face in a real video went through a lens, a sensor, the video's scale and a codec before
anyone forged it, and through a codec again after. The demo engine models that chain on
every frame, with settings drawn per frame, so that no one of them tells a real frame from
a forged one:

1. **optics**: defocus (a Gaussian blur of 0.3-1.2 px, on half the frames) and the video's
   scale (down to 0.5-0.95 of the side and back up, on half the frames);
2. the **forgery** (:mod:`dfcourse.synth`), on the frame as the optics left it;
3. **sensor noise** of a strength drawn per frame from 0 to 5 grey levels (a clean studio
   frame to a noisy phone frame). A fake and its real frame share one noise field outside
   the forged region, so they differ only where the forgery is; inside it the forged region
   carries noise of its own strength when the ``noise`` cue is on;
4. **compression** of the whole frame: JPEG at quality 60-95, H.264 at CRF 18-32 (the
   FaceForensics++ "c23" setting is CRF 23), or none.

Each forgery carries three cues at random strengths (:func:`draw_cues`): a colour or tone
mismatch, a resolution mismatch (the forged region resampled, blurred or sharpened), and a
noise mismatch, plus the blend boundary every blended forgery has. One cue, drawn at random,
is at least half strength, so every fake carries a trace, but never always the same one.
``tests/test_demo.py``'s shortcut audit checks that no global image statistic separates
the classes.
Used in notebook 01 (the table of the chain); :mod:`dfcourse.demo` builds the demo data with it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from . import perturb

CUES = ("colour", "resolution", "noise")
NOISE = (0.0, 5.0)  # sensor noise sigma, grey levels
DEFOCUS = (0.3, 1.2)  # blur sigma in px at the crop's size, on half the frames
SCALE = (0.5, 0.95)  # the video's scale, on half the frames
JPEG_QUALITY = (60, 95)
H264_CRF = (18, 32)
REGION_NOISE_SHIFT = 4.0  # a forged region's noise sigma: the frame's, moved by up to this x the cue's strength


@dataclass(frozen=True)
class Capture:
    """One frame's capture settings."""

    noise: float  # sensor noise sigma, grey levels (0: none)
    defocus: float  # Gaussian blur sigma, px (0: none)
    scale: float  # resampled down to this fraction of the side and back (1: none)
    codec: str  # "jpeg", "h264" or "none"
    quality: int  # JPEG quality or H.264 CRF (0 for "none")

    def as_dict(self) -> dict:
        return asdict(self)


def draw(rng) -> Capture:
    """Capture settings of one frame, drawn from the ranges above."""
    noise = float(rng.uniform(*NOISE))
    defocus = float(rng.uniform(*DEFOCUS)) if rng.random() < 0.5 else 0.0
    scale = float(rng.uniform(*SCALE)) if rng.random() < 0.5 else 1.0
    u = rng.random()
    if u < 0.5:
        codec, quality = "jpeg", int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
    elif u < 0.85:
        codec, quality = "h264", int(rng.integers(H264_CRF[0], H264_CRF[1] + 1))
    else:
        codec, quality = "none", 0
    return Capture(noise, defocus, scale, codec, quality)


def optics(img, cap: Capture) -> np.ndarray:
    """Defocus, then the video's scale (RGB uint8 in and out)."""
    return perturb.resample(perturb.blur_sigma(np.asarray(img), cap.defocus), cap.scale)


def is_grey(img) -> bool:
    img = np.asarray(img)
    return img.ndim == 3 and np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2])


def develop(img, cap: Capture, noise_seed, mask=None, region_noise=None, grey=None) -> np.ndarray:
    """Sensor noise, then compression. ``noise_seed`` fixes the noise field, so a real frame
    and a fake made from it (same seed) carry the same noise outside ``mask``; inside it a
    fake carries noise of ``region_noise`` grey levels from a field of its own (``None``: the
    frame's). ``grey`` (default: whether ``img`` is grey) gives every channel one field."""
    img = np.asarray(img)
    grey = is_grey(img) if grey is None else grey
    shape = img.shape[:2] + (1,) if grey else img.shape
    field = np.random.default_rng(noise_seed).standard_normal(shape, dtype=np.float32)
    x = img.astype(np.float32)
    if mask is not None and region_noise is not None:
        own = np.random.default_rng([*np.atleast_1d(noise_seed), 7]).standard_normal(shape, dtype=np.float32)
        m = np.asarray(mask, np.float32)[..., None]
        x += (1 - m) * np.float32(cap.noise) * field + m * np.float32(region_noise) * own
    else:
        x += np.float32(cap.noise) * field
    out = np.clip(np.round(x), 0, 255).astype(np.uint8)
    return compress(out, cap)


def table() -> list[list[str]]:
    """The chain's ranges as ``[step, drawn per frame from]`` rows (notebook 01 prints them)."""
    return [["sensor noise sigma (grey levels)", f"{NOISE[0]:g} to {NOISE[1]:g}, every frame"],
            ["defocus sigma (px at the crop's size)", f"{DEFOCUS[0]:g} to {DEFOCUS[1]:g}, on half the frames"],
            ["the video's scale (of the side, down and up)", f"{SCALE[0]:g} to {SCALE[1]:g}, on half the frames"],
            ["compression of the whole frame", f"JPEG at quality {JPEG_QUALITY[0]} to {JPEG_QUALITY[1]}, H.264 at CRF "
                                               f"{H264_CRF[0]} to {H264_CRF[1]}, or none"],
            ["a forged region's noise sigma", f"the frame's, moved by up to {REGION_NOISE_SHIFT:g} grey levels "
                                              "x the noise cue's strength"]]


def compress(img, cap: Capture) -> np.ndarray:
    if cap.codec == "jpeg":
        return perturb.jpeg(img, cap.quality)
    if cap.codec == "h264":
        return perturb.h264(img, cap.quality)
    return img


def draw_cues(rng, frame_noise: float, cues=CUES) -> dict:
    """Strengths in [0, 1] of each forgery cue (0 for a cue switched off), one cue drawn at
    random at least 0.5; ``region_noise``: with the ``noise`` cue on, the forged region's own
    noise sigma, ``frame_noise`` moved up or down by up to ``REGION_NOISE_SHIFT`` grey levels times the cue's
    strength; else ``None`` (the frame's noise field goes on through the region)."""
    cues = tuple(cues)
    out = {c: (float(rng.uniform(0, 1)) if c in cues else 0.0) for c in CUES}
    if cues:
        out[cues[rng.integers(len(cues))]] = float(rng.uniform(0.5, 1.0))
    out["region_noise"] = None
    if "noise" in cues:
        sign = 1.0 if frame_noise < 2.0 or rng.random() < 0.5 else -1.0
        out["region_noise"] = float(np.clip(frame_noise + sign * REGION_NOISE_SHIFT * out["noise"], 0.0, NOISE[1] + 1.0))
    return out
