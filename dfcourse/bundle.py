"""The student bundle: what an instructor hands out (a zip, or a repository of its own).

``python -m dfcourse student --bundle`` (``make student``) writes ``student/`` with:

* ``notebooks/``: the student edition (dfcourse/grading.py's ``student_edition``: no solutions,
  no hidden tests);
* ``package/``: the ``dfcourse`` wheel, built from the package's source alone (no ``notebooks/``,
  no instructor README);
* ``README.md``, a ``Makefile`` (``make setup``, ``make lab``, ``make validate``),
  ``constraints.txt`` and ``nbgrader_config.py``.

The package keeps the course's reference functions: an unsolved notebook falls back on them
(``exercises.pick``) and the tests refuse them (``exercises.forbid``).

Used by the instructor workflow in the README ("Exercises and grading").
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .grading import check_notebooks, student_edition
from .io import BadInputError

MANIFEST = ".dfcourse-student-bundle"  # in the bundle: every file it wrote

README = """# {name}: student edition

The course notebooks with your exercises, and the `dfcourse` package they use.

## Two commands

    make setup   # a virtual environment in .venv/ with package/{wheel} and its dependencies (a few minutes)
    make lab     # JupyterLab on notebooks/

Without `make`: `python3 -m venv .venv && .venv/bin/pip install -c constraints.txt package/{wheel}`,
then `DFCOURSE_HOME=$PWD .venv/bin/jupyter lab notebooks`.

The notebooks write their data and runs in this folder (`data/`, `runs/`). Each notebook runs top
to bottom before you solve anything: where an exercise is not solved yet, the course's own version
is used and a printed line says so.

## Check your work

    make validate                                    # every notebook
    make validate NB=notebooks/01_data_prep.ipynb    # one

runs the visible tests (JupyterLab's Validate button does the same for the open notebook).
Your instructor's grading runs more tests than these.
"""

MAKEFILE = """# Students: `make setup`, then `make lab`; `make validate` checks your notebooks.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
NB     ?= notebooks/*.ipynb
export DFCOURSE_HOME := $(CURDIR)

.PHONY: setup lab validate

setup:
\t@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
\t$(BIN)/python -m pip install -q -c constraints.txt package/{wheel}

lab:
\t$(BIN)/jupyter lab notebooks

validate:
\t$(BIN)/nbgrader validate $(NB)
"""

NBGRADER_CONFIG = """# nbgrader validate and JupyterLab's Validate button read this file: a quick-mode training
# cell takes longer than nbgrader's default 30 s per cell.
c = get_config()  # noqa: F821
c.Execute.timeout = 600
"""


def build_wheel(root, dest) -> Path:
    """The ``dfcourse`` wheel, built from a copy of ``root``'s ``dfcourse/`` and ``pyproject.toml``
    (with the student README as its description) into ``dest``."""
    root = Path(root)
    with tempfile.TemporaryDirectory(prefix="dfcourse-wheel-") as tmp:
        shutil.copytree(root / "dfcourse", Path(tmp) / "dfcourse", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(root / "pyproject.toml", tmp)
        (Path(tmp) / "README.md").write_text(README.format(name="dfcourse", wheel="dfcourse-*.whl"))
        out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                              "-w", str(dest), tmp], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"building the dfcourse wheel failed:\n{out.stderr[-2000:]}")
    (wheel,) = Path(dest).glob("dfcourse-*.whl")
    return wheel


def student_bundle(notebooks, out, root=None) -> list[Path]:
    """Write the student bundle of ``notebooks`` (the package built from the checkout ``root``,
    by default this package's own) to ``out``; returns the files written. ``out`` is new, or a bundle
    this function wrote (its files are replaced; no other file is touched, and one in the way stops
    it before anything is written)."""
    root = Path(root or Path(__file__).resolve().parent.parent)
    if not (root / "pyproject.toml").is_file():
        raise BadInputError(f"{root} has no pyproject.toml: build the student bundle from the course's checkout "
                            "(pip install -e . there)")
    notebooks, out = check_notebooks(notebooks), Path(out)
    inside = [str(nb) for nb in notebooks if out.resolve() in nb.resolve().parents]
    if inside or out.resolve() in (Path(root).resolve(), *Path(root).resolve().parents):
        raise BadInputError(f"--out {out} holds the course's own files ({', '.join(inside) or root}): "
                            "choose a new folder, e.g. --out student")
    manifest = out / MANIFEST
    ours = set(manifest.read_text().split("\n")) - {""} if manifest.is_file() else set()
    with tempfile.TemporaryDirectory(prefix="dfcourse-bundle-") as tmp:
        tmp = Path(tmp)
        student_edition(notebooks, tmp / "notebooks")
        (tmp / "notebooks" / ".dfcourse-student-edition").unlink()
        wheel = build_wheel(root, tmp / "package")
        (tmp / "README.md").write_text(README.format(name="Deepfake detection", wheel=wheel.name))
        (tmp / "Makefile").write_text(MAKEFILE.format(wheel=wheel.name))
        (tmp / "nbgrader_config.py").write_text(NBGRADER_CONFIG)
        shutil.copy(Path(root) / "constraints.txt", tmp / "constraints.txt")
        new = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
        clash = [f for f in new if (out / f).exists() and f not in ours]
        if clash:
            raise BadInputError(f"{out} already has {', '.join(clash)}, not written by the student bundle: "
                                "move them away or choose another --out (nothing was written)")
        for old in ours:
            (out / old).unlink(missing_ok=True)
        for f in new:
            (out / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(tmp / f, out / f)
        manifest.write_text("".join(f"{f}\n" for f in new))
    return [out / f for f in new]
