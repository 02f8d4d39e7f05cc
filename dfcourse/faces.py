"""Face detection (facenet-pytorch MTCNN, batched), face tracks, and square crops.

MTCNN's weights ship inside the facenet-pytorch wheel, so this works offline.
Used in notebooks/01_data_prep.ipynb, and by ``prepare`` and ``predict`` (the Grad-CAM
notebook's upload demo reaches it through ``predict``).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from .io import BadInputError

MARGIN = 1.3  # square crop side = 1.3 x the larger box side (FaceForensics++ get_boundingbox, scale=1.3)


@dataclass
class Face:
    """One detected face in image pixels: box ``x1 y1 x2 y2``, 5 landmarks, probability.

    Landmarks are (5, 2) ``x, y``: left eye, right eye, nose, mouth left, mouth right.
    """

    box: np.ndarray
    landmarks: np.ndarray
    prob: float

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return float(max(x2 - x1, 0) * max(y2 - y1, 0))


class FaceDetector:
    """Batched MTCNN. ``detect(images)`` returns a list of faces per image, largest first.

    Images of equal size go through MTCNN as one batch. Frames larger than
    ``max_side`` are downscaled for detection only; boxes come back in full-size pixels.
    An image with a side under ``min_side`` (MTCNN's own minimum, :func:`mtcnn_min_side`)
    is a :class:`~dfcourse.io.BadInputError` saying so, not an error from inside MTCNN.
    ``images_seen`` counts the images detection has run on (``prepare`` reports it).
    """

    def __init__(self, device="cpu", min_face_size: int = 20, max_side: int = 1024,
                 batch_size: int = 16, thresholds=(0.6, 0.7, 0.7)):
        from facenet_pytorch import MTCNN

        self.mtcnn = MTCNN(keep_all=True, device=device, min_face_size=min_face_size,
                           thresholds=list(thresholds), post_process=False)
        self.max_side, self.batch_size = max_side, batch_size
        self.min_side = mtcnn_min_side(min_face_size)
        self.images_seen = 0

    def detect(self, images) -> list[list[Face]]:
        images = [np.asarray(im) for im in images]
        self.images_seen += len(images)
        results: list[list[Face]] = [[] for _ in images]
        by_shape: dict[tuple, list[int]] = {}
        for i, im in enumerate(images):
            if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
                raise ValueError(f"image {i}: expected RGB uint8 (H, W, 3), got {im.dtype} {im.shape}")
            by_shape.setdefault(im.shape, []).append(i)
        for shape in by_shape:
            self._check_size(shape[1], shape[0])
        for shape, idx in by_shape.items():
            scale = min(1.0, self.max_side / max(shape[:2]))
            for start in range(0, len(idx), self.batch_size):
                chunk = idx[start:start + self.batch_size]
                batch = np.stack([_resize(images[i], scale) for i in chunk])
                for i, faces in zip(chunk, self._detect_batch(batch)):
                    for f in faces:
                        f.box /= scale
                        f.landmarks /= scale
                    results[i] = faces
        return results

    def _check_size(self, w: int, h: int) -> None:
        scale = min(1.0, self.max_side / max(w, h))
        if min(round(w * scale), round(h * scale)) >= self.min_side:
            return
        need = f"needs >= {self.min_side} px a side"
        if scale < 1:  # a long thin image: its long side is searched at max_side
            need += (f", and a short side >= {math.ceil(self.min_side / scale)} px at this length, as it is "
                     f"searched scaled to {self.max_side} px long")
        raise BadInputError(f"image is {w}x{h} px: too small to find a face ({need}). Use a larger image.")

    def detect_one(self, image) -> list[Face]:
        return self.detect([image])[0]

    def _detect_batch(self, batch: np.ndarray) -> list[list[Face]]:
        boxes, probs, points = self.mtcnn.detect(batch, landmarks=True)
        out = []
        for b, p, pt in zip(boxes, probs, points):
            if b is None:  # MTCNN gives None for an image without faces
                out.append([])
                continue
            # MTCNN returns object arrays in batch mode: cast before any arithmetic
            b, p, pt = (np.asarray(b).astype(np.float32), np.asarray(p).astype(np.float32),
                        np.asarray(pt).astype(np.float32))
            faces = [Face(b[k].copy(), pt[k].copy(), float(p[k])) for k in range(len(b))]
            out.append(sorted(faces, key=lambda f: f.area, reverse=True))
        return out


def mtcnn_min_side(min_face_size: int) -> int:
    """The smallest image side MTCNN searches with ``min_face_size``: its first pyramid
    level scales the image by 12 / min_face_size and needs 12 px; below that MTCNN fails
    (``torch.cat(): expected a non-empty list``). tests/test_faces.py measures it."""
    m = 12.0 / min_face_size
    return next(s for s in itertools.count(1) if s * m >= 12)  # MTCNN's own arithmetic


def _resize(im: np.ndarray, scale: float) -> np.ndarray:
    if scale >= 1.0:
        return im
    h, w = im.shape[:2]
    return cv2.resize(im, (max(1, round(w * scale)), max(1, round(h * scale))),
                      interpolation=cv2.INTER_AREA)


def box_iou(a, b) -> float:
    """Intersection over union of two boxes ``x1 y1 x2 y2``."""
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(x2 - x1, 0) * max(y2 - y1, 0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def face_track(faces_per_frame: list[list[Face]]) -> list[Face | None]:
    """Follow one face through a video: start from the largest face seen, then per frame
    take the face overlapping the previous choice most (the largest if none overlaps)."""
    all_faces = [f for faces in faces_per_frame for f in faces]
    if not all_faces:
        return [None] * len(faces_per_frame)
    prev = max(all_faces, key=lambda f: f.area)
    track = []
    for faces in faces_per_frame:
        if not faces:
            track.append(None)
            continue
        best = max(faces, key=lambda f: (box_iou(f.box, prev.box), f.area))
        if box_iou(best.box, prev.box) == 0:
            best = faces[0]
        track.append(best)
        prev = best
    return track


def square_box(box, margin: float = MARGIN) -> np.ndarray:
    """The square around ``box`` with side ``margin`` x its larger side, as ints ``x1 y1 x2 y2``.
    It may extend past the image; :func:`crop` pads with black there."""
    b = np.asarray(box, dtype=np.float64)[:4]
    centre, extent = (b[:2] + b[2:]) / 2, b[2:] - b[:2]
    side = float(extent.max()) * margin
    corner = np.rint(centre - side / 2)  # half to even, as Python's round
    return np.concatenate([corner, corner + max(1, round(side))]).astype(int)


def crop(image: np.ndarray, square, size: int, interpolation=cv2.INTER_AREA) -> np.ndarray:
    """Crop ``square`` (from :func:`square_box`) out of ``image``, padding outside, resized to ``size``."""
    x1, y1, x2, y2 = [int(v) for v in square]
    h, w = image.shape[:2]
    pad = max(0, -x1, -y1, x2 - w, y2 - h)
    if pad:
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
        x1, y1, x2, y2 = x1 + pad, y1 + pad, x2 + pad, y2 + pad
    out = image[y1:y2, x1:x2]
    return cv2.resize(out, (size, size), interpolation=interpolation)


def landmarks_in_crop(landmarks, square, size: int) -> np.ndarray:
    """Map landmarks from image pixels into the pixels of a ``size`` crop of ``square``."""
    x1, y1, x2, _ = [float(v) for v in square]
    return (np.asarray(landmarks, dtype=np.float32) - [x1, y1]) * (size / (x2 - x1))
