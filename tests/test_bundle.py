"""The student bundle (dfcourse/bundle.py) built from the course notebooks, as `make student` does:
nothing in it, the package's wheel included, carries a solution region, a hidden test or a mark
scheme, and it installs in a new virtual environment and runs a student notebook there."""
import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import nbformat
import pytest

from dfcourse import grading

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
REGIONS = [("### BEGIN SOLUTION", "### END SOLUTION"), ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"),
           ("=== BEGIN MARK SCHEME ===", "=== END MARK SCHEME ===")]


def secrets() -> dict:
    """What the bundle must not contain: each whole solution region, each mark scheme and hidden-test
    line of 20 characters or more (shorter ones are things like ``return x``) that the notebook
    does not also show outside its hidden regions (a shared ``from dfcourse.metrics import eer``)."""
    found = {}
    for path in NOTEBOOKS:
        cells = nbformat.read(path, as_version=4).cells
        for begin, end in REGIONS:
            pattern = re.escape(begin) + "(.*?)" + re.escape(end)
            shown = "\n".join(re.sub(pattern, "", c.source, flags=re.S) for c in cells)
            for cell in cells:
                for m in re.finditer(pattern, cell.source, re.S):
                    body = "\n".join(line.strip() for line in m.group(1).strip("\n").splitlines())
                    if begin == "### BEGIN SOLUTION":
                        found[body] = f"{path.name}: a solution"
                    else:
                        found.update({line: f"{path.name}: {begin}" for line in body.splitlines()
                                      if len(line) >= 20 and line not in shown})
    return found


def texts(bundle: Path) -> dict:
    """Every file of the bundle as text, each wheel member as a file of its own; whitespace at
    line starts removed so an indented copy is found too."""
    out = {}
    for p in sorted(bundle.rglob("*")):
        if p.suffix == ".whl":
            with zipfile.ZipFile(p) as z:
                out.update({f"{p.name}/{n}": z.read(n).decode(errors="replace") for n in z.namelist()})
        elif p.is_file():
            out[str(p.relative_to(bundle))] = p.read_text(errors="replace")
    return {k: "\n".join(line.strip() for line in v.splitlines()) for k, v in out.items()}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("handout") / "student"
    run = subprocess.run([sys.executable, "-m", "dfcourse", "student", "--bundle", "--out", str(out)],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    return out


def leaks(found: dict, secrets_: dict) -> set:
    return {f"{what} in {name}" for name, text in found.items() for secret, what in secrets_.items() if secret in text}


@pytest.mark.slow
def test_bundle_reveals_no_solution_and_holds_no_instructor_notebook(bundle):
    found = texts(bundle)
    hidden = secrets()
    assert len(hidden) >= 15, "the check found the notebooks' solutions, so it can fail"
    outside_package = {k: v for k, v in found.items() if "/dfcourse/" not in k}
    assert not leaks(outside_package, hidden), sorted(leaks(outside_package, hidden))
    assert not leaks(found, {k: v for k, v in hidden.items() if "a solution" not in v})  # hidden tests, mark schemes
    # nbgrader's delimiters, except where the grader names them (grading.MARKERS)
    assert not {f"{m} in {name}" for name, text in found.items() for m in grading.MARKERS
                if m in text and not name.endswith("dfcourse/grading.py")}
    instructor = {p.read_bytes() for p in NOTEBOOKS}
    assert not [p for p in bundle.rglob("*") if p.is_file() and p.read_bytes() in instructor]
    assert sorted(p.name for p in (bundle / "notebooks").glob("*.ipynb")) == [p.name for p in NOTEBOOKS]
    (wheel,) = (bundle / "package").glob("dfcourse-*.whl")
    members = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in members if n.endswith(".ipynb") or "notebooks/" in n], members
    assert any(n == "dfcourse/exercises.py" for n in members)
    readme = (bundle / "README.md").read_text()
    assert "make setup" in readme and "make lab" in readme and "make validate" in readme


@pytest.mark.slow
def test_package_holds_no_solution_verbatim(bundle):
    found = {k: v for k, v in texts(bundle).items() if "/dfcourse/" in k}
    assert not leaks(found, {k: v for k, v in secrets().items() if "a solution" in v}), sorted(leaks(found, secrets()))


@pytest.mark.slow
def test_bundle_installs_in_a_new_venv_and_runs_a_student_notebook(bundle, tmp_path):
    """A new venv with the bundle's wheel (its dependencies, torch among them, come from this
    environment's site-packages through a .pth file rather than a 6 GB download); notebook 01 of
    the student edition runs top to bottom, its only errors the unsolved exercises' tests."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                        text=True).strip())
    (site / "_course_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    (wheel,) = (bundle / "package").glob("dfcourse-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)],
                   check=True)
    where = subprocess.check_output([str(python), "-c", "import dfcourse; print(dfcourse.__file__)"], text=True,
                                    cwd=tmp_path)  # not the checkout, whose dfcourse/ would come first
    assert where.startswith(str(site)), where  # the wheel's package, not the checkout's
    script = ("import sys, nbformat\nfrom nbclient import NotebookClient\n"
              "nb = nbformat.read(sys.argv[1], as_version=4)\n"
              "NotebookClient(nb, timeout=900, kernel_name='python3', allow_errors=True,"
              " resources={'metadata': {'path': sys.argv[2]}}).execute()\n"
              "nbformat.write(nb, sys.argv[3])\n")
    notebook = bundle / "notebooks" / NOTEBOOKS[0].name
    env = dict(os.environ, DFCOURSE_HOME=str(tmp_path / "home"), DFCOURSE_QUICK="1", CUDA_VISIBLE_DEVICES="",
               HF_HUB_OFFLINE="1", PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}")
    env.pop("PYTHONPATH", None)
    run = subprocess.run([str(python), "-c", script, str(notebook), str(bundle / "notebooks"), str(tmp_path / "ran.ipynb")],
                         capture_output=True, text=True, env=env, timeout=1800, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    ran = nbformat.read(tmp_path / "ran.ipynb", as_version=4)
    failed = [c.metadata.get("nbgrader", {}).get("grade_id") or c.source[:60] for c in ran.cells
              if any(o.output_type == "error" for o in c.get("outputs", []))]
    assert failed and all(str(f).endswith("-tests") for f in failed), failed
    assert all(o.ename == "NotImplementedError" for c in ran.cells for o in c.get("outputs", [])
               if o.output_type == "error")
