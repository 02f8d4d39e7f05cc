"""Careful file I/O: images in any mode, atomic writes, and a report of skipped items.

Every reader here raises :class:`BadInputError` with the file name and what to do,
so batch jobs can skip the item, list it, and carry on.
Used in notebooks 01, 03 and 04; the others read its files through the index.
"""
from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import os
import re
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm"}
MAX_SIDE = 4096  # larger images are downscaled on read; faces do not need more
MAX_PIXELS = 2 * Image.MAX_IMAGE_PIXELS  # ~179 MP: beyond this a file is refused as a decompression bomb
TMP_MARK = ".dfctmp"  # temporary files are ``.<stem>.dfctmp<pid><suffix>``
OUTPUT_MARKER = ".dfcourse-output"  # in every output folder: batch jobs never read such a folder as input
# columns every index CSV has (a subset of index.COLUMNS, which builds on this module; a test checks)
INDEX_KEY_COLUMNS = frozenset({"path", "label", "method", "video_id", "split"})


class BadInputError(ValueError):
    """An input file or folder that cannot be used; the message names it and the fix."""


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it into place only on success.

    The temporary name keeps the suffix so writers that infer the format from it
    (``cv2.imwrite``, ``PIL.Image.save``) still work. Nothing is left half-written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a short name: a long final name must not overflow the file-name limit here
    tmp = path.with_name(f".{path.stem[:40]}{TMP_MARK}{os.getpid()}{path.suffix[:16]}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def remove_stale_temp(folder) -> int:
    """Delete temporary files under ``folder`` left by a writer that was killed (its process
    is gone); returns how many. A run that was interrupted cleans up after itself this way."""
    n = 0
    for p in Path(folder).rglob(f"*{TMP_MARK}*"):
        m = re.search(re.escape(TMP_MARK) + r"(\d+)", p.name)
        if m and p.is_file() and not _alive(int(m.group(1))):
            p.unlink(missing_ok=True)
            n += 1
    return n


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # ours, and not being written while we clean up
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def make_out_dir(path, what: str = "--out") -> Path:
    """Create the output folder ``path`` (and parents), check it is writable and mark it
    as an output (:data:`OUTPUT_MARKER`), or raise :class:`BadInputError` saying why: a
    file in the way, a read-only place, ..."""
    if not str(path).strip():
        raise BadInputError(f"{what} is empty; give a folder path.")
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise BadInputError(f"{what} {path}: this is a file, not a folder. Give a folder path "
                            "(it is created if missing).")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f"{TMP_MARK}{os.getpid()}.probe"
        probe.write_bytes(b"")
        probe.unlink()
        marker = path / OUTPUT_MARKER
        if not marker.is_file():
            marker.write_text("Written by python -m dfcourse. A folder holding this file is an output: "
                              "prepare, demo-data and predict never read it as input.\n")
    except OSError as e:
        raise BadInputError(f"{what} {path}: cannot create or write this folder "
                            f"({e.strerror or e}). Choose a writable folder.") from e
    return path


def check_positive(name: str, value, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``, else a :class:`BadInputError` naming the argument."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise BadInputError(f"{name} must be a whole number >= {minimum}, got {value!r}.")
    return int(value)


def short_hash(text, n: int = 8) -> str:
    """A stable hex digest of ``text`` (to tell apart files with the same stem)."""
    return hashlib.sha1(str(text).encode("utf-8", "surrogateescape")).hexdigest()[:n]


def safe_stem(stem: str, limit: int = 60) -> str:
    """``stem`` cut to ``limit`` characters of letters, digits, ``-`` and ``_`` (others become ``_``)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", stem)[:limit] or "file"


def to_rgb_uint8(img: Image.Image) -> np.ndarray:
    """Any PIL image (grey, palette, RGBA, CMYK, 16-bit, float) as an RGB uint8 array."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max()
        if hi > 255:  # 16-bit or wider: scale to the full 8-bit range
            arr = arr * (255.0 / (65535.0 if hi <= 65535 else hi))
        arr = np.clip(arr, 0, 255).astype(np.uint8)
        return np.stack([arr] * 3, axis=-1)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")  # composite on white rather than on undefined colours
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, rgba)
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def read_image(path, max_side: int = MAX_SIDE) -> np.ndarray:
    """Read an image file as an RGB uint8 array (H, W, 3), honouring EXIF rotation."""
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError as e:  # missing, a dangling link, a link loop, a folder we may not enter
        raise BadInputError(f"{path}: {_unusable_entry(path, e)}") from None
    if not stat.S_ISREG(st.st_mode):
        raise BadInputError(f"{path}: not a file (a folder, device or pipe); give an image file.")
    try:
        with warnings.catch_warnings():
            # a legal large photo (e.g. 10000x9000) is fine: it is downscaled below; only
            # beyond MAX_PIXELS does Pillow refuse it (DecompressionBombError)
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.size[0] * img.size[1] > MAX_PIXELS:
                    raise Image.DecompressionBombError(f"{img.size[0]}x{img.size[1]} pixels")
                img.draft("RGB", (max_side, max_side))  # cheap JPEG downscale on decode
                img.load()
                img = ImageOps.exif_transpose(img)
                if max(img.size) > max_side:
                    img.thumbnail((max_side, max_side))
                arr = to_rgb_uint8(img)
    except Image.DecompressionBombError as e:
        raise BadInputError(
            f"{path}: image is too large to decode safely ({e}; the limit is {MAX_PIXELS:,} pixels). "
            f"Downscale it below {max_side}px a side first.") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise BadInputError(
            f"{path}: cannot read this image ({e.__class__.__name__}: {e}). "
            "It may be corrupt or not an image: re-download it or remove it.") from e
    if arr.shape[0] < 8 or arr.shape[1] < 8:
        raise BadInputError(f"{path}: image is only {arr.shape[1]}x{arr.shape[0]} px; use a larger one.")
    return arr


def original_scale(path, arr) -> float:
    """How many pixels of the file ``path`` one pixel of ``arr`` (its :func:`read_image`,
    maybe downscaled) spans: multiply coordinates found in ``arr`` by this."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # read_image took it
        with Image.open(path) as img:
            return max(img.size) / max(arr.shape[:2])


def save_image(path, arr: np.ndarray, quality: int = 95) -> Path:
    """Write a uint8 array (H, W[, 3]) atomically; format from the suffix. PNGs use zlib
    level 1: ~3x faster to write than PIL's default 6, ~15% larger (face crops, measured)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(arr, dtype=np.uint8)).save(tmp, quality=quality, compress_level=1)
    return path


def list_files(folder, exts, skipped=None, exclude=None) -> list[Path]:
    """Files under ``folder`` (recursive) with one of ``exts``, sorted for determinism.

    Not read: our own temporary files, the folder ``exclude`` (the current output), any
    sub-folder holding an earlier dfcourse output (:func:`output_sign`), and links to
    folders (not followed). With a :class:`SkipLog`, everything left out that may have
    been meant as input is listed there with the reason and the fix instead of vanishing:
    earlier outputs, unreadable folders, links to folders, and names with one of ``exts``
    that are not readable files (dangling links, link loops, vanished files).
    ``folder`` being ``exclude`` itself is a :class:`BadInputError`.
    """
    folder = Path(folder)
    excluded = file_id(exclude) if exclude is not None else None
    if excluded is not None and file_id(folder) == excluded:
        raise BadInputError(f"{folder}: this is also the output folder, so its images and the outputs would "
                            "mix. Choose an output folder outside the input folder.")
    out = []

    def skip(p, why):
        if skipped is not None:
            skipped.add(p, why)

    def walk(d):
        try:
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            skip(d, f"cannot read this folder ({e.strerror or e}), so none of its files were used. "
                    f"Make it readable (chmod -R u+rX '{d}') or move it out of the input.")
            return
        for e in entries:
            p = Path(d) / e.name
            wanted = p.suffix.lower() in exts
            if TMP_MARK in e.name:
                continue
            try:
                st = os.stat(p)  # follows links
            except OSError as err:
                if wanted:
                    skip(p, _unusable_entry(p, err))
                continue
            if stat.S_ISDIR(st.st_mode):
                if (st.st_dev, st.st_ino) == excluded:
                    continue  # the current output folder: never input, nothing to report
                if e.is_symlink():
                    skip(p, "a link to a folder; links to folders are not followed. Copy or move that "
                            "folder here, or pass it as an input of its own.")
                    continue
                sign = output_sign(p)
                if sign:
                    skip(p, f"an earlier dfcourse output folder (it holds {sign}); its files are not read as "
                            "input. Move it out of the input folder or delete it.")
                    continue
                walk(p)
            elif wanted and stat.S_ISREG(st.st_mode):
                out.append(p)
            elif wanted:
                skip(p, "not a regular file (a device, pipe or socket); replace it with an image file or remove it.")

    walk(folder)
    return out


def _unusable_entry(path, err: OSError) -> str:
    """Why ``path`` cannot be opened (``err`` from ``os.stat``), with the fix."""
    if err.errno == errno.ELOOP:
        return ("a symbolic link loop (the link leads back to itself); point it at a real file or remove it.")
    if os.path.islink(path):
        return ("a dangling symbolic link (no such file at its target); restore the file it points to or "
                "remove the link.")
    if err.errno == errno.ENOENT:
        return "no such file. Check the path."
    return f"cannot open it ({err.strerror or err}); check its permissions or remove it."


def file_id(path):
    """``(device, inode)`` of ``path`` (links followed), or None if it cannot be reached."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def output_sign(folder) -> str | None:
    """What marks ``folder`` as a dfcourse output (so batch jobs never read it as input):
    the marker file every output folder gets (:func:`make_out_dir`), or an ``index.csv``
    with an index's identifying columns (outputs made before the marker); None for anything else."""
    folder = Path(folder)
    try:
        if (folder / OUTPUT_MARKER).is_file():
            return OUTPUT_MARKER
        with open(folder / "index.csv", newline="") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    return "index.csv" if INDEX_KEY_COLUMNS <= set(header) else None


class SkipLog:
    """Items a batch job could not use, with the reason; written as a CSV beside the output."""

    def __init__(self):
        self.items: list[tuple[str, str]] = []

    def add(self, item, reason: str) -> None:
        self.items.append((str(item), str(reason)))

    def __len__(self) -> int:
        return len(self.items)

    def write(self, path) -> Path:
        path = Path(path)
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["item", "reason"])
            w.writerows(self.items)
        return path

    def summary(self, limit: int = 5) -> str:
        if not self.items:
            return "skipped: none"
        lines = [f"skipped {len(self.items)} item(s):"]
        lines += [f"  {item}: {reason}" for item, reason in self.items[:limit]]
        if len(self.items) > limit:
            lines.append(f"  ... and {len(self.items) - limit} more (see the skipped report)")
        return "\n".join(lines)
