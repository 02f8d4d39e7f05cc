"""FaceForensics++ (and plain-folder datasets) to face crops plus the index CSV.

FF++ layout::

    ROOT/original_sequences/youtube/<c0|c23|c40>/videos/NNN.mp4
    ROOT/manipulated_sequences/<Method>/<comp>/videos/NNN_MMM.mp4
    ROOT/manipulated_sequences/<Method>/masks/videos/NNN_MMM.mp4     (optional)

A fake ``NNN_MMM`` is target video ``NNN`` changed with source ``MMM`` (MMM's face for
Deepfakes, FaceSwap, FaceShifter; MMM's expressions for Face2Face, NeuralTextures): it is frame-aligned
with original ``NNN``, so the aligned source of each fake crop is the same box cut
from ``NNN``. Mask frames are cut with the fake's box too.
Used in notebooks/01_data_prep.ipynb; ``python -m dfcourse prepare``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .faces import FaceDetector, crop, face_track, square_box
from .index import FRACTIONS, SPLITS, split_groups, write_index
from .io import (IMAGE_EXTS, BadInputError, SkipLog, atomic_path, check_positive, list_files, make_out_dir,
                 read_image, remove_stale_temp, safe_stem, save_image, short_hash)
from .video import read_frames

METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter")
LAYOUT_HELP = ("expected ROOT/original_sequences/youtube/<c0|c23|c40>/videos/NNN.mp4 and "
               "ROOT/manipulated_sequences/<Method>/<comp>/videos/NNN_MMM.mp4 "
               "(the layout FF++'s download script writes)")
DOWNLOAD_HELP = "FF++'s download script: download-FaceForensics.py ROOT -d {method} -c {comp} -t {kind}"


def resolve_methods(names) -> tuple[str, ...]:
    """FF++ method names matched case-insensitively (``deepfakes`` -> ``Deepfakes``);
    an unknown name raises :class:`BadInputError` listing the valid ones."""
    by_lower = {m.lower(): m for m in METHODS}
    names = [str(n).strip() for n in names if str(n).strip()]
    unknown = [n for n in names if n.lower() not in by_lower]
    if unknown or not names:
        what = f"unknown FF++ method(s) {', '.join(unknown)}" if unknown else "no method named"
        raise BadInputError(f"--methods: {what}; choose from {', '.join(METHODS)} (comma-separated, any case).")
    return tuple(dict.fromkeys(by_lower[n.lower()] for n in names))


def discover(root, compression: str = "c23", methods=METHODS) -> dict:
    """Find the videos of an FF++ tree. Returns ``{"originals": {id: path},
    "fakes": [(method, target, source, path, mask_path_or_None)]}``."""
    root = Path(root)
    orig_root = root / "original_sequences" / "youtube"
    if not orig_root.is_dir():
        raise BadInputError(f"{root}: not a FaceForensics++ folder; {LAYOUT_HELP}.")
    orig_dir = orig_root / compression / "videos"
    if not orig_dir.is_dir():
        have = sorted(p.name for p in orig_root.iterdir() if p.is_dir())
        raise BadInputError(f"{orig_dir}: missing. Compressions present: {have or 'none'}; "
                            f"pass one of them with --compression.")
    originals = {p.stem: p for p in sorted(orig_dir.glob("*.mp4"))}
    if not originals:
        raise BadInputError(f"{orig_dir}: no .mp4 videos; {LAYOUT_HELP}.")
    fakes, absent, unmasked = [], [], []
    for method in methods:
        vdir = root / "manipulated_sequences" / method / compression / "videos"
        mdir = root / "manipulated_sequences" / method / "masks" / "videos"
        found = []
        for p in sorted(vdir.glob("*.mp4")):
            parts = p.stem.split("_")
            if len(parts) != 2:
                continue
            mask = mdir / p.name
            found.append((method, parts[0], parts[1], p, mask if mask.is_file() else None))
        if not found:
            absent.append(method)
        elif not any(f[4] for f in found):
            unmasked.append(method)
        fakes += found
    return {"originals": originals, "fakes": fakes, "absent_methods": absent, "methods_without_masks": unmasked}


def describe_missing(found, compression: str = "c23") -> list[str]:
    """One line per FF++ method that is absent or has no mask videos, saying what to download."""
    lines = [f"{m}: no videos (to add them: {DOWNLOAD_HELP.format(method=m, comp=compression, kind='videos')})"
             for m in found.get("absent_methods", [])]
    lines += [f"{m}: no mask videos, so no ground-truth masks (to add them: "
              f"{DOWNLOAD_HELP.format(method=m, comp=compression, kind='masks')})"
              for m in found.get("methods_without_masks", [])]
    return lines


def official_splits(splits_dir) -> dict:
    """``{video_id: split}`` from FF++'s ``train.json``/``val.json``/``test.json``
    (lists of ``[target, source]`` pairs): both originals and both fakes of a pair."""
    out = {}
    for split in SPLITS:
        path = Path(splits_dir) / f"{split}.json"
        if not path.is_file():
            raise BadInputError(f"{path}: missing. --splits must hold train.json, val.json, test.json "
                                "from the FaceForensics++ repository (dataset/splits).")
        try:
            pairs = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BadInputError(f"{path}: not valid JSON ({e}).") from e
        ok = isinstance(pairs, list) and all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(x, (str, int)) for x in p) for p in pairs)
        if not ok:
            raise BadInputError(f"{path}: expected a JSON list of [target, source] pairs such as "
                                '[["953", "974"], ...] (FF++\'s dataset/splits files), got something else.')
        for a, b in pairs:
            a, b = (f"{x:03d}" if isinstance(x, int) else x for x in (a, b))
            for vid in (a, b, f"{a}_{b}", f"{b}_{a}"):
                out[vid] = split
    return out


def pair_splits(originals, fakes, seed: int = 0, fractions=FRACTIONS) -> dict:
    """A deterministic split when no official one is given: originals linked by a fake
    (target and source) form one group, and every group stays in one split."""
    parent = {v: v for v in originals}

    def find(v):
        while parent.setdefault(v, v) != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    for _, t, s, _, _ in fakes:
        parent[find(t)] = find(s)
    groups = {v: find(v) for v in parent}
    by_group = split_groups(set(groups.values()), seed=seed, fractions=fractions)
    out = {v: by_group[g] for v, g in groups.items()}
    for _, t, s, _, _ in fakes:
        out[f"{t}_{s}"] = out[t]
    return out


def _process_video(path, num_frames, size, detector, out_dir, source_path=None, mask_path=None):
    """Crops for one video; for a fake, also the aligned source and mask crops."""
    frames = read_frames(path, num_frames)
    track = face_track(detector.detect([f for _, f in frames]))
    extra = {}
    for name, p in (("source", source_path), ("mask", mask_path)):
        if p is not None:
            extra[name] = dict(read_frames(p, num_frames))
    rows = []
    for (idx, frame), face in zip(frames, track):
        if face is None:
            continue
        sq = square_box(face.box)
        row = dict(frame_idx=idx, box=" ".join(map(str, sq)), mask_path="", source_path="")
        row["path"] = str(save_image(out_dir / f"{idx:04d}.png", crop(frame, sq, size)))
        if idx in extra.get("source", {}):
            row["source_path"] = str(save_image(out_dir / f"{idx:04d}_source.png",
                                                crop(extra["source"][idx], sq, size)))
        if idx in extra.get("mask", {}):
            m = crop(extra["mask"][idx].max(-1), sq, size)
            row["mask_path"] = str(save_image(out_dir / f"{idx:04d}_mask.png",
                                              np.where(m > 127, 255, 0).astype(np.uint8)))
        rows.append(row)
    if not rows:
        raise BadInputError(f"{path}: no face found in any of {len(frames)} sampled frames.")
    return rows


def prepare_ffpp(root, out, num_frames: int = 32, size: int = 224, compression: str = "c23",
                 splits_dir=None, methods=METHODS, seed: int = 0, device="cpu") -> Path:
    """Face crops, aligned source crops and mask crops for every FF++ video, plus
    ``out/index.csv`` and ``out/skipped.csv``. Re-running skips finished videos."""
    num_frames, size = check_positive("--frames", num_frames), check_positive("--size", size, 8)
    methods = resolve_methods(methods)
    found = discover(root, compression, methods)
    originals, fakes = found["originals"], found["fakes"]
    split = official_splits(splits_dir) if splits_dir else pair_splits(originals, fakes, seed)
    for line in describe_missing(found, compression):
        print(line)
    out = make_out_dir(out)
    remove_stale_temp(out)  # left by a run that was killed
    jobs = [("original", v, v, p, None, None) for v, p in originals.items()]
    jobs += [(m, f"{t}_{s}", t, p, originals.get(t), mp) for m, t, s, p, mp in fakes]
    detector = FaceDetector(device=device)
    skipped, rows = SkipLog(), []
    for method, vid, _, path, source, mask in tqdm(jobs, desc="videos"):
        if vid not in split:
            skipped.add(path, f"video {vid} is in none of the given splits")
            continue
        vdir = out / "crops" / method / vid
        state = dict(format=2, num_frames=num_frames, size=size, source=source is not None,
                     mask=mask is not None)
        video_rows = _load_done(vdir, state, skipped)
        if video_rows is None:
            try:
                video_rows = _process_video(path, num_frames, size, detector, vdir, source, mask)
            except BadInputError as e:
                skipped.add(path, str(e))
                continue
            _save_done(vdir, state, video_rows)
        for r in video_rows:
            rows.append(dict(r, label=int(method != "original"), method=method, video_id=vid,
                             split=split[vid]))
    return _finish(rows, out, skipped)


# Resume state: ``done.json`` in each video's crop folder records the settings it was made
# with and its rows, with file names relative to that folder (so the output folder can be
# moved). It is written last, so a video without it is redone from scratch.
DONE = "done.json"
_PATHS = ("path", "source_path", "mask_path")


def _load_done(vdir, state, skipped) -> list | None:
    """The rows of a video finished by an earlier run with the same settings, else None
    (and the folder's old crops are removed). Rows whose crop files are gone are dropped
    and listed in ``skipped``."""
    done = vdir / DONE
    try:
        saved = json.loads(done.read_text())
    except (OSError, ValueError):
        saved = None
    if not (isinstance(saved, dict) and saved.get("state") == state and isinstance(saved.get("rows"), list)):
        _clear_video_dir(vdir)  # absent, unfinished, or made with other settings
        return None
    rows = []
    for r in saved["rows"]:
        r = dict(r, **{c: str(vdir / r[c]) if r.get(c) else "" for c in _PATHS})
        gone = [r[c] for c in _PATHS if r[c] and not Path(r[c]).is_file()]
        if gone:
            skipped.add(gone[0], f"crop file missing (deleted after an earlier run); to redo this "
                                 f"video delete {done}")
        else:
            rows.append(r)
    return rows


def _save_done(vdir, state, rows) -> None:
    rel = [dict(r, **{c: os.path.relpath(r[c], vdir) if r.get(c) else "" for c in _PATHS}) for r in rows]
    with atomic_path(vdir / DONE) as tmp:
        tmp.write_text(json.dumps({"state": state, "rows": rel}))


def _clear_video_dir(vdir) -> None:
    """Remove what an unfinished or outdated run left in a video's crop folder."""
    if vdir.is_dir():
        for p in vdir.iterdir():
            if p.is_file() and (p.suffix == ".png" or p.name == DONE):
                p.unlink()


def prepare_folder(root, out, size: int = 224) -> Path:
    """A plain dataset ``ROOT/<split>/{real,fake}/*.jpg|png`` (already face crops):
    resized square copies plus the index. ``val`` may also be called ``valid``/``validation``.

    Each crop is named after its file plus a short hash of its path inside the class folder,
    so ``a.jpg`` and ``a.png`` (or ``s1/x.jpg`` and ``s2/x.jpg``) stay two crops. An output
    folder inside ``ROOT`` is never read as input."""
    size = check_positive("--size", size, 8)
    root = Path(root)
    if not root.is_dir():
        raise BadInputError(f"{root}: no such folder; expected ROOT/<train|val|test>/<real|fake>/*.jpg")
    out = make_out_dir(out)
    remove_stale_temp(out)
    aliases = {"train": ["train"], "val": ["val", "valid", "validation"], "test": ["test"]}
    skipped, rows = SkipLog(), []
    found_any = False
    for split, names in aliases.items():
        sdir = next((root / n for n in names if (root / n).is_dir()), None)
        if sdir is None:
            continue
        for label, cls in ((0, "real"), (1, "fake")):
            cdir = sdir / cls
            files = list_files(cdir, IMAGE_EXTS, skipped, exclude=out) if cdir.is_dir() else []
            found_any |= bool(files)
            for p in tqdm(files, desc=f"{split}/{cls}", leave=False):
                rel = p.relative_to(cdir).as_posix()
                name = f"{safe_stem(p.stem)}-{short_hash(rel)}"
                dst = out / "crops" / split / cls / f"{name}.png"
                if not _crop_ok(dst, size):  # absent, or made with another --size
                    try:
                        img = read_image(p)
                    except BadInputError as e:
                        skipped.add(p, str(e))
                        continue
                    save_image(dst, _center_square(img, size))
                rows.append(dict(path=dst, label=label, method="original" if label == 0 else "fake",
                                 video_id=f"{split}{cls}{name.replace('_', '')}", frame_idx=0, split=split))
    if not found_any:
        raise BadInputError(f"{root}: no images found; expected ROOT/<train|val|test>/<real|fake>/*.jpg")
    return _finish(rows, out, skipped)


def _crop_ok(path, size) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.size == (size, size)
    except (OSError, ValueError):
        return False


def _center_square(img, size):
    import cv2

    h, w = img.shape[:2]
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return cv2.resize(img[y:y + s, x:x + s], (size, size), interpolation=cv2.INTER_AREA)


def _finish(rows, out, skipped) -> Path:
    skipped.write(out / "skipped.csv")
    if len(skipped):
        print(skipped.summary())
    if not rows:
        raise BadInputError(f"no usable items; see {out / 'skipped.csv'}")
    return write_index(rows, out / "index.csv")
