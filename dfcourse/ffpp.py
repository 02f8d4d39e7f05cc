"""FaceForensics++ (and plain-folder datasets) to face crops plus the index CSV.

FF++ layout::

    ROOT/original_sequences/youtube/<c0|c23|c40>/videos/NNN.mp4
    ROOT/manipulated_sequences/<Method>/<comp>/videos/NNN_MMM.mp4
    ROOT/manipulated_sequences/<Method>/masks/videos/NNN_MMM.mp4     (optional)

A fake ``NNN_MMM`` is target video ``NNN`` changed with source ``MMM`` (MMM's face for
Deepfakes, FaceSwap, FaceShifter; MMM's expressions for Face2Face, NeuralTextures): it is frame-aligned
with original ``NNN``, so the aligned source of each fake crop is the same box cut
from ``NNN``. Mask frames are cut with the fake's box too. The same alignment lets
``prepare`` detect faces once per original and reuse that track for its fakes
(``tracks.py``), while worker processes decode and crop (``workers.py``).
Used in notebooks/01_data_prep.ipynb; ``python -m dfcourse prepare``.
"""
from __future__ import annotations

import json
import os
import time
from collections import Counter, deque
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from tqdm.auto import tqdm

from .faces import FaceDetector, face_track, square_box
from .index import FRACTIONS, SPLITS, link_groups, split_groups, write_index
from .io import (IMAGE_EXTS, BadInputError, SkipLog, atomic_path, check_positive, file_id, list_files,
                 make_out_dir, read_image, remove_stale_temp, safe_stem, save_image, short_hash)
from .tracks import FaceCheck, Track, choose_face, crop_row, load_track, reuse_track, save_track, settle
from .video import read_frames
from .workers import Workers, default_workers

METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter")
LAYOUT_HELP = ("expected ROOT/original_sequences/youtube/<c0|c23|c40>/videos/NNN.mp4 and "
               "ROOT/manipulated_sequences/<Method>/<comp>/videos/NNN_MMM.mp4 "
               "(the layout FF++'s download script writes)")
DOWNLOAD_HELP = "FF++'s download script: download-FaceForensics.py ROOT -d {method} -c {comp} -t {kind}"


def method_names(names) -> tuple[str, ...]:
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
    "fakes": [(method, target, source, path, mask_path_or_None)], "absent_methods",
    "methods_without_masks", "unreadable": [(folder, reason)]}`` (folders that exist but
    cannot be listed: reported, not taken for absent)."""
    root = Path(root)
    orig_root = root / "original_sequences" / "youtube"
    if not orig_root.is_dir():
        raise BadInputError(f"{root}: not a FaceForensics++ folder; {LAYOUT_HELP}.")
    orig_dir = orig_root / compression / "videos"
    if not orig_dir.is_dir():
        have = sorted(p.name for p in orig_root.iterdir() if p.is_dir())
        raise BadInputError(f"{orig_dir}: missing. Compressions present: {have or 'none'}; "
                            f"pass one of them with --compression.")
    unreadable = []
    originals = {p.stem: p for p in _mp4s(orig_dir, unreadable)}
    if unreadable:
        raise BadInputError(f"{orig_dir}: {unreadable[0][1]}")
    if not originals:
        raise BadInputError(f"{orig_dir}: no .mp4 videos; {LAYOUT_HELP}.")
    fakes, absent, unmasked = [], [], []
    for method in methods:
        vdir = root / "manipulated_sequences" / method / compression / "videos"
        mdir = root / "manipulated_sequences" / method / "masks" / "videos"
        found, before = [], len(unreadable)
        masks = {p.name for p in _mp4s(mdir, unreadable) if p.is_file()}
        for p in _mp4s(vdir, unreadable):
            parts = p.stem.split("_")
            if len(parts) != 2:
                continue
            found.append((method, parts[0], parts[1], p, mdir / p.name if p.name in masks else None))
        readable = len(unreadable) == before  # an unreadable folder is reported as such, not as missing
        if readable and not found:
            absent.append(method)
        elif readable and not any(f[4] for f in found):
            unmasked.append(method)
        fakes += found
    return {"originals": originals, "fakes": fakes, "absent_methods": absent, "methods_without_masks": unmasked,
            "unreadable": unreadable}


def _mp4s(folder, unreadable) -> list[Path]:
    """The ``.mp4`` files in ``folder``, sorted; none if it does not exist. A folder that
    exists but cannot be listed is added to ``unreadable`` with the reason and the fix."""
    try:
        with os.scandir(folder) as it:
            names = sorted(e.name for e in it if e.name.endswith(".mp4"))
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as e:
        unreadable.append((folder, f"cannot read this folder ({e.strerror or e}), so its videos were not used. "
                                   f"Make it readable (chmod -R u+rX '{folder}')."))
        return []
    return [Path(folder) / n for n in names]


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
    (target and source) form one group (:func:`dfcourse.index.link_groups`), and every
    group stays in one split."""
    groups = link_groups(originals, [(t, s) for _, t, s, _, _ in fakes])
    by_group = split_groups(set(groups.values()), seed=seed, fractions=fractions)
    out = {v: by_group[g] for v, g in groups.items()}
    for _, t, s, _, _ in fakes:
        out[f"{t}_{s}"] = out[t]
    return out


@dataclass(frozen=True)
class VideoJob:
    """One video to crop into ``vdir``; a fake also names its original (``source``) and mask."""

    method: str
    vid: str
    target: str
    path: Path
    source: Path | None
    mask: Path | None
    vdir: Path


def decode_video(job: VideoJob, num_frames: int):
    """Worker side of a video to detect: its sampled frames, and the original's and mask's."""
    frames = read_frames(job.path, num_frames)
    extra = {name: dict(read_frames(p, num_frames))
             for name, p in (("source", job.source), ("mask", job.mask)) if p is not None}
    return frames, extra


def _detect_rows(job, frames, extra, detector, size):
    """Main side: MTCNN on every sampled frame, one face track, the crops. Returns (rows, track)."""
    track = face_track(detector.detect([f for _, f in frames]))
    src, mask = extra.get("source", {}), extra.get("mask", {})
    rows = [crop_row(job.vdir, idx, frame, square_box(face.box), size, source=src.get(idx), mask=mask.get(idx))
            for (idx, frame), face in zip(frames, track) if face is not None]
    return rows, track


def _redetect(job, todo, track, detector, size):
    """Main side of a reused track: detect the frames it could not serve, choose the face
    nearest the track, crop."""
    rows = []
    for (idx, frame, src, mask), faces in zip(todo, detector.detect([t[1] for t in todo])):
        face = choose_face(faces, track.reference(idx))
        if face is not None:
            rows.append(crop_row(job.vdir, idx, frame, square_box(face.box), size, source=src, mask=mask))
    return rows


def prepare_ffpp(root, out, num_frames: int = 32, size: int = 224, compression: str = "c23",
                 splits_dir=None, methods=METHODS, seed: int = 0, device="cpu", workers=None,
                 reuse_tracks: bool = True) -> Path:
    """Face crops, aligned source crops and mask crops for every FF++ video, plus
    ``out/index.csv`` and ``out/skipped.csv``. Re-running skips finished videos.

    MTCNN runs batched in this process; ``workers`` processes (default: one per core; 0:
    none) decode and crop. Originals are detected first and their face tracks stored in
    ``out/tracks/``; with ``reuse_tracks`` each fake of a detected original reuses that
    track, checked per crop (see ``tracks.py``). Rows come out in the same order for any
    ``workers``. Prints a summary (frames/s, MTCNN frames, reuse) and writes it to
    ``out/prepare_stats.json``. Workers are spawned processes: in a script of your own,
    call this under ``if __name__ == "__main__":`` (notebooks and the CLI need nothing).
    """
    num_frames, size = check_positive("--frames", num_frames), check_positive("--size", size, 8)
    workers = default_workers() if workers is None else check_positive("--workers", workers, 0)
    methods = method_names(methods)
    found = discover(root, compression, methods)
    originals, fakes = found["originals"], found["fakes"]
    split = official_splits(splits_dir) if splits_dir else pair_splits(originals, fakes, seed)
    for line in describe_missing(found, compression):
        print(line)
    out = make_out_dir(out)
    remove_stale_temp(out)  # left by a run that was killed
    jobs = [VideoJob("original", v, v, p, None, None, out / "crops" / "original" / v) for v, p in originals.items()]
    jobs += [VideoJob(m, f"{t}_{s}", t, p, originals.get(t), mp, out / "crops" / m / f"{t}_{s}")
             for m, t, s, p, mp in fakes]
    detector = FaceDetector(device=device)
    check = FaceCheck() if reuse_tracks else None
    results, errors, job_track = {}, {}, {}  # by job number
    original_job = {j.vid: k for k, j in enumerate(jobs) if j.method == "original"}
    detect_q, reuse_q, waiting = deque(), deque(), {}
    stats = Counter(dict.fromkeys(["frames", "resumed", "reused", "check_failed", "no_track"], 0))
    skipped = SkipLog()
    for folder, reason in found["unreadable"]:
        skipped.add(folder, reason)

    def state(job):  # what a finished video's done.json must match to be resumed
        return dict(format=2, num_frames=num_frames, size=size, source=job.source is not None,
                    mask=job.mask is not None)

    def release(t):  # original t is finished: its fakes reuse its track, or are detected
        track = _stored_track(out, t) if original_job[t] in results else None
        for k in waiting.pop(t, []):
            if track is None:
                detect_q.append(k)
            else:
                job_track[k] = track
                reuse_q.append(k)

    for k, job in enumerate(jobs):
        if job.vid not in split:
            errors[k] = f"video {job.vid} is in none of the given splits"
            continue
        done_rows = _load_done(job.vdir, state(job), skipped)
        if done_rows is not None:  # resumable: this video finished in an earlier run
            results[k] = done_rows
            stats["resumed"] += 1
        elif reuse_tracks and job.method != "original" and job.target in original_job:
            waiting.setdefault(job.target, []).append(k)
        else:
            detect_q.append(k)
    for t in list(waiting):
        if original_job[t] in results or original_job[t] in errors:
            release(t)

    todo_videos = len(detect_q) + len(reuse_q) + sum(map(len, waiting.values()))
    bar = tqdm(total=todo_videos * num_frames, unit="frame", desc="prepare", smoothing=0.1)
    t0 = time.perf_counter()
    with Workers(workers) as pool, bar:
        in_flight = {}
        while detect_q or reuse_q or in_flight:
            while len(in_flight) < 2 * max(workers, 1) + 2 and (reuse_q or detect_q):
                decoding = sum(k not in job_track for k in in_flight.values())
                if reuse_q:
                    k = reuse_q.popleft()
                    in_flight[pool.submit(reuse_track, jobs[k], job_track[k], num_frames, size)] = k
                elif decoding <= max(workers, 1):  # decoded frames wait for MTCNN: bound them
                    k = detect_q.popleft()
                    in_flight[pool.submit(decode_video, jobs[k], num_frames)] = k
                else:
                    break
            finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for fut in sorted(finished, key=in_flight.get):
                k = in_flight.pop(fut)
                job, n = jobs[k], 0
                try:
                    res = fut.result()
                    if k in job_track:
                        n, track = res["frames"], job_track[k]
                        detect = partial(_redetect, job, track=track, detector=detector, size=size)
                        rows, failed = settle(job, res, track, check, detect, num_frames)
                        stats.update(reused=len(res["rows"]) - failed, check_failed=failed,
                                     no_track=len(res["todo"]))
                    else:
                        frames, extra = res
                        n = len(frames)
                        rows, faces = _detect_rows(job, frames, extra, detector, size)
                    if not rows:
                        raise BadInputError(f"{job.path}: no face found in any of {n} sampled frames.")
                except BadInputError as e:
                    errors[k] = str(e)
                else:
                    rows.sort(key=lambda r: r["frame_idx"])
                    if reuse_tracks and job.method == "original":
                        save_track(out / "tracks" / f"{job.vid}.json",
                                   Track({i: f for (i, _), f in zip(frames, faces)},
                                         {r["frame_idx"]: Path(r["path"]) for r in rows}, size))
                    _save_done(job.vdir, state(job), rows)
                    results[k] = rows
                    stats["frames"] += n
                if job.method == "original":
                    release(job.vid)
                bar.total -= num_frames - n  # the estimate, corrected: some videos are shorter
                bar.update(n)
                bar.set_postfix(reused=stats["reused"], redetected=stats["check_failed"], refresh=False)
    stats.update(seconds=round(time.perf_counter() - t0, 2), workers=workers,
                 mtcnn_frames=detector.images_seen, videos=len(jobs))
    _report(stats, out)

    rows = []
    for k in sorted(errors):
        skipped.add(jobs[k].path, errors[k])
    for k in sorted(results):
        job = jobs[k]
        for r in results[k]:
            rows.append(dict(r, label=int(job.method != "original"), method=job.method,
                             video_id=job.vid, split=split[job.vid]))
    return _finish(rows, out, skipped)


def _stored_track(out, original) -> Track | None:
    path = out / "tracks" / f"{original}.json"
    try:
        return load_track(path) if path.is_file() else None
    except (ValueError, KeyError, TypeError):  # unreadable: detect its fakes instead
        return None


def _report(stats, out) -> None:
    """Print what this run did and keep it in ``out/prepare_stats.json``."""
    fps = stats["frames"] / max(stats["seconds"], 1e-9)
    checked = stats["reused"] + stats["check_failed"]
    print(f"prepare: {stats['frames']} frames of {stats['videos'] - stats['resumed']} videos in "
          f"{stats['seconds']:.1f} s ({fps:.1f} frames/s, {stats['workers']} workers; "
          f"{stats['resumed']} videos done earlier); MTCNN ran on {stats['mtcnn_frames']} frames")
    if checked or stats["no_track"]:
        print(f"track reuse: {stats['reused']} crops reused from their original's track; "
              f"{stats['check_failed']} of {checked} ({100 * stats['check_failed'] / max(checked, 1):.1f}%) "
              f"failed the O-Net check and were detected afresh; {stats['no_track']} frames had no "
              "face in the track and were detected")
    with atomic_path(out / "prepare_stats.json") as tmp:
        tmp.write_text(json.dumps(dict(stats, frames_per_s=round(fps, 2)), indent=1))


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
    so ``a.jpg`` and ``a.png`` (or ``s1/x.jpg`` and ``s2/x.jpg``) stay two crops. No output
    folder inside ``ROOT`` is read as input: this run's ``out`` is left out, and an earlier
    run's (and unreadable folders, link loops, ...) are skipped and listed in
    ``skipped.csv`` (:func:`dfcourse.io.list_files`)."""
    size = check_positive("--size", size, 8)
    root = Path(root)
    if not root.is_dir():
        raise BadInputError(f"{root}: no such folder; expected ROOT/<train|val|test>/<real|fake>/*.jpg")
    aliases = {"train": ["train"], "val": ["val", "valid", "validation"], "test": ["test"]}
    class_dirs = [root / n / c for names in aliases.values() for n in names for c in ("real", "fake")]
    if file_id(out) is not None and file_id(out) in map(file_id, class_dirs):  # refused before anything is written
        raise BadInputError(f"--out {out} is one of the input's class folders, so its images and the crops would "
                            f"mix. Choose an --out outside {root}/<split>/<real|fake>/.")
    out = make_out_dir(out)
    remove_stale_temp(out)
    skipped, rows = SkipLog(), []
    found_any = False
    for split, names in aliases.items():
        try:
            sdir = next((root / n for n in names if (root / n).is_dir()), None)
        except OSError as e:  # ROOT itself cannot be entered
            raise BadInputError(f"{root}: cannot read this folder ({e.strerror or e}). Make it readable "
                                f"(chmod -R u+rX '{root}').") from None
        if sdir is None:
            continue
        for label, cls in ((0, "real"), (1, "fake")):
            cdir = sdir / cls
            try:
                has_dir = cdir.is_dir()
            except OSError as e:  # the split folder cannot be entered: report the class folder
                has_dir = False
                skipped.add(cdir, f"cannot read this folder ({e.strerror or e}), so none of its files were used. "
                                  f"Make it readable (chmod -R u+rX '{sdir}').")
            files = list_files(cdir, IMAGE_EXTS, skipped, exclude=out) if has_dir else []
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
