"""A student's submission: which file is which notebook, what they changed that they should
not have, and which cells failed when it ran.

Used by dfcourse/grading.py (``python -m dfcourse grade``); the README's instructor section
("Exercises and grading") lists what each status says.
"""
from __future__ import annotations

import os
from pathlib import Path

from .sandbox import Limits


def read_notebook(path):
    """The notebook at ``path``, or ``None`` with the reason when it is not one."""
    import nbformat

    try:
        return nbformat.read(path, as_version=4), ""
    except Exception as e:  # not JSON, not a notebook, unreadable
        return None, f"{e.__class__.__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"


def _meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def grade_cells(nb) -> list[tuple[str, float, bool]]:
    """``(grade_id, points, graded_by_hand)`` of each grade cell, in notebook order."""
    return [(_meta(c)["grade_id"], float(_meta(c).get("points", 0)), bool(_meta(c).get("solution")))
            for c in nb.cells if _meta(c).get("grade")]


def _ids(nb) -> set:
    return {_meta(c).get("grade_id") for c in nb.cells if _meta(c).get("grade_id")}


def _files(folder) -> tuple[list[Path], list[str]]:
    """The ``.ipynb`` files under a student's ``folder``, and the links that were not followed."""
    files, links = [], []
    for dirpath, dirnames, filenames in os.walk(folder):  # never into a linked folder
        dirnames[:] = sorted(d for d in dirnames if d != ".ipynb_checkpoints")
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.suffix == ".ipynb":
                (links.append(f"{path.relative_to(folder)} (a symbolic link, not followed)")
                 if path.is_symlink() else files.append(path))
        links += [f"{Path(dirpath, d).relative_to(folder)}/ (a symbolic link, not followed)"
                  for d in dirnames if Path(dirpath, d).is_symlink()]
    return files, links


def match_submissions(folder, expected: dict) -> dict:
    """For each expected notebook name, ``(path or None, note)`` from a student's ``folder``.

    A candidate is a notebook of that name anywhere in the folder, or under another name one that
    shares nbgrader cell ids with it alone; of several, the newest (modification time) is graded
    and the note names them all. Links are never followed; a file that is not a notebook, or
    matches no notebook, is named and never graded."""
    folder = Path(folder)
    files, ignored = _files(folder)
    found = {stem: [] for stem in expected}
    broken = {}
    for path in files:
        nb, why = read_notebook(path)
        if nb is None:
            if path.stem in expected:
                broken[path.stem] = why
            else:
                ignored.append(f"{path.relative_to(folder)} ({why})")
            continue
        owners = [path.stem] if path.stem in expected else [s for s, ref in expected.items() if _ids(nb) & _ids(ref)]
        if len(owners) == 1:
            found[owners[0]].append(path)
        else:
            ignored.append(f"{path.relative_to(folder)} (matches {'no' if not owners else 'more than one'} notebook)")
    result = {}
    for stem in expected:
        paths = sorted(found[stem], key=lambda p: (p.stat().st_mtime, p.stem == stem, -len(p.parts)), reverse=True)
        names = [str(p.relative_to(folder)) for p in paths]
        if paths:
            notes = [f"submitted as {names[0]}"] if names[0] != f"{stem}.ipynb" else []
            if len(paths) > 1:
                notes.append(f"{len(paths)} candidates ({', '.join(names)}): graded the newest, {names[0]}")
            result[stem] = (paths[0], "; ".join(notes))
        elif stem in broken:
            result[stem] = (None, f"not a notebook ({broken[stem]})")
        else:
            result[stem] = (None, "missing" + (f"; not graded: {', '.join(ignored)}" if ignored else ""))
    return result


def integrity(reference, submitted, source=None) -> list[str]:
    """What a submission changed that it should not have: deleted or edited read-only cells
    and deleted answer cells, compared to the student edition ``reference`` (a read-only cell
    equal to the instructor's ``source`` version counts as unedited)."""
    original = {_meta(c)["grade_id"]: c.source for c in source.cells if _meta(c).get("grade_id")} if source else {}
    got = {_meta(c)["grade_id"]: c for c in submitted.cells if _meta(c).get("grade_id")}
    notes = []
    for cell in reference.cells:
        m = _meta(cell)
        gid = m.get("grade_id")
        if not gid:
            continue
        if gid not in got:
            kind = "test cell" if m.get("grade") and not m.get("solution") else \
                "answer cell" if m.get("solution") else "read-only cell"
            notes.append(f"deleted {kind} {gid}")
        elif m.get("locked") and got[gid].source not in (cell.source, original.get(gid)):
            notes.append(f"edited read-only cell {gid} (nbgrader ran the original)")
    return notes


def execution_notes(nb, log: str = "", limits: Limits | None = None) -> list[str]:
    """Cells of an executed notebook that raised an error or ran out of time or memory. nbclient
    interrupts a cell past its timeout, so the cell shows ``KeyboardInterrupt``; nbgrader's ``log`` says why."""
    timeouts = log.count("Timeout waiting for execute reply")
    errors = []
    for i, cell in enumerate(nb.cells):
        out = next((o for o in cell.get("outputs", []) if o.get("output_type") == "error"), None)
        if cell.cell_type != "code" or out is None:
            continue
        ename = out.get("ename")
        if ename in ("CellTimeoutError", "KeyboardInterrupt") and timeouts:
            ename, timeouts = "timeout", timeouts - 1
        elif ename == "MemoryError" and limits:
            ename = f"MemoryError (memory limit {limits.memory_gb:g} GiB)"
        errors.append(f"{_meta(cell).get('grade_id') or f'cell {i}'}: {ename}")
    return [f"{len(errors)} cell(s) failed: " + ", ".join(errors)] if errors else []


def cell_name(nb, source: str) -> str:
    """The grade id (else ``cell N``) of the cell of ``nb`` whose source is ``source``."""
    if nb is None or not source:
        return ""
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and cell.source.strip() == source.strip():
            return _meta(cell).get("grade_id") or f"cell {i}"
    return ""
