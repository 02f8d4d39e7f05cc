"""The grading layer (nbgrader): the student edition, and autograding a class's submissions.

``python -m dfcourse student`` (``make student``) runs ``nbgrader generate_assignment`` on the
course notebooks in a throwaway nbgrader course folder and copies the student edition
(solutions replaced, hidden tests removed, cells locked, checksums) to ``student/``.

``python -m dfcourse grade DIR`` (``make grade SUBMISSIONS=DIR``) autogrades
``DIR/<student>/<notebook>.ipynb`` with ``nbgrader autograde`` (nbconvert execution, errors
allowed, a per-cell timeout) and writes ``grades/grades.csv`` and ``grades/feedback/<student>/``.
Each student's notebooks run in a fresh course home (``DFCOURSE_HOME``), quick mode, CPU,
offline. The demo data is built once and linked into every home as ``data/demo``; all else a
notebook writes (``data/feature_cache``, ``data/prepared``, ``data/landmarks``, ``runs/``) is
the student's own. The shared tree is made read-only and fingerprinted after each student: a
notebook that changed it anyway is named in the CSV and the tree is rebuilt before the next one.

Used by the instructor workflow in the README ("Exercises and grading").
"""
from __future__ import annotations

import csv
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from .demo import DEMO_VERSION, build_demo, build_ffpp_mini, built_version
from .io import BadInputError

ASSIGNMENT = "dfcourse"
# nbgrader's delimiters: none of them may survive into the student edition
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS",
           "BEGIN MARK SCHEME", "END MARK SCHEME")
# every submission runs like this: quick mode, no GPU, no network
GRADE_ENV = {"DFCOURSE_QUICK": "1", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}


def _env(**extra) -> dict:
    """This process's environment with our Python's bin/ first on PATH: nbgrader opens its
    gradebook by running the ``alembic`` command, which lives beside ``python``."""
    env = dict(os.environ, **extra)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


@contextmanager
def _on_path():
    old = os.environ.get("PATH", "")
    os.environ["PATH"] = _env()["PATH"]
    try:
        yield
    finally:
        os.environ["PATH"] = old


def run_killable(cmd, cwd, env=None, timeout=None) -> tuple[int, str]:
    """Run ``cmd``; returns ``(returncode, output)``. Past ``timeout`` seconds the command and
    everything it started are killed (a kernel runs in a session of its own, so killing the
    process group is not enough) and the returncode is -9."""
    import psutil  # ipykernel's dependency

    proc = subprocess.Popen(cmd, cwd=cwd, env=env or _env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
        return -9, log
    return proc.returncode, log


def nbgrader(course_dir, *args, env=None, timeout=None) -> tuple[int, str]:
    """Run ``nbgrader ARGS`` on the course folder ``course_dir`` (its own sqlite gradebook)
    with :func:`run_killable`."""
    course_dir = Path(course_dir).resolve()
    cmd = [sys.executable, "-m", "nbgrader", *args, f"--CourseDirectory.root={course_dir}",
           f"--CourseDirectory.db_url=sqlite:///{course_dir / 'gradebook.db'}"]
    return run_killable(cmd, course_dir, env, timeout)


def generate(notebooks, course_dir) -> Path:
    """``nbgrader generate_assignment`` on ``notebooks`` in ``course_dir``; returns the release folder."""
    source = Path(course_dir) / "source" / ASSIGNMENT
    source.mkdir(parents=True, exist_ok=True)
    for nb in notebooks:
        shutil.copy(nb, source / Path(nb).name)
    rc, log = nbgrader(course_dir, "generate_assignment", ASSIGNMENT, "--force")
    if rc != 0:
        raise RuntimeError(f"nbgrader generate_assignment failed:\n{log[-3000:]}")
    return Path(course_dir) / "release" / ASSIGNMENT


def leaks(path) -> list[str]:
    """nbgrader delimiters found in the file at ``path`` (empty when it reveals none)."""
    text = Path(path).read_text(errors="replace")
    return [m for m in MARKERS if m in text]


def course_notebooks() -> list[Path]:
    """The instructor notebooks: ``notebooks/NN_*.ipynb`` of this checkout, else of the current folder."""
    for root in (Path(__file__).resolve().parent.parent, Path.cwd()):
        found = sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))
        if found:
            return found
    raise FileNotFoundError("no notebooks/NN_*.ipynb here: run from the course folder or name the notebooks")


def student_edition(notebooks, out) -> list[Path]:
    """Write the student edition of ``notebooks`` to ``out``; returns the notebooks written.
    Raises if any of them still carries a solution or hidden-test delimiter."""
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="dfcourse-nbgrader-") as tmp:
        release = generate(notebooks, tmp)
        written = sorted(release.glob("*.ipynb"))
        bad = {p.name: leaks(p) for p in written if leaks(p)}
        if bad:
            raise RuntimeError(f"the student edition would reveal solutions: {bad}")
        out.mkdir(parents=True, exist_ok=True)
        for old in out.glob("*.ipynb"):
            old.unlink()
        return [Path(shutil.copy(p, out / p.name)) for p in written]


# ----------------------------------------------------------------- reading notebooks
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


def match_submissions(folder, expected: dict) -> dict:
    """For each expected notebook name, ``(path or None, note)`` from a student's ``folder``.
    A notebook under another name is matched by its nbgrader cell ids (and the note says so);
    a file that is not a notebook, or matches no missing notebook, is named and never graded."""
    found = [p for p in sorted(Path(folder).rglob("*.ipynb")) if ".ipynb_checkpoints" not in p.parts]
    result, others = {}, []
    for path in found:
        if path.stem in expected:
            nb, why = read_notebook(path)
            result[path.stem] = (path, "") if nb is not None else (None, f"not a notebook ({why})")
        else:
            others.append(path)
    ignored = []
    for path in others:
        nb, why = read_notebook(path)
        ids = _ids(nb) if nb is not None else set()
        owners = [s for s, ref in expected.items() if s not in result and ids & _ids(ref)]
        if len(owners) == 1:
            result[owners[0]] = (path, f"submitted as {path.name}")
        else:
            ignored.append(f"{path.name} ({why or 'matches no missing notebook'})")
    for stem in expected:
        if stem not in result:
            result[stem] = (None, "missing" + (f"; not graded: {', '.join(ignored)}" if ignored else ""))
    return {stem: result[stem] for stem in expected}


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


def execution_notes(nb, log: str = "") -> list[str]:
    """Cells of an executed notebook that raised an error or ran out of time. nbclient interrupts a cell
    past its timeout, so the cell shows ``KeyboardInterrupt``; nbgrader's ``log`` says why."""
    timeouts = log.count("Timeout waiting for execute reply")
    errors = []
    for i, cell in enumerate(nb.cells):
        out = next((o for o in cell.get("outputs", []) if o.get("output_type") == "error"), None)
        if cell.cell_type != "code" or out is None:
            continue
        ename = out.get("ename")
        if ename in ("CellTimeoutError", "KeyboardInterrupt") and timeouts:
            ename, timeouts = "timeout", timeouts - 1
        errors.append(f"{_meta(cell).get('grade_id') or f'cell {i}'}: {ename}")
    return [f"{len(errors)} cell(s) failed: " + ", ".join(errors)] if errors else []


# ----------------------------------------------------------------- shared demo data
def fingerprint(root) -> str:
    """A digest of every file's path, size and modification time under ``root``."""
    h = hashlib.sha1()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            st = os.lstat(os.path.join(dirpath, name))
            h.update(f"{os.path.relpath(os.path.join(dirpath, name), root)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _set_writable(root, writable: bool) -> None:
    for dirpath, _, filenames in os.walk(root):
        os.chmod(dirpath, 0o755 if writable else 0o555)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644 if writable else 0o444)


def remove_tree(root) -> None:
    root = Path(root)
    if root.is_symlink() or root.is_file():
        root.unlink()
    elif root.exists():
        _set_writable(root, True)
        shutil.rmtree(root)


def build_demo_data(demo) -> None:
    """What the notebooks would build under ``data/demo`` on first use: ``ensure_demo``'s
    dataset and notebook 01's mini FF++ tree (about a minute on a laptop CPU)."""
    build_demo(demo, seed=0)
    build_ffpp_mini(Path(demo) / "ffpp_mini", seed=0)


def shared_demo(root, build=build_demo_data) -> Path:
    """The demo data, built once under ``root/demo`` by ``build`` and made read-only;
    reused while its ``.complete`` marker is there (and, for the course's own demo data, while
    it is of this course's demo engine version)."""
    demo = Path(root) / "demo"
    stale = build is build_demo_data and built_version(demo) != DEMO_VERSION
    if not (demo / ".complete").is_file() or stale:
        remove_tree(demo)
        build(demo)
        (demo / ".complete").write_text("built by dfcourse.grading.shared_demo\n")
    _set_writable(demo, False)
    return demo


def new_home(homes, student: str, demo=None) -> Path:
    """A fresh, empty course home for ``student``; with ``demo``, ``data/demo`` links to it."""
    home = Path(homes) / student
    remove_tree(home)
    (home / "data").mkdir(parents=True)
    if demo is not None:
        (home / "data" / "demo").symlink_to(Path(demo).resolve(), target_is_directory=True)
    return home


# ----------------------------------------------------------------- grading
def _scores(course_dir, student: str, notebook: str):
    from nbgrader.api import Gradebook, MissingEntry

    with _on_path(), Gradebook(f"sqlite:///{Path(course_dir).resolve() / 'gradebook.db'}") as gb:
        try:
            nb = gb.find_submission_notebook(notebook, ASSIGNMENT, student)
        except MissingEntry:
            return {}
        return {g.name: (g.score, g.needs_manual_grade) for g in nb.grades}


def grade(submissions, out, notebooks, timeout: int = 600, share_data: bool = True, build=build_demo_data,
          log=print) -> list[dict]:
    """Autograde every ``submissions/<student>/`` against ``notebooks`` (the instructor's,
    with solutions); writes ``out/grades.csv`` and ``out/feedback/<student>/`` and returns the rows.

    ``timeout`` is nbgrader's per-cell limit (seconds); a whole notebook is stopped after
    ``timeout`` per code cell plus two minutes. With ``share_data=False`` no demo data is
    linked in: each student's notebooks build their own (for ``benchmarks/bench_grading.py``);
    ``build`` writes the shared demo data (tests pass a tiny one).
    """
    out = Path(out)
    if Path(submissions).resolve() in (out.resolve(), *out.resolve().parents):
        raise BadInputError(f"the output folder {out} is inside the submissions folder {submissions}: "
                            "choose another --out")
    course = out / "nbgrader"
    for old in (course, out / "homes", out / "feedback"):  # every run starts afresh
        remove_tree(old)
    release = generate(notebooks, course)
    expected = {p.stem: read_notebook(p)[0] for p in sorted(release.glob("*.ipynb"))}
    sources = {Path(p).stem: read_notebook(p)[0] for p in notebooks}
    columns = [gid for nb in expected.values() for gid, _, _ in grade_cells(nb)]
    demo = shared_demo(out / "shared-data", build) if share_data else None
    stamp = fingerprint(demo) if demo else ""
    students = sorted(p for p in Path(submissions).iterdir() if p.is_dir() and not p.name.startswith("."))
    rows = []
    for folder in students:
        student = folder.name
        home = new_home(out / "homes", student, demo)
        env = _env(DFCOURSE_HOME=str(home), **GRADE_ENV)
        dest = course / "submitted" / student / ASSIGNMENT
        dest.mkdir(parents=True, exist_ok=True)
        done = []
        for stem, (path, note) in match_submissions(folder, expected).items():
            row = {"student": student, "notebook": stem, "file": path.name if path else "",
                   "status": [note] if note else [], "wall_s": 0.0}
            rows.append(row)
            if path is None:
                continue
            shutil.copy(path, dest / f"{stem}.ipynb")
            row["status"] += integrity(expected[stem], read_notebook(path)[0], sources.get(stem))
            cells = sum(c.cell_type == "code" for c in expected[stem].cells)
            t0 = time.time()
            rc, text = nbgrader(course, "autograde", ASSIGNMENT, f"--student={student}", f"--notebook={stem}",
                                "--create", f"--Execute.timeout={timeout}", env=env,
                                timeout=timeout * cells + 120)
            row["wall_s"] = round(time.time() - t0, 1)
            graded, _ = read_notebook(course / "autograded" / student / ASSIGNMENT / f"{stem}.ipynb")
            if rc != 0:
                last = [ln for ln in text.splitlines() if ln.strip()][-1:] or ["no output"]
                row["status"].append("stopped: whole-notebook limit reached" if rc == -9
                                     else f"autograde failed: {last[0][:160]}")
            elif graded is not None:
                row["status"] += execution_notes(graded, text)
                done.append(stem)
        if demo and fingerprint(demo) != stamp:
            for row in rows[-len(expected):]:
                row["status"].append("changed the shared demo data (rebuilt before the next student)")
            remove_tree(demo)
            demo = shared_demo(out / "shared-data", build)
            stamp = fingerprint(demo)
        if done:
            nbgrader(course, "generate_feedback", ASSIGNMENT, f"--student={student}", "--force")
            feedback = course / "feedback" / student / ASSIGNMENT
            if feedback.is_dir():
                remove_tree(out / "feedback" / student)
                shutil.copytree(feedback, out / "feedback" / student)
        for row in rows[-len(expected):]:
            _fill(row, expected[row["notebook"]], _scores(course, student, row["notebook"])
                  if row["notebook"] in done else {})
        log(f"{student}: " + ", ".join(f"{r['notebook']} {r['total']:g}/{r['max']:g}" for r in rows[-len(expected):]))
    write_csv(rows, columns, out / "grades.csv")
    return rows


def _fill(row: dict, reference, scores: dict) -> None:
    """Points per grade cell, total, max and the status line of one (student, notebook) row."""
    total = maximum = 0.0
    by_hand = []
    for gid, points, manual in grade_cells(reference):
        score, needs_hand = scores.get(gid, (0.0, False))
        maximum += points
        if manual and needs_hand:
            row[gid] = "manual"
            by_hand.append(gid)
        else:
            row[gid] = score or 0.0
            total += score or 0.0
    if by_hand:
        row["status"].append(f"to grade by hand: {', '.join(by_hand)}")
    row.update(total=total, max=maximum, status="; ".join(row["status"]) or "ok")


def write_csv(rows, columns, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = ["student", "notebook", "file", *columns, "total", "max", "status", "wall_s"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fields, restval="")
        w.writeheader()
        w.writerows(rows)
    return path
