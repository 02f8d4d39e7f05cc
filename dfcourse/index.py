"""The index CSV: the one contract between notebook 01 and every later notebook.

One row per face crop. Columns (paths relative to the CSV's folder):

========== =============================================================
path        the face crop (PNG/JPG)
label       0 = real, 1 = fake
method      ``original`` for real faces, else the manipulation
            (FF++: Deepfakes, Face2Face, FaceSwap, NeuralTextures, FaceShifter;
            demo: selfblend, swap, rerender)
video_id    the group that must stay in one split: FF++ ``NNN`` / ``NNN_MMM``,
            demo data the source identity
frame_idx   frame number in the video (demo data: the view number)
split       train / val / test
mask_path   ground-truth manipulation mask crop, empty when none
source_path the aligned real crop a fake was made from, empty when none
box         the square crop box in the original frame, ``x1 y1 x2 y2``
========== =============================================================

Used in every notebook (notebook 01 writes the index; the others read it).
"""
from __future__ import annotations

import csv
import os
from collections import Counter
from pathlib import Path

import numpy as np

from .io import BadInputError, atomic_path

COLUMNS = ["path", "label", "method", "video_id", "frame_idx", "split",
           "mask_path", "source_path", "box"]
SPLITS = ("train", "val", "test")
FRACTIONS = (0.72, 0.14, 0.14)  # FF++ official proportions: 720 / 140 / 140 videos
PATH_COLUMNS = ("path", "mask_path", "source_path")


def write_index(rows, path) -> Path:
    """Write rows atomically, their paths made relative to the CSV's folder.

    Paths in ``rows`` are file paths as the caller has them: absolute, or relative to the
    current directory (a relative ``--out`` gives those); either way the CSV gets paths
    relative to its own folder, so it still works after the folder is moved.
    """
    path = Path(path)
    root = os.path.abspath(path.parent)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            r = {c: r.get(c, "") for c in COLUMNS}
            for c in PATH_COLUMNS:
                if r[c]:
                    r[c] = Path(os.path.relpath(os.path.abspath(r[c]), root)).as_posix()
            w.writerow(r)
    return path


def missing_files(path) -> list[str]:
    """Paths an index CSV lists that do not exist (empty is good): a check after any run."""
    return [r[c] for r in read_index(path) for c in PATH_COLUMNS if r[c] and not Path(r[c]).is_file()]


def read_index(path, split=None, methods=None) -> list[dict]:
    """Rows of an index CSV with absolute paths, ``label`` and ``frame_idx`` as ints.

    ``split`` and ``methods`` filter; ``methods`` keeps real rows (``original``) too.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInputError(
            f"{path}: no index CSV here. Build one with notebooks/01_data_prep.ipynb or "
            "`python -m dfcourse demo-data --out DIR` / `python -m dfcourse prepare ...`.")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = set(COLUMNS) - set(reader.fieldnames or [])
        if missing:
            raise BadInputError(f"{path}: not a dfcourse index (missing columns {sorted(missing)}).")
        rows = list(reader)
    root = path.parent.resolve()
    out = []
    for r in rows:
        if split is not None and r["split"] != split:
            continue
        if methods is not None and r["method"] != "original" and r["method"] not in methods:
            continue
        for c in PATH_COLUMNS:
            r[c] = str(root / r[c]) if r[c] else ""
        r["label"], r["frame_idx"] = int(r["label"]), int(r["frame_idx"] or 0)
        out.append(r)
    return out


def split_groups(groups, seed: int = 0, fractions=FRACTIONS) -> dict:
    """Assign each group (a set of identities that must stay together, given by a key)
    to train/val/test, deterministically, in the given proportions of groups."""
    keys = sorted(set(groups))
    rng = np.random.default_rng(seed)
    rng.shuffle(keys)
    n = len(keys)
    n_val = int(round(fractions[1] * n))
    n_test = int(round(fractions[2] * n))
    if n >= 3:  # every split non-empty whenever that is possible
        n_val, n_test = max(n_val, 1), max(n_test, 1)
    n_train = n - n_val - n_test
    assign = {}
    for i, k in enumerate(keys):
        assign[k] = "train" if i < n_train else ("val" if i < n_train + n_val else "test")
    return assign


def link_groups(originals, pairs) -> dict:
    """``{video id: group id}``: two originals share a group when a chain of fakes links
    them (a fake ``(target, source)`` links its two originals). The groups are the connected
    components of the graph whose nodes are the ids and whose edges are the fakes, found all at
    once by scipy's sparse-graph search; each group is named by its smallest id, so the result
    does not depend on the order of ``pairs``. Ids named only by a fake get a group too.
    Splitting by group keeps every fake with both its originals (``ffpp.pair_splits``)."""
    from scipy import sparse
    from scipy.sparse import csgraph

    ids = np.array(sorted(set(originals).union(*pairs)), dtype=object)
    if not len(ids):
        return {}
    pos = {v: i for i, v in enumerate(ids)}
    edges = np.array([(pos[t], pos[s]) for t, s in pairs], dtype=np.int64).reshape(-1, 2)
    graph = sparse.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(len(ids), len(ids)))
    _, component = csgraph.connected_components(graph, directed=False)
    _, first = np.unique(component, return_index=True)  # ids are sorted: each component's smallest
    return dict(zip(ids.tolist(), ids[first][component].tolist()))


def identities(video_id: str) -> set[str]:
    """The identities a video id names: ``000_003`` -> {000, 003}; demo ids have no ``_``."""
    return set(str(video_id).split("_"))


def leakage(rows) -> dict:
    """Identities found in more than one split: ``{identity: {splits}}`` (empty is good)."""
    seen: dict[str, set] = {}
    for r in rows:
        for ident in identities(r["video_id"]):
            seen.setdefault(ident, set()).add(r["split"])
    return {k: v for k, v in seen.items() if len(v) > 1}


def counts(rows, by=("split", "method")) -> list[tuple]:
    """Counts of rows by the given columns, as sorted ``(*values, n)`` tuples."""
    c = Counter(tuple(r[k] for k in by) for r in rows)
    return [(*k, n) for k, n in sorted(c.items())]


def format_table(header, rows) -> str:
    """A plain aligned text table (no pandas needed)."""
    rows = [[str(x) for x in r] for r in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line([str(h) for h in header]), line(["-" * w for w in widths])]
                     + [line(r) for r in rows])


def dataset_notes(rows) -> list[str]:
    """What a small or partial dataset lacks, one line each with what to do: empty splits,
    no fakes or no reals, fake methods without masks. Empty when nothing is missing."""
    notes = []
    if not rows:
        return ["the index has no rows: nothing could be prepared (see skipped.csv beside it)."]
    empty = [s for s in SPLITS if not any(r["split"] == s for r in rows)]
    if empty:
        notes.append(f"split(s) {', '.join(empty)} are empty: too few videos or identities to fill every "
                     "split (each pair of linked videos stays in one split). Add more videos, or pass "
                     "FF++'s official split files (SPLITS_DIR / --splits).")
    for label, what in ((0, "real"), (1, "fake")):
        if not any(r["label"] == label for r in rows):
            notes.append(f"no {what} crops: a detector needs both classes. Add {what} videos or images.")
    unmasked = sorted({r["method"] for r in rows if r["label"] == 1}
                      - {r["method"] for r in rows if r["label"] == 1 and r["mask_path"]})
    if unmasked:
        notes.append(f"no ground-truth masks for {', '.join(unmasked)}: mask figures and pixel-level "
                     "metrics skip them. For FF++ the masks are a separate download (`-t masks` in "
                     "FF++'s download script).")
    return notes
