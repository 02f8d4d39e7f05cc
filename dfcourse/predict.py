"""Single-image (and video, and folder) inference: faces found by MTCNN, each classified
REAL/FAKE with the probability of fake, optionally with a Grad-CAM overlay per face.

``python -m dfcourse predict PATH... [--checkpoint CKPT] [--json] [--heatmap DIR]
[--localize [--localizer CKPT]]``. A video's overlays are of its most suspicious frame.
Used in notebooks 02 and 05 (the upload demo).
"""
from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

from . import viz
from .cam import compute_cams
from .checkpoints import checkpoint_path, load
from .course import project_root
from .datasets import to_tensor
from .faces import FaceDetector, crop, face_track, square_box
from .io import (IMAGE_EXTS, MAX_SIDE, VIDEO_EXTS, BadInputError, SkipLog, list_files, make_out_dir,
                 original_scale, read_image, save_image, short_hash)
from .localization import localize
from .video import read_frames


def default_checkpoint() -> Path:
    """Where notebook 02 saves the detector it recommends."""
    return checkpoint_path(project_root(), "detector")


class Predictor:
    """A trained detector plus MTCNN. ``predict_image(rgb)`` -> one dict per face, labelled FAKE
    when p(fake) reaches the checkpoint's ``threshold`` (notebook 02 saves the one at which 5 % of
    its shifted validation reals are called fake; 0.5 when a checkpoint has none)."""

    def __init__(self, checkpoint=None, device="cpu", net=None, size=None, detector=None, localizer=None,
                 threshold=None):
        self.net = net if net is not None else load(checkpoint or default_checkpoint(), "detector", device)
        self.size = size or getattr(self.net, "meta", {}).get("size", 224)
        # the operating point notebook 02 chose on validation (older checkpoints: 0.5)
        self.threshold = float(threshold if threshold is not None else getattr(self.net, "meta", {}).get("threshold", 0.5))
        self.device = device
        self.detector = detector or FaceDetector(device=device)
        self.localizer = localizer  # a notebook-04 model: adds a manipulation map per face
        self.loc_size = getattr(localizer, "meta", {}).get("size", self.size) if localizer is not None else None

    @torch.no_grad()
    def classify(self, faces) -> np.ndarray:
        """Probability of fake for face crops (RGB uint8, any size)."""
        import cv2

        if not len(faces):
            return np.zeros(0)
        x = torch.stack([to_tensor(cv2.resize(f, (self.size, self.size), interpolation=cv2.INTER_AREA))
                         for f in faces]).to(self.device)
        self.net.eval()
        return torch.sigmoid(self.net(x).float().reshape(len(x), -1)[:, 0]).cpu().numpy()

    def heatmaps(self, faces, method="gradcam") -> np.ndarray:
        import cv2

        x = torch.stack([to_tensor(cv2.resize(f, (self.size, self.size), interpolation=cv2.INTER_AREA))
                         for f in faces])
        return compute_cams(self.net, x, method)

    def predict_image(self, image, with_heatmap: bool = False) -> list[dict]:
        """One dict per face: ``box`` (x1 y1 x2 y2), ``label``, ``prob_fake``, ``face``
        (the crop) and, when asked, ``heatmap`` in [0, 1] at crop size."""
        faces = self.detector.detect_one(image)
        crops = [crop(image, square_box(f.box), self.size) for f in faces]
        probs = self.classify(crops)
        cams = self.heatmaps(crops) if with_heatmap and crops else [None] * len(crops)
        out = [{"box": [round(float(v), 1) for v in f.box], "label": "FAKE" if p >= self.threshold else "REAL",
                "prob_fake": float(p), "face_prob": float(f.prob), "face": c, "heatmap": h}
               for f, c, p, h in zip(faces, crops, probs, cams)]
        if self.localizer is not None:
            for o in out:
                o.update(self._localize(o["face"]))
        return out

    def _localize(self, face) -> dict:
        """The localizer on one crop; its map resized to the crop (the two models' input
        sizes may differ), so that it overlays the crop."""
        import cv2

        loc = localize(self.localizer, face, self.loc_size, self.device)
        heat = cv2.resize(loc["map"], face.shape[1::-1], interpolation=cv2.INTER_LINEAR)
        return dict(loc_label=loc["label"], loc_prob_fake=loc["prob_fake"], map=heat,
                    map_area=float((loc["map"] > 0.5).mean()))

    def predict_video(self, path, num_frames: int = 16, with_heatmap: bool = False) -> dict:
        """Per-frame scores of the tracked face and the video-level score (their mean); with
        a localizer, its per-frame scores and their mean too. With ``with_heatmap``,
        ``overlay`` holds the most suspicious frame's crop, its Grad-CAM and (with a
        localizer) its map, for :func:`run` to write."""
        frames = read_frames(path, num_frames)
        track = face_track(self.detector.detect([f for _, f in frames]))
        kept = [(i, crop(f, square_box(t.box), self.size)) for (i, f), t in zip(frames, track) if t is not None]
        probs = self.classify([c for _, c in kept])
        per_frame = [{"frame_idx": i, "prob_fake": float(p)} for (i, _), p in zip(kept, probs)]
        maps = []
        if self.localizer is not None:
            for entry, (_, face) in zip(per_frame, kept):
                loc = self._localize(face)
                maps.append(loc.pop("map"))
                entry.update(loc)
        out = {"frames": per_frame, "frames_without_face": len(frames) - len(kept)}
        if per_frame:
            v = float(np.mean(probs))
            out.update(video_prob_fake=v, label="FAKE" if v >= self.threshold else "REAL")
            if self.localizer is not None:
                out["video_loc_prob_fake"] = float(np.mean([f["loc_prob_fake"] for f in per_frame]))
            if with_heatmap:
                k = int(np.argmax(probs))
                out["overlay"] = {"frame_idx": kept[k][0], "face": kept[k][1],
                                  "heatmap": self.heatmaps([kept[k][1]])[0], "map": maps[k] if maps else None}
        return out


def expand_paths(paths, exclude=None) -> tuple[list[Path], SkipLog]:
    """Files to predict on: each path, or a folder's images and videos (``exclude``, the
    overlay folder, left out); and what a folder held that cannot be used, with the reason
    (dangling links, link loops, unreadable folders, earlier dfcourse outputs: see
    :func:`dfcourse.io.list_files`), so that nothing vanishes from the output."""
    out, skipped = [], SkipLog()
    for p in map(Path, paths):
        if p.is_dir():
            out += list_files(p, IMAGE_EXTS | VIDEO_EXTS, skipped, exclude=exclude)
        else:
            out.append(p)
    return out, skipped


def default_localizer() -> Path:
    return checkpoint_path(project_root(), "localizer")


class CheckpointError(ValueError):
    """A checkpoint that loads but cannot give usable scores (NaN or infinite)."""


FIX = {"detector": "Retrain it (notebooks/02) or pass another --checkpoint.",
       "localizer": "Retrain it (notebooks/04) or pass another --localizer."}


def check_finite(net, checkpoint, kind: str = "detector") -> None:
    """Refuse a model whose weights are NaN or infinite (a diverged training run), naming it."""
    bad = [k for k, t in net.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise CheckpointError(f"{checkpoint}: {len(bad)} weight tensor(s) are NaN or infinite (e.g. {bad[0]}); "
                              f"the training run that saved it diverged. {FIX[kind]}")


def check_input_size(net, size, checkpoint, kind: str = "detector") -> None:
    """Refuse a checkpoint whose saved input size is no usable image side, or on which its
    model cannot run (one forward pass on a blank image), blaming the checkpoint, not the photo."""
    if isinstance(size, bool) or not isinstance(size, int) or not 8 <= size <= MAX_SIDE:
        raise CheckpointError(f"{checkpoint}: its saved input size is {size!r}, not an image side in "
                              f"8..{MAX_SIDE} px; the checkpoint is damaged or was not written by dfcourse. "
                              f"{FIX[kind]}")
    device = next(net.parameters()).device
    try:
        with torch.no_grad():
            net.eval()(torch.zeros(1, 3, size, size, device=device))
    except (RuntimeError, ValueError) as e:
        raise CheckpointError(f"{checkpoint}: its model cannot run on its saved input size {size} px "
                              f"({e.__class__.__name__}); the checkpoint is damaged. {FIX[kind]}") from None


def output_stems(files) -> dict:
    """A name per input for its output files: the stem (cut to 100 characters, so a long
    name stays under the file-name limit), plus a short hash of the full path when two
    inputs share it (``a.jpg`` and ``a.png``), so no overlay overwrites another."""
    stems = [Path(f).stem[:100] for f in files]
    return {f: s if stems.count(s) == 1 else f"{s}-{short_hash(Path(f).absolute())}" for f, s in zip(files, stems)}


def run(paths, checkpoint=None, as_json=False, heatmap_dir=None, device="cpu", num_frames=16,
        localize=False, localizer=None) -> int:
    """The ``predict`` command. Exit code 0 unless nothing could be scored.
    A problem with one input (unreadable, too small, or its overlay cannot be written) is
    reported for that input and the others go on; with ``--json`` every input gets an
    entry, and so does each thing a folder held that could not be used (a link loop, an
    unreadable sub-folder, an earlier output). ``--localizer`` alone implies ``--localize``."""
    loc_net = None
    if localizer is not None and not localize:  # a file given is a file meant: use it, and say so
        print(f"predict: --localizer {localizer} given without --localize; localizing with it "
              "(add --localize to say so).", file=sys.stderr)
        localize = True
    if localize:
        localizer = localizer or default_localizer()
        loc_net = load(localizer, "localizer", device)
        check_finite(loc_net, localizer, "localizer")
    predictor = Predictor(checkpoint, device=device, localizer=loc_net)
    checkpoint = checkpoint or default_checkpoint()
    check_finite(predictor.net, checkpoint)
    check_input_size(predictor.net, predictor.size, checkpoint)
    if loc_net is not None:
        check_input_size(loc_net, predictor.loc_size, localizer, "localizer")
    files, skipped = expand_paths(paths, exclude=heatmap_dir)
    if heatmap_dir is not None:  # marked as an output, so no later run reads its overlays as input;
        with contextlib.suppress(BadInputError):  # one that cannot be written is reported per input
            make_out_dir(heatmap_dir, "--heatmap")
    stems = output_stems(files)
    results, ok = [], 0
    try:
        for item, reason in skipped.items:  # what a folder held that cannot be used: listed first
            results.append({"path": item, "error": f"{item}: {reason}"})
            if not as_json:
                print(_format(results[-1]))
        for path in files:
            res = {"path": str(path)}
            try:
                try:
                    _predict_one(predictor, path, res, heatmap_dir, stems[path], num_frames)
                finally:  # scores computed before an error are checked too: no NaN is ever printed
                    for probs, ckpt, kind in ((_probs(res), checkpoint, "detector"),
                                              (_probs(res, "loc_prob_fake"), localizer, "localizer")):
                        if not all(np.isfinite(p) for p in probs):
                            raise CheckpointError(f"{ckpt}: gives NaN or infinite scores on {path}; the {kind} "
                                                  f"checkpoint is broken. {FIX[kind]}")
                ok += 1
            except CheckpointError:
                raise
            except BadInputError as e:
                res["error"] = str(e)
            except OSError as e:  # an overlay could not be written; the scores stand
                res["error"] = (f"cannot write {e.filename or heatmap_dir} ({e.strerror or e}); give --heatmap "
                                "a writable folder.")
                ok += bool(_probs(res))
            except Exception as e:  # anything else: report it for this file and go on
                res["error"] = f"{path}: unexpected {e.__class__.__name__}: {e}"
            results.append(res)
            if not as_json:
                print(_format(res))
    finally:  # even when interrupted, every result so far is printed
        if as_json:
            print(json.dumps(results, indent=2))
    if not files and not skipped:
        print("predict: no image or video files found in the given paths")
    return 0 if ok else 1


def _predict_one(predictor, path, res, heatmap_dir, stem, num_frames) -> None:
    """Fill ``res`` for one image or video; overlays go to ``heatmap_dir/<stem>_face<k>_*.png``."""
    if path.suffix.lower() in VIDEO_EXTS:
        try:
            res.update(kind="video", **predictor.predict_video(path, num_frames, with_heatmap=heatmap_dir is not None))
        except BadInputError as e:  # e.g. frames too small for MTCNN: name the video
            raise BadInputError(f"{path}: {e}") from None
        if not res["frames"]:
            res["note"] = "no face found"
        shown = res.pop("overlay", None)  # the most suspicious frame's overlays
        if shown is not None:
            res["overlay_frame_idx"] = shown["frame_idx"]
            out = Path(heatmap_dir) / f"{stem}_frame{shown['frame_idx']}_gradcam.png"
            res["heatmap_path"] = str(save_image(out, viz.overlay(shown["face"], shown["heatmap"])))
            if shown["map"] is not None:
                out = Path(heatmap_dir) / f"{stem}_frame{shown['frame_idx']}_localization.png"
                res["map_path"] = str(save_image(out, viz.overlay(shown["face"], shown["map"])))
        return
    image = read_image(path)  # a very large photo comes back downscaled ...
    scale = original_scale(path, image)  # ... and its boxes are given in the photo's own pixels
    try:
        faces = predictor.predict_image(image, with_heatmap=heatmap_dir is not None)
    except BadInputError as e:  # e.g. too small for MTCNN: name the photo
        raise BadInputError(f"{path}: {e}") from None
    res.update(kind="image", faces=[])
    for f in faces:  # the scores first: they are kept even if an overlay cannot be written
        entry = {k2: v for k2, v in f.items() if k2 not in ("face", "heatmap", "map")}
        entry["box"] = [round(v * scale, 1) for v in entry["box"]]
        res["faces"].append(entry)
    if not faces:
        res["note"] = "no face found"
    for k, (f, entry) in enumerate(zip(faces, res["faces"])):
        if heatmap_dir is not None:
            out = Path(heatmap_dir) / f"{stem}_face{k}_gradcam.png"
            entry["heatmap_path"] = str(save_image(out, viz.overlay(f["face"], f["heatmap"])))
            if "map" in f:
                out = Path(heatmap_dir) / f"{stem}_face{k}_localization.png"
                entry["map_path"] = str(save_image(out, viz.overlay(f["face"], f["map"])))


def _probs(res, key: str = "prob_fake") -> list[float]:
    return [f[key] for f in res.get("faces", []) + res.get("frames", []) if key in f]


def _format(res) -> str:
    if "error" in res:  # scores that were computed before the error are still shown
        scores = (_format({k: v for k, v in res.items() if k != "error"})
                  if res.get("faces") or res.get("frames") else "")
        return (scores + "\n" if scores else "") + f"{res['path']}: ERROR {res['error']}"
    if res.get("note"):
        return f"{res['path']}: {res['note']}"
    if res["kind"] == "video":
        return (f"{res['path']}: video {res['label']} p(fake)={res['video_prob_fake']:.3f} "
                f"(mean of {len(res['frames'])} frames; video level)"
                + (f" | localizer p(fake)={res['video_loc_prob_fake']:.3f} (mean of the frames)"
                   if "video_loc_prob_fake" in res else "")
                + (f" | overlays of frame {res['overlay_frame_idx']} (its most suspicious): {res['heatmap_path']}"
                   + (f", {res['map_path']}" if "map_path" in res else "") if "heatmap_path" in res else ""))
    return "\n".join(f"{res['path']}: face {k} box {f['box']} {f['label']} p(fake)={f['prob_fake']:.3f}"
                     + (f" | localizer {f['loc_label']} p(fake)={f['loc_prob_fake']:.3f}, "
                        f"{100 * f['map_area']:.1f}% of the face flagged" if "loc_label" in f else "")
                     + (f" heatmap {f['heatmap_path']}" if "heatmap_path" in f else "")
                     for k, f in enumerate(res["faces"]))
