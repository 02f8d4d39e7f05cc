"""The grading layer (dfcourse/grading.py) on a small notebook this file writes, never the
course notebooks: the student edition hides solutions, ``nbgrader validate`` tells a student
where they stand, and autograding a class of broken and working submissions gives each
student the points their own work earns. Those tests start a kernel per notebook run (about
four minutes together on a busy 2-core machine) and are marked slow."""
import copy
import csv
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from dfcourse import grading

NAME = "t01_square"
SOLUTION = "return x * x  # SECRET_SOLUTION_TOKEN"
HIDDEN = "assert square(-2) == 4  # SECRET_HIDDEN_TOKEN"
TIMEOUT = 20  # per cell: the infinite loop is stopped after this


def meta(grade_id, **kw):
    return {"nbgrader": {"schema_version": 3, "grade_id": grade_id, **kw}}


def source_notebook():
    """Two autograded exercises and one answer graded by hand (6 points, 3 of them automatic).
    ``mark()`` leaves a file in the course home's runs/ and its test asserts it was not there
    before, so two students sharing a home would lose a point; the same test asserts nobody
    wrote into the shared demo data."""
    answer = new_code_cell(f"def square(x):\n    ### BEGIN SOLUTION\n    {SOLUTION}\n    ### END SOLUTION",
                           metadata=meta("ex1", solution=True, grade=False, locked=False))
    answer.outputs = [new_output("stream", name="stdout", text="SECRET_OUTPUT_TOKEN\n")]
    cells = [
        new_markdown_cell("# A tiny exercise notebook", metadata=meta("intro", locked=True, solution=False,
                                                                      grade=False)),
        new_code_cell("import os, pathlib\nhome = pathlib.Path(os.environ['DFCOURSE_HOME'])",
                      metadata=meta("setup", locked=True, solution=False, grade=False)),
        answer,
        new_code_cell(f"assert square(3) == 9\n### BEGIN HIDDEN TESTS\n{HIDDEN}\n### END HIDDEN TESTS",
                      metadata=meta("ex1_tests", grade=True, solution=False, locked=True, points=2)),
        new_code_cell("def mark():\n    ### BEGIN SOLUTION\n    p = home / 'runs' / 'mark.txt'\n"
                      "    p.parent.mkdir(parents=True, exist_ok=True)\n    existed = p.exists()\n"
                      "    p.write_text('x')\n    return existed\n    ### END SOLUTION",
                      metadata=meta("ex2", solution=True, grade=False, locked=False)),
        new_code_cell("assert (home / 'data' / 'demo' / 'index.csv').is_file()\n"
                      "assert not (home / 'data' / 'demo' / 'vandal.txt').exists()\nassert mark() is False",
                      metadata=meta("ex2_tests", grade=True, solution=False, locked=True, points=1)),
        new_markdown_cell("Why does it work?\n\n=== BEGIN MARK SCHEME ===\nSECRET_SCHEME_TOKEN\n"
                          "=== END MARK SCHEME ===", metadata=meta("ex3_answer", solution=True, grade=True,
                                                                   locked=False, points=3)),
    ]
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return new_notebook(cells=cells, metadata={"kernelspec": kernel})


NAME2 = "t02_cube"


def second_notebook():
    """One more exercise (1 point): a student whose kernel dies in the first notebook is still graded here."""
    cells = [new_code_cell("def cube(x):\n    ### BEGIN SOLUTION\n    return x ** 3\n    ### END SOLUTION",
                           metadata=meta("cube", solution=True, grade=False, locked=False)),
             new_code_cell("assert cube(2) == 8", metadata=meta("cube_tests", grade=True, solution=False, locked=True,
                                                                  points=1))]
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return new_notebook(cells=cells, metadata={"kernelspec": kernel})


def tiny_demo(demo):
    demo.mkdir(parents=True)
    (demo / "index.csv").write_text("path,label\n")


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """The instructor notebook and its student edition."""
    root = tmp_path_factory.mktemp("course")
    (root / "notebooks").mkdir()
    src = root / "notebooks" / f"{NAME}.ipynb"
    nbformat.write(source_notebook(), src)
    (edition,) = grading.student_edition([src], root / "student")
    nbformat.write(second_notebook(), root / "notebooks" / f"{NAME2}.ipynb")
    return src, edition


def cell(nb, grade_id):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def solve(nb, src, *ids):
    nb = copy.deepcopy(nb)
    for gid in ids:
        cell(nb, gid).source = cell(src, gid).source
    return nb


@pytest.mark.slow
def test_student_edition_reveals_no_solution(course):
    src, edition = course
    text = edition.read_text()
    for secret in ("SECRET_SOLUTION_TOKEN", "SECRET_HIDDEN_TOKEN", "SECRET_OUTPUT_TOKEN", "SECRET_SCHEME_TOKEN",
                   *grading.MARKERS):
        assert secret not in text
    assert "SECRET_SOLUTION_TOKEN" in src.read_text()  # the check above can fail
    nb = nbformat.read(edition, as_version=4)
    tests = cell(nb, "ex1_tests")
    assert tests.source == "assert square(3) == 9"
    assert tests.metadata["nbgrader"]["checksum"] and tests.metadata["editable"] is False


def validate(path, home):
    tiny_demo(home / "data" / "demo")
    env = grading._env(DFCOURSE_HOME=str(home))
    out = subprocess.run([sys.executable, "-m", "nbgrader", "validate", str(path)], capture_output=True, text=True,
                         env=env, cwd=home, timeout=300)
    return out.stdout + out.stderr


@pytest.mark.slow
def test_validate_zero_on_student_edition_full_on_instructor_version(course, tmp_path):
    src, edition = course
    # all three grade cells fail (two tests and the unchanged answer): zero points
    assert "VALIDATION FAILED ON 3 CELL(S)" in validate(edition, tmp_path / "a")
    assert "Success! Your notebook passes all the tests." in validate(src, tmp_path / "b")


ROOT = Path(__file__).resolve().parent.parent


def test_nbgrader_config_gives_course_cells_time():
    """Validate (command line and JupyterLab) reads ./nbgrader_config.py; nbgrader's default
    30 s per cell is less than a quick-mode training cell."""
    from traitlets.config import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", str(ROOT)).load_config()
    assert config.Execute.timeout >= 600


@pytest.mark.slow
def test_validate_button_in_jupyterlab(course, tmp_path):
    """The request JupyterLab's Validate button sends (``POST /assignments/validate``) to a
    server started in the course folder, like ``make lab LAB_DIR=student``: the student
    edition fails on its three grade cells, the solved notebook passes."""
    src, edition = course
    lab = tmp_path / "student"
    lab.mkdir()
    shutil.copy(edition, lab / "edition.ipynb")
    shutil.copy(src, lab / "solved.ipynb")
    tiny_demo(tmp_path / "home" / "data" / "demo")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    token, url = secrets.token_hex(8), f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "jupyter_server", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={lab}", "--allow-root"]
    env = grading._env(DFCOURSE_HOME=str(tmp_path / "home"), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
    with open(tmp_path / "server.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5).close()
                break
            except OSError:
                time.sleep(1)
        results = {}
        for name in ("edition.ipynb", "solved.ipynb"):
            req = urllib.request.Request(f"{url}/assignments/validate", data=urllib.parse.urlencode(
                {"path": name}).encode(), headers={"Authorization": f"token {token}"}, method="POST")
            with urllib.request.urlopen(req, timeout=300) as r:
                results[name] = json.load(r)
    finally:
        proc.terminate()
        proc.wait(30)
    assert results["edition.ipynb"]["success"] and len(results["edition.ipynb"]["value"]["failed"]) == 3
    assert results["solved.ipynb"] == {"success": True, "value": {}}


@pytest.fixture(scope="module")
def graded(course, tmp_path_factory):
    """A class of ten: every way a submission goes right or wrong, graded in one batch."""
    src_path, edition = course
    src, blank = nbformat.read(src_path, as_version=4), nbformat.read(edition, as_version=4)
    solved = solve(blank, src, "ex1", "ex2")
    cell(solved, "ex3_answer").source = "Because x * x is the square."
    subs = tmp_path_factory.mktemp("submissions")

    def submit(student, nb, name=f"{NAME}.ipynb"):
        (subs / student).mkdir()
        if isinstance(nb, str):
            (subs / student / name).write_text(nb)
        else:
            nbformat.write(nb, subs / student / name)

    vandal = copy.deepcopy(solved)
    cell(vandal, "ex2").source = cell(vandal, "ex2").source.replace(
        "return existed", "(home / 'data' / 'demo' / 'vandal.txt').write_text('x')\n    return existed")
    submit("a_vandal", vandal)  # first in the batch: writes into the shared demo data
    submit("blank", blank)
    submit("deleted", nbformat.v4.new_notebook(cells=[c for c in solved.cells
                                                      if c.metadata["nbgrader"]["grade_id"] != "ex1_tests"],
                                               metadata=solved.metadata))
    looping = copy.deepcopy(solved)
    cell(looping, "ex1").source = "def square(x):\n    while True:\n        pass"
    submit("looping", looping)
    submit("noanswer", nbformat.v4.new_notebook(cells=[c for c in solved.cells
                                                       if c.metadata["nbgrader"]["grade_id"] != "ex1"],
                                                metadata=solved.metadata))
    submit("notjson", '{"cells": [ this is not JSON')
    submit("partly", solve(blank, src, "ex1"))
    submit("renamed", solved, name=f"{NAME} (copy).ipynb")
    submit("solved", solved)
    tampered = copy.deepcopy(blank)
    cell(tampered, "ex1_tests").source = "pass  # nothing to see"
    submit("tampered", tampered)

    # the sandbox: each of these tries one thing the student's code must not do, after a correct answer
    out = tmp_path_factory.mktemp("grades")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    for student, attack in ATTACKS.items():
        hostile = copy.deepcopy(solved)
        cell(hostile, "ex1").source += "\n" + attack.format(out=out, port=listener.getsockname()[1])
        submit(student, hostile)
    dies = copy.deepcopy(solved)
    cell(dies, "ex1").source += "\nimport os\nos._exit(3)"
    submit("dies", dies)
    nbformat.write(solve(nbformat.read(src_path.parent / f"{NAME2}.ipynb", as_version=4), second_notebook(), "cube"),
                   subs / "dies" / f"{NAME2}.ipynb")
    hog = copy.deepcopy(solved)
    cell(hog, "ex1").source += "\nhog = bytearray(20 * 2**30)"
    submit("hog", hog)

    try:
        grading.grade(subs, out, [src_path, src_path.parent / f"{NAME2}.ipynb"], timeout=TIMEOUT, build=tiny_demo)
    finally:
        listener.close()
    with open(out / "grades.csv") as f:
        rows = {(r["student"], r["notebook"]): r for r in csv.DictReader(f)}
    print((out / "grades.csv").read_text())
    return out, rows


ATTACKS = {  # student: code appended to the answer cell (run from the notebook's folder, in the sandbox)
    "h_hidden_tests": "open('../../../source/dfcourse/t01_square.ipynb').read()",
    "h_notebooks": "import dfcourse, os, pathlib\nos.listdir(pathlib.Path(dfcourse.__file__).parents[1] / 'notebooks')",
    "h_gradebook": "open('{out}/nbgrader/gradebook.db', 'r+b').write(b'0wned')",
    "h_homes": "import os\nprint(os.listdir('{out}/homes'))\nos.listdir('{out}/homes/blank')",
    "h_socket": "import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=5)",
}
ATTACK_ERRORS = {"h_hidden_tests": "FileNotFoundError", "h_notebooks": "FileNotFoundError",
                 "h_gradebook": "FileNotFoundError", "h_homes": "FileNotFoundError", "h_socket": "ConnectionRefusedError"}


EXPECTED = {  # student: (ex1_tests, ex2_tests, ex3_answer, total, words in the status)
    "solved": ("2.0", "1.0", "manual", "3.0", ["to grade by hand: ex3_answer"]),
    "renamed": ("2.0", "1.0", "manual", "3.0", [f"submitted as {NAME} (copy).ipynb"]),
    "blank": ("0.0", "0.0", "0.0", "0.0", ["ex1_tests: NotImplementedError", "ex2_tests: NotImplementedError"]),
    "partly": ("2.0", "0.0", "0.0", "2.0", ["ex2_tests: NotImplementedError"]),
    # nbgrader runs the original test cell, so editing it gains nothing
    "tampered": ("0.0", "0.0", "0.0", "0.0", ["edited read-only cell ex1_tests", "ex1_tests: NotImplementedError"]),
    # a deleted test cell is not put back (nbgrader's default): no points for it
    "deleted": ("0.0", "1.0", "manual", "1.0", ["deleted test cell ex1_tests"]),
    "noanswer": ("0.0", "1.0", "manual", "1.0", ["deleted answer cell ex1", "ex1_tests: NameError"]),
    "looping": ("0.0", "1.0", "manual", "1.0", ["ex1_tests: timeout"]),
    "notjson": ("0.0", "0.0", "0.0", "0.0", ["not a notebook (NotJSONError"]),
    # the shared demo data is read-only in the sandbox: the write fails, and so does that test
    "a_vandal": ("2.0", "0.0", "manual", "2.0", ["ex2_tests: OSError"]),
    # the kernel dies in the answer cell: no points for this notebook, and the status says where and why
    "dies": ("0.0", "0.0", "0.0", "0.0", ["kernel died in ex1: exited with code 3"]),
    # a 20 GiB allocation fails inside the kernel's memory limit; the rest of the notebook runs
    "hog": ("2.0", "1.0", "manual", "3.0", ["ex1: MemoryError (memory limit 16 GiB)"]),
    **{student: ("2.0", "1.0", "manual", "3.0", [f"ex1: {ATTACK_ERRORS[student]}"]) for student in ATTACKS},
}


@pytest.mark.slow
@pytest.mark.parametrize("student", sorted(EXPECTED))
def test_grade_each_submission(graded, student):
    _, rows = graded
    ex1, ex2, ex3, total, words = EXPECTED[student]
    row = rows[student, NAME]
    assert (row["ex1_tests"], row["ex2_tests"], row["ex3_answer"], row["total"], row["max"]) == \
        (ex1, ex2, ex3, total, "6.0"), row
    for w in words:
        assert w in row["status"], row


@pytest.mark.slow
def test_grade_outputs(graded):
    out, rows = graded
    assert len(rows) == 2 * len(EXPECTED)  # the batch went on past every broken submission
    assert rows["solved", NAME]["status"] == "to grade by hand: ex3_answer"
    assert {r["mode"] for r in rows.values()} == {"sandbox"}
    assert float(rows["looping", NAME]["wall_s"]) >= TIMEOUT
    # the student whose kernel died in one notebook is graded on the other
    assert (rows["dies", NAME2]["cube_tests"], rows["dies", NAME2]["status"]) == ("1.0", "ok")
    assert rows["solved", NAME2]["status"] == "missing"
    page = (out / "feedback" / "dies" / f"{NAME}.html").read_text()
    assert "kernel died in ex1: exited with code 3" in page and (out / "feedback" / "dies" / f"{NAME2}.html").is_file()
    assert (out / "feedback" / "solved" / f"{NAME}.html").is_file()
    assert not (out / "feedback" / "notjson").exists()
    # each student had a home of their own, and the shared data is back to what was built
    assert sorted(p.name for p in (out / "homes").iterdir()) == sorted(EXPECTED)
    assert not (out / "shared-data" / "demo" / "vandal.txt").exists()
    assert (out / "homes" / "solved" / "runs" / "mark.txt").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("student", sorted(ATTACKS))
def test_sandbox_stops_each_attack_inside_the_submission(graded, student):
    """Each attack's answer cell shows the error it met, what it aimed at is really there outside
    the sandbox (so the test can fail), and the gradebook still opens with everyone's points."""
    out, rows = graded
    nb = nbformat.read(out / "nbgrader" / "autograded" / student / "dfcourse" / f"{NAME}.ipynb", as_version=4)
    errors = [o for o in cell(nb, "ex1").outputs if o.output_type == "error"]
    assert [e.ename for e in errors] == [ATTACK_ERRORS[student]], cell(nb, "ex1").outputs
    here = out / "nbgrader" / "autograded" / student / "dfcourse"
    targets = {"h_hidden_tests": here / "../../../source/dfcourse/t01_square.ipynb", "h_notebooks": ROOT / "notebooks",
               "h_gradebook": out / "nbgrader" / "gradebook.db", "h_homes": out / "homes" / "blank"}
    if student in targets:
        assert targets[student].exists()
    if student == "h_homes":  # the listing it printed holds its own home only
        listing = "".join(o.get("text", "") for o in cell(nb, "ex1").outputs if o.output_type == "stream")
        assert "'h_homes'" in listing and "'blank'" not in listing and "'solved'" not in listing
    assert grading._scores(out / "nbgrader", "solved", NAME)["ex1_tests"] == (2.0, False)


def test_grade_refuses_without_a_sandbox_unless_told(course, tmp_path):
    """Where bwrap cannot make namespaces, the class is refused (nothing graded, nothing written)
    and the message says why and what to do."""
    src, edition = course
    (tmp_path / "subs" / "anna").mkdir(parents=True)
    shutil.copy(edition, tmp_path / "subs" / "anna" / f"{NAME}.ipynb")
    env = dict(os.environ, DFCOURSE_BWRAP="/bin/false")
    out = subprocess.run([sys.executable, "-m", "dfcourse", "grade", str(tmp_path / "subs"), "--out",
                          str(tmp_path / "grades"), "--notebooks", str(src)], capture_output=True, text=True, env=env)
    assert out.returncode == 1, out.stderr
    assert "cannot sandbox the submissions" in out.stderr and "--unsafe-no-sandbox" in out.stderr
    assert not (tmp_path / "grades").exists()


@pytest.mark.slow
def test_grade_unsafe_no_sandbox_says_so_on_every_row(course, tmp_path):
    src, edition = course
    solved = solve(nbformat.read(edition, as_version=4), nbformat.read(src, as_version=4), "ex1", "ex2")
    (tmp_path / "subs" / "anna").mkdir(parents=True)
    nbformat.write(solved, tmp_path / "subs" / "anna" / f"{NAME}.ipynb")
    env = dict(os.environ, DFCOURSE_BWRAP="/bin/false")
    out = subprocess.run([sys.executable, "-m", "dfcourse", "grade", str(tmp_path / "subs"), "--out",
                          str(tmp_path / "grades"), "--notebooks", str(src), "--unsafe-no-sandbox", "--no-shared-data", "--timeout", "60"],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    with open(tmp_path / "grades" / "grades.csv") as f:
        (row,) = csv.DictReader(f)
    assert (row["mode"], row["ex1_tests"]) == ("unsafe-no-sandbox", "2.0"), row


def test_match_submissions_renamed_and_missing(tmp_path):
    expected = {NAME: source_notebook()}
    (tmp_path / "notes.ipynb").write_text("{}")
    found = grading.match_submissions(tmp_path, expected)
    assert found[NAME][0] is None and found[NAME][1].startswith("missing; not graded: notes.ipynb")
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "other.ipynb")  # no nbgrader cells: not a match
    assert grading.match_submissions(tmp_path, expected)[NAME][0] is None


def test_grade_cli_needs_a_folder(tmp_path):
    out = subprocess.run([sys.executable, "-m", "dfcourse", "grade", str(tmp_path / "nope")], capture_output=True,
                         text=True, env=dict(os.environ))
    assert out.returncode == 2 and "is not a folder" in out.stderr


def test_run_killable_kills_what_the_command_started(tmp_path):
    """The whole-notebook limit: a kernel (here a sleeping grandchild in a session of its own,
    as jupyter_client starts kernels) must not outlive it."""
    import psutil

    script = ("import subprocess, sys, time\n"
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True)\n"
              f"open({str(tmp_path / 'pid')!r}, 'w').write(str(child.pid))\ntime.sleep(60)")
    rc, _ = grading.run_killable([sys.executable, "-c", script], tmp_path, timeout=3)
    assert rc == -9
    pid = int((tmp_path / "pid").read_text())
    time.sleep(0.5)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_grade_refuses_output_inside_submissions(tmp_path):
    with pytest.raises(ValueError, match="inside the submissions folder"):
        grading.grade(tmp_path, tmp_path / "grades", [])


def test_make_grade_without_submissions_says_so():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(["make", "-s", "grade"], cwd=root, capture_output=True, text=True)
    assert out.returncode != 0 and "make grade SUBMISSIONS=DIR" in out.stdout + out.stderr


# ------------------------------------------------------------------ hostile inputs to `student` and `grade`
def dfcourse_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "dfcourse", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=dict(os.environ, PYTHONPATH=str(ROOT)))


def instructor_folder(tmp_path) -> Path:
    (tmp_path / "notebooks").mkdir()
    nbformat.write(source_notebook(), tmp_path / "notebooks" / f"{NAME}.ipynb")
    nbformat.write(second_notebook(), tmp_path / "notebooks" / f"{NAME2}.ipynb")
    return tmp_path / "notebooks"


def snapshot(folder) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def test_student_refuses_an_out_that_holds_its_inputs(tmp_path):
    notebooks = instructor_folder(tmp_path)
    before = snapshot(notebooks)
    out = dfcourse_cli("student", *sorted(notebooks.glob("*.ipynb")), "--out", notebooks)
    assert out.returncode == 1 and "holds the input notebook" in out.stderr, out.stderr
    out = dfcourse_cli("student", f"./{NAME}.ipynb", "--out", ".", cwd=notebooks)
    assert out.returncode == 1 and "holds the input notebook" in out.stderr, out.stderr
    assert snapshot(notebooks) == before  # every solution and hidden test still there


def test_student_names_an_input_that_is_not_a_notebook(tmp_path):
    (tmp_path / "README.md").write_text("# not a notebook\n")
    out = dfcourse_cli("student", tmp_path / "README.md", "--out", tmp_path / "st_y")
    assert out.returncode == 1 and "README.md is not a notebook" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "st_y").exists()


@pytest.mark.slow
def test_student_never_deletes_or_overwrites_what_it_did_not_write(tmp_path):
    notebooks = instructor_folder(tmp_path)
    mywork = tmp_path / "mywork"
    mywork.mkdir()
    for name in ("my_analysis.ipynb", "scratch.ipynb"):
        nbformat.write(new_notebook(cells=[new_code_cell(f"# {name}")]), mywork / name)
    mine = snapshot(mywork)
    out = dfcourse_cli("student", notebooks / f"{NAME}.ipynb", "--out", mywork)
    assert out.returncode == 0, out.stderr
    assert {k: v for k, v in snapshot(mywork).items() if k in mine} == mine
    assert "SECRET_HIDDEN_TOKEN" not in (mywork / f"{NAME}.ipynb").read_text()
    # a file of the student's own under a name the edition wants: refused before anything is written
    nbformat.write(new_notebook(cells=[new_code_cell("# my cube")]), mywork / f"{NAME2}.ipynb")
    before = snapshot(mywork)
    out = dfcourse_cli("student", *sorted(notebooks.glob("*.ipynb")), "--out", mywork)
    assert out.returncode == 1 and f"{NAME2}.ipynb" in out.stderr and "not written by `student`" in out.stderr
    assert snapshot(mywork) == before
    # its own files it replaces, and removes those of an earlier edition it no longer writes
    (mywork / f"{NAME2}.ipynb").unlink()
    assert dfcourse_cli("student", notebooks / f"{NAME2}.ipynb", "--out", mywork).returncode == 0
    assert not (mywork / f"{NAME}.ipynb").exists() and (mywork / f"{NAME2}.ipynb").is_file()
    assert all((mywork / k).read_bytes() == v for k, v in mine.items())


@pytest.mark.slow
def test_grade_follows_no_link_and_grades_the_newest_of_two_candidates(course, tmp_path):
    """A link to a file outside (its text must not reach the CSV), a linked student folder, an old
    draft beside the answer, and a renamed copy newer than the untouched original."""
    src, edition = course
    blank = nbformat.read(edition, as_version=4)
    solved = solve(blank, nbformat.read(src, as_version=4), "ex1", "ex2")
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:SECRET_FILE_TOKEN\n")
    subs = tmp_path / "subs"
    (subs / "linker").mkdir(parents=True)
    (subs / "linker" / f"{NAME}.ipynb").symlink_to(secret)
    (subs / "ghost").symlink_to(tmp_path / "notebooks-elsewhere", target_is_directory=True)
    (tmp_path / "notebooks-elsewhere").mkdir()
    (subs / "drafts" / "old").mkdir(parents=True)
    nbformat.write(blank, subs / "drafts" / "old" / f"{NAME}.ipynb")
    nbformat.write(solved, subs / "drafts" / f"{NAME}.ipynb")
    (subs / "copies").mkdir()
    nbformat.write(blank, subs / "copies" / f"{NAME}.ipynb")
    nbformat.write(solved, subs / "copies" / f"{NAME}-Copy1.ipynb")
    hour_ago = time.time() - 3600
    for old in (subs / "drafts" / "old" / f"{NAME}.ipynb", subs / "copies" / f"{NAME}.ipynb"):
        os.utime(old, (hour_ago, hour_ago))
    out = dfcourse_cli("grade", subs, "--out", tmp_path / "grades", "--notebooks", src, "--no-shared-data",
                       "--timeout", "60")
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "grades" / "grades.csv").read_text()
    assert "SECRET_FILE_TOKEN" not in text and "root:x" not in text
    with open(tmp_path / "grades" / "grades.csv") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"linker", "drafts", "copies"} and "ghost: not graded (a symbolic link" in out.stdout
    assert rows["linker"]["total"] == "0.0"
    assert f"{NAME}.ipynb (a symbolic link, not followed)" in rows["linker"]["status"]
    assert rows["drafts"]["ex1_tests"] == "2.0", rows["drafts"]
    assert f"2 candidates ({NAME}.ipynb, old/{NAME}.ipynb): graded the newest, {NAME}.ipynb" in rows["drafts"]["status"]
    assert rows["copies"]["ex1_tests"] == "2.0", rows["copies"]
    assert f"graded the newest, {NAME}-Copy1.ipynb" in rows["copies"]["status"]


# ------------------------------------------------------------------ workers, shards and merge
def without_wall_times(path) -> list[dict]:
    with open(path) as f:
        return [{k: v for k, v in row.items() if k != "wall_s"} for row in csv.DictReader(f)]


@pytest.mark.slow
def test_workers_and_shards_give_the_serial_result(course, tmp_path):
    """The same class graded serially, by two workers, and as two shards merged: the same CSV
    (but for wall times), and one gradebook with every student's scores."""
    from dfcourse import shards

    src, edition = course
    blank = nbformat.read(edition, as_version=4)
    source = nbformat.read(src, as_version=4)
    for student, nb in {"ann": solve(blank, source, "ex1", "ex2"), "bob": solve(blank, source, "ex1"),
                        "cy": blank}.items():
        (tmp_path / "subs" / student).mkdir(parents=True)
        nbformat.write(nb, tmp_path / "subs" / student / f"{NAME}.ipynb")
    subs, run = tmp_path / "subs", dict(timeout=TIMEOUT, build=tiny_demo)
    grading.grade(subs, tmp_path / "serial", [src], **run)
    shards.grade_workers(subs, tmp_path / "workers", [src], 2, **run)
    for i in (1, 2):
        grading.grade(subs, tmp_path / f"shard{i}", [src], shard=(i, 2), **run)
    shards.merge([tmp_path / "shard2", tmp_path / "shard1"], tmp_path / "merged")
    serial = without_wall_times(tmp_path / "serial" / "grades.csv")
    assert [(r["student"], r["total"]) for r in serial] == [("ann", "3.0"), ("bob", "2.0"), ("cy", "0.0")]
    assert without_wall_times(tmp_path / "shard1" / "grades.csv") != serial  # a slice alone is not the class
    for out in ("workers", "merged"):
        assert without_wall_times(tmp_path / out / "grades.csv") == serial, out
        for student, total in (("ann", 3.0), ("bob", 2.0)):
            scores = grading._scores(tmp_path / out / "nbgrader", student, NAME)
            assert scores["ex1_tests"][0] + scores["ex2_tests"][0] == total, (out, student, scores)
        assert (tmp_path / out / "feedback" / "ann" / f"{NAME}.html").is_file()
    with pytest.raises(ValueError, match="graded in two slices"):
        shards.merge([tmp_path / "shard1", tmp_path / "shard1"], tmp_path / "twice")


def test_shard_and_merge_name_bad_input(tmp_path):
    from dfcourse import shards

    assert shards.parse_shard("2/8") == (2, 8)
    for bad in ("0/2", "3/2", "two", "1/2/3"):
        with pytest.raises(ValueError, match="--shard"):
            shards.parse_shard(bad)
    (tmp_path / "notgrades").mkdir()
    out = dfcourse_cli("grade", "--merge", tmp_path / "notgrades", "--out", tmp_path / "merged")
    assert out.returncode == 1 and "is not the output of a grade run" in out.stderr, out.stderr


def test_sandbox_kernel_command_line(tmp_path):
    """What the kernel may see, read from its command line; and a course laid out so that the
    sandbox would show the instructor's notebooks is refused."""
    from dfcourse import sandbox as sb

    home, nbdir, runtime = tmp_path / "homes" / "ann", tmp_path / "nb", tmp_path / "rt"
    argv = sb.kernel_argv(home, nbdir, runtime, {"HOME": str(home)}, read_only=[tmp_path / "demo"],
                          hidden=[tmp_path / "notebooks" / "01.ipynb"])
    pairs = {(argv[i], argv[i + 1]) for i in range(len(argv) - 1)}
    assert {("--bind", str(home)), ("--bind", str(nbdir)), ("--ro-bind", str(tmp_path / "demo")),
            ("--cap-drop", "ALL"), ("--setenv", "HOME")} <= pairs
    assert "--unshare-all" in argv and "--clearenv" in argv and "{connection_file}" in argv
    assert not [a for a in argv if "notebooks" in a or a == str(tmp_path)]
    with pytest.raises(ValueError, match="the sandbox would show"):
        sb.kernel_argv(home, nbdir, runtime, {}, hidden=[Path(sys.prefix) / "notebooks" / "01.ipynb"])
    unsafe = sb.kernel_argv(home, nbdir, runtime, {}, isolate=False)
    assert "--unshare-all" not in unsafe and "ipykernel_launcher" in unsafe
