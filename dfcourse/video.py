"""Videos to frames (and frames to short videos) with OpenCV.

Used in notebooks/01_data_prep.ipynb and by ``python -m dfcourse prepare`` / ``predict``.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .io import BadInputError, atomic_path

MAX_SCAN = 100_000  # frames read to count a video whose header has no credible frame count
MAX_CREDIBLE = 10_000_000  # a header count above this (~4 days at 30 fps) is not believed


def sample_indices(num_total: int, num_frames: int) -> np.ndarray:
    """``num_frames`` evenly spaced frame indices in ``[0, num_total)`` (np.linspace), unique."""
    if num_frames < 0:
        raise ValueError(f"num_frames must be >= 0, not {num_frames}")
    k = min(num_frames, max(num_total, 0))
    spaced = np.linspace(0, num_total - 1, num=k) if k else np.empty(0)
    return np.unique(np.rint(spaced).astype(np.int64))


def frame_count(path) -> int:
    """Frame count from the header, or by reading the frames when the header's count is not
    credible: missing, negative or absurdly large (live WebM/MKV headers carry none, and
    OpenCV then reports a huge negative number)."""
    cap = _open(path)
    try:
        n = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        if np.isfinite(n) and 0 < n <= MAX_CREDIBLE:
            return int(n)
        n = 0
        while n < MAX_SCAN and cap.grab():
            n += 1
        return n
    finally:
        cap.release()


def read_frames(path, num_frames: int = 32) -> list[tuple[int, np.ndarray]]:
    """Read ``num_frames`` evenly spaced frames as ``[(frame_idx, RGB uint8 array)]``.

    Reads sequentially (``grab`` every frame, decode only the wanted ones) because
    seeking is frame-inaccurate for many codecs. Frames that fail to decode are
    skipped; a video with no readable frame raises :class:`BadInputError`.
    """
    n = frame_count(path)
    wanted = set(sample_indices(n, num_frames).tolist())
    frames = []
    cap = _open(path)
    try:
        for i in range(max(wanted, default=-1) + 1):
            if not cap.grab():
                break  # truncated file: keep what we have
            if i in wanted:
                ok, bgr = cap.retrieve()
                if ok and bgr is not None and bgr.size:
                    frames.append((i, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    finally:
        cap.release()
    if not frames:
        raise BadInputError(
            f"{path}: no readable frames (header says {n}). The file is empty or corrupt: "
            "re-download it or remove it.")
    return frames


def write_video(path, frames, fps: float = 10.0) -> Path:
    """Write RGB uint8 frames (all the same size) to an mp4 atomically."""
    frames = list(frames)
    if not frames:
        raise ValueError("write_video needs at least one frame")
    h, w = frames[0].shape[:2]
    with atomic_path(path) as tmp:
        out = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if not out.isOpened():
            raise RuntimeError(f"OpenCV cannot write {path}: no mp4 encoder in this build")
        for f in frames:
            if f.ndim == 2:
                f = np.stack([f] * 3, axis=-1)
            out.write(cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2BGR))
        out.release()
    return Path(path)


def _open(path) -> cv2.VideoCapture:
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{path}: no such video file. Check the path.")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise BadInputError(
            f"{path}: OpenCV cannot open this video. It may be corrupt or in an unsupported "
            "container: re-download it, or convert it with `ffmpeg -i IN -c:v libx264 OUT.mp4`.")
    return cap
