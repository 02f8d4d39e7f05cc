"""Grading a class in parallel and in slices: ``grade --workers N``, ``--shard i/N``, ``--merge DIR...``.

A slice is an ordinary ``grade`` run (dfcourse/grading.py) over students i, i + N, ... of the
class, in a folder of its own with its own nbgrader course folder and gradebook. :func:`merge`
combines slices into one ``grades.csv`` (rows in the order a single run writes them), one
``feedback/``, one ``homes/`` and one nbgrader course folder whose gradebook holds every
submission. ``--workers N`` runs N slices at once on this machine, then merges them; on a
cluster each job of an array runs one ``--shard`` and a last one runs ``--merge``.

Used by the instructor workflow in the README ("Exercises and grading").
"""
from __future__ import annotations

import csv
import shutil
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from .grading import ASSIGNMENT, _on_path, build_demo_data, grade, remove_tree, shared_demo
from .io import BadInputError


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/N"`` -> ``(i, N)`` with 1 <= i <= N."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise BadInputError(f"--shard {text!r}: write i/N, e.g. --shard 2/8 for the second of eight slices") from None
    if not 1 <= i <= n:
        raise BadInputError(f"--shard {text!r}: i must be between 1 and N")
    return i, n


def grade_workers(submissions, out, notebooks, workers: int, log=print, **kwargs) -> list[dict]:
    """:func:`grading.grade` with ``workers`` slices at once (processes), each in ``out/workers/K``,
    then :func:`merge` into ``out``. The shared demo data is built once and copied to each slice."""
    out = Path(out)
    parts = [out / "workers" / str(k) for k in range(1, workers + 1)]
    for part in parts:
        remove_tree(part)
    if kwargs.get("share_data", True):
        demo = shared_demo(out / "shared-data", kwargs.get("build", build_demo_data))
        for part in parts:
            shutil.copytree(demo, part / "shared-data" / "demo")
    with ProcessPoolExecutor(workers) as pool:  # a worker prints its students' lines, or nothing
        jobs = [pool.submit(grade, submissions, part, notebooks, shard=(k, workers),
                            log=print if log is print else _silent, **kwargs)
                for k, part in enumerate(parts, 1)]
        for job in jobs:
            job.result()
    return merge(parts, out)


def _silent(*args) -> None:
    pass


def _read(part: Path) -> tuple[list[str], list[dict]]:
    path = part / "grades.csv"
    if not path.is_file() or not (part / "nbgrader" / "gradebook.db").is_file():
        raise BadInputError(f"{part} is not the output of a grade run (no grades.csv or nbgrader/gradebook.db): "
                            "name the --out folders of the --shard runs")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def merge(parts, out) -> list[dict]:
    """Combine the ``grade`` outputs ``parts`` (slices of one class, graded against the same
    notebooks) into ``out``; returns the rows of ``out/grades.csv``."""
    parts, out = [Path(p) for p in parts], Path(out)
    read = [(part, *_read(part)) for part in parts]
    fields = read[0][1]
    for part, f, _ in read:
        if f != fields:
            raise BadInputError(f"{part}/grades.csv has other columns than {parts[0]}/grades.csv: "
                                "were they graded against the same notebooks?")
    seen, dup = {}, []
    for part, _, part_rows in read:
        for s in sorted({r["student"] for r in part_rows}):
            if s in seen:
                dup.append(f"{s} (in {seen[s]} and {part})")
            seen[s] = part
    if dup:
        raise BadInputError(f"graded in two slices: {', '.join(dup)}: merge the slices of one --shard i/N series")
    rows = [row for _, _, part_rows in read for row in part_rows]
    order = {}
    for row in rows:  # notebook order as a single run writes it
        order.setdefault(row["notebook"], len(order))
    rows.sort(key=lambda r: (r["student"], order[r["notebook"]]))
    course = out / "nbgrader"
    if out.resolve() in [p.resolve() for p in parts]:
        raise BadInputError(f"--out {out} is one of the folders to merge: choose another")
    for old in (course, out / "feedback", out / "homes"):
        remove_tree(old)
    shutil.copytree(parts[0] / "nbgrader", course)
    for part in parts[1:]:
        _merge_gradebook(part / "nbgrader", course)
    for part in parts:
        for sub in ("feedback", "homes"):
            for folder in sorted((part / sub).iterdir()) if (part / sub).is_dir() else []:
                remove_tree(out / sub / folder.name)
                shutil.copytree(folder, out / sub / folder.name, symlinks=True)
    path = out / "grades.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fields)
        w.writeheader()
        w.writerows(rows)
    return rows


def _merge_gradebook(source, dest) -> None:
    """Copy every submission of the nbgrader course folder ``source`` (its gradebook rows, its
    ``submitted/``, ``autograded/`` and ``feedback/`` folders) into the course folder ``dest``."""
    from nbgrader.api import Gradebook
    from sqlalchemy.exc import SAWarning

    source, dest = Path(source).resolve(), Path(dest).resolve()
    with warnings.catch_warnings(), _on_path(), Gradebook(f"sqlite:///{source / 'gradebook.db'}") as src, \
            Gradebook(f"sqlite:///{dest / 'gradebook.db'}") as gb:
        warnings.simplefilter("ignore", SAWarning)  # nbgrader's add_submission, harmless
        for sub in src.assignment_submissions(ASSIGNMENT):
            student = sub.student.id
            gb.update_or_create_student(student)
            gb.add_submission(ASSIGNMENT, student, timestamp=sub.timestamp)
            for nb in sub.notebooks:
                for g in nb.grades:
                    new = gb.find_grade(g.name, nb.name, ASSIGNMENT, student)
                    new.auto_score, new.manual_score, new.extra_credit = g.auto_score, g.manual_score, g.extra_credit
                for c in nb.comments:
                    new = gb.find_comment(c.name, nb.name, ASSIGNMENT, student)
                    new.auto_comment, new.manual_comment = c.auto_comment, c.manual_comment
                gb.find_submission_notebook(nb.name, ASSIGNMENT, student).flagged = nb.flagged
            gb.db.commit()
            for sub_dir in ("submitted", "autograded", "feedback"):
                if (source / sub_dir / student).is_dir():
                    shutil.copytree(source / sub_dir / student, dest / sub_dir / student, dirs_exist_ok=True)
