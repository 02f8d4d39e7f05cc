"""Face tracks of FF++ originals, reused by their manipulations and checked crop by crop.

A fake ``NNN_MMM`` is frame-aligned with original ``NNN``: the head is where it is in
``NNN``. So ``prepare`` runs MTCNN once per original, stores the track beside the index
(``OUT/tracks/NNN.json``: box, landmarks and probability per sampled frame, and the
original's crop file), and every manipulation of ``NNN`` reuses it for the same frame
indices. Reuse is verified, not trusted: MTCNN's last stage (O-Net, ~0.3 ms a crop on a
CPU) looks at each reused box on the *fake's* frame; the box must still score as a face
and O-Net's box regression must stay on it. Frames that fail, or that the track has no
face for, go back to full detection. A passing crop's aligned source is the original's
crop itself (same frame, same box), so it is linked instead of decoded and cut again.
Used by ``python -m dfcourse prepare --ffpp`` (notebooks/01_data_prep.ipynb).
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .faces import Face, box_iou, crop, square_box
from .io import atomic_path, save_image
from .video import read_frames

MIN_PROB = 0.9  # O-Net face probability of a reused box (MTCNN's own O-Net threshold: 0.7)
MIN_IOU = 0.7   # IoU of O-Net's regressed box with the reused box; a 25%-of-side shift gives ~0.6


@dataclass
class Track:
    """One original's faces per sampled frame (``None``: no face there) and its crop files."""

    faces: dict[int, Face | None]
    crops: dict[int, Path] = field(default_factory=dict)
    size: int = 0  # side of the crop files

    def reference(self, idx: int) -> np.ndarray | None:
        """The track's box at the sampled frame nearest to ``idx`` (for choosing a face there)."""
        have = [i for i, f in self.faces.items() if f is not None]
        if not have:
            return None
        return self.faces[min(have, key=lambda i: (abs(i - idx), i))].box


def save_track(path, track: Track) -> Path:
    """Write a track as JSON, crop files relative to its folder, atomically."""
    path = Path(path)
    frames = []
    for idx, face in sorted(track.faces.items()):
        entry = {"frame_idx": idx, "box": None, "landmarks": None, "prob": None, "crop": ""}
        if face is not None:
            entry.update(box=np.asarray(face.box).tolist(), landmarks=np.asarray(face.landmarks).tolist(),
                         prob=face.prob)
        if idx in track.crops:
            entry["crop"] = os.path.relpath(Path(track.crops[idx]).resolve(), path.parent.resolve())
        frames.append(entry)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"size": track.size, "frames": frames}))
    return path


def load_track(path) -> Track:
    path = Path(path)
    data = json.loads(path.read_text())
    faces, crops = {}, {}
    for e in data["frames"]:
        idx = int(e["frame_idx"])
        faces[idx] = None if e["box"] is None else Face(np.array(e["box"], np.float32),
                                                       np.array(e["landmarks"], np.float32), float(e["prob"]))
        if e["crop"]:
            crops[idx] = path.parent / e["crop"]
    return Track(faces, crops, int(data["size"]))


def choose_face(faces: list[Face], ref) -> Face | None:
    """The face overlapping ``ref`` most (the largest if none overlaps), as :func:`face_track` does."""
    if not faces:
        return None
    if ref is None:
        return faces[0]
    best = max(faces, key=lambda f: (box_iou(f.box, ref), f.area))
    return best if box_iou(best.box, ref) > 0 else faces[0]


class FaceCheck:
    """MTCNN's O-Net on given boxes: ``check(onet_inputs, boxes)`` -> a bool per box, True
    where a face is still there (probability >= ``min_prob``) and O-Net's refined box keeps
    IoU >= ``min_iou`` with the given one. facenet-pytorch's O-Net with its shipped weights.
    It runs in the main process: worker processes only cut the inputs (:func:`onet_input`),
    so they never import torch."""

    def __init__(self, min_prob: float = MIN_PROB, min_iou: float = MIN_IOU):
        from facenet_pytorch.models.mtcnn import ONet

        self.onet = ONet().eval()
        self.min_prob, self.min_iou = min_prob, min_iou
        self.crops_seen = 0

    def __call__(self, x, boxes) -> np.ndarray:
        import torch

        if not len(boxes):
            return np.zeros(0, bool)
        self.crops_seen += len(boxes)
        x = (torch.from_numpy(np.asarray(x)).permute(0, 3, 1, 2).float() - 127.5) * 0.0078125
        with torch.no_grad():
            reg, _, prob = self.onet(x)
        squares = np.array([_square(b) for b in boxes])
        side = (squares[:, 2] - squares[:, 0] + 1)[:, None]
        refined = squares + reg.numpy() * side  # MTCNN's bbreg
        ious = np.array([box_iou(r, b) for r, b in zip(refined, boxes)])
        return (prob[:, 1].numpy() >= self.min_prob) & (ious >= self.min_iou)


def onet_input(frame, box) -> np.ndarray:
    """O-Net's view of ``box`` in ``frame``, as MTCNN prepares it: the box made square,
    cut out (black outside the frame), area-resampled to 48x48 uint8."""
    return crop(frame, _square(box).round().astype(int), 48)


def _square(box) -> np.ndarray:
    """MTCNN's ``rerec``: the square with the box's centre and larger side."""
    x1, y1, x2, y2 = [float(v) for v in box]
    side = max(x2 - x1, y2 - y1)
    x1, y1 = x1 + (x2 - x1 - side) / 2, y1 + (y2 - y1 - side) / 2
    return np.array([x1, y1, x1 + side, y1 + side])


def crop_row(vdir, idx: int, frame, square, size: int, source=None, source_file=None, mask=None) -> dict:
    """Write one frame's face crop (and its aligned source and mask crops) into ``vdir``;
    returns its index row. ``source_file`` is an existing crop of the source with this very
    box: it is linked (hard link, else copied) instead of cutting ``source`` again."""
    vdir = Path(vdir)
    row = dict(frame_idx=idx, box=" ".join(map(str, square)), mask_path="", source_path="")
    row["path"] = str(save_image(vdir / f"{idx:04d}.png", crop(frame, square, size)))
    if source_file is not None:
        row["source_path"] = str(_link(source_file, vdir / f"{idx:04d}_source.png"))
    elif source is not None:
        row["source_path"] = str(save_image(vdir / f"{idx:04d}_source.png", crop(source, square, size)))
    if mask is not None:
        m = crop(np.maximum(np.maximum(mask[..., 0], mask[..., 1]), mask[..., 2]), square, size)  # = max(-1), ~10x faster
        row["mask_path"] = str(save_image(vdir / f"{idx:04d}_mask.png",
                                          np.where(m > 127, 255, 0).astype(np.uint8)))
    return row


def _link(src, dst) -> Path:
    with atomic_path(dst) as tmp:
        try:
            os.link(src, tmp)
        except OSError:  # no hard links on this file system
            shutil.copyfile(src, tmp)
    return Path(dst)


def reuse_track(job, track: Track, num_frames: int, size: int) -> dict:
    """The worker side of a fake whose original has a track: decode the fake (and mask) and
    write every crop the track has a box for, its source linked to the original's crop.
    These crops are provisional until :func:`settle` has checked them. Returns ``rows``,
    ``checks`` (O-Net inputs, one per row), ``todo`` (frames the track has no face for:
    ``(frame_idx, frame, source_frame, mask_frame)``) and ``frames`` (how many decoded)."""
    frames = read_frames(job.path, num_frames)
    masks = dict(read_frames(job.mask, num_frames)) if job.mask is not None else {}

    def linkable(i):
        return track.size == size and i in track.crops and track.crops[i].is_file()

    boxed = [i for i, _ in frames if track.faces.get(i) is not None]
    sources = {}
    if job.source is not None and (len(boxed) < len(frames) or not all(map(linkable, boxed))):
        sources = dict(read_frames(job.source, num_frames))  # some source crop must be cut afresh
    rows, checks, todo = [], [], []
    for i, frame in frames:
        face = track.faces.get(i)
        if face is None:
            todo.append((i, frame, sources.get(i), masks.get(i)))
            continue
        rows.append(crop_row(job.vdir, i, frame, square_box(face.box), size, source=sources.get(i),
                             source_file=track.crops[i] if linkable(i) else None, mask=masks.get(i)))
        checks.append(onet_input(frame, face.box))
    checks = np.stack(checks) if checks else np.zeros((0, 48, 48, 3), np.uint8)
    return dict(rows=rows, checks=checks, todo=todo, frames=len(frames))


def settle(job, res: dict, track: Track, check: FaceCheck, detect, num_frames: int) -> tuple[list, int]:
    """The main side of :func:`reuse_track`: O-Net checks every provisional crop; the frames
    that fail are decoded again (fake, original, mask) and, with the frames the track had no
    face for, handed to ``detect(todo) -> rows``. Returns (rows, number of failed checks)."""
    rows, todo = res["rows"], list(res["todo"])
    passed = check(res["checks"], [track.faces[r["frame_idx"]].box for r in rows])
    failed = {r["frame_idx"] for r, ok in zip(rows, passed) if not ok}
    if failed:
        for r in rows:  # provisional files of failed crops: gone unless detection rewrites them
            if r["frame_idx"] in failed:
                for c in ("path", "source_path", "mask_path"):
                    if r[c]:
                        Path(r[c]).unlink(missing_ok=True)
        rows = [r for r in rows if r["frame_idx"] not in failed]
        extra = {name: dict(read_frames(p, num_frames)) if p is not None else {}
                 for name, p in (("source", job.source), ("mask", job.mask))}
        todo += [(i, f, extra["source"].get(i), extra["mask"].get(i))
                 for i, f in read_frames(job.path, num_frames) if i in failed]
    rows = rows + (detect(sorted(todo, key=lambda t: t[0])) if todo else [])
    return sorted(rows, key=lambda r: r["frame_idx"]), len(failed)
