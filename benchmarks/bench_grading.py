"""Grading throughput: submissions per hour of ``dfcourse.grading.grade`` on this machine, with
the demo data built once and shared read-only vs built by every student's notebook, side by
side in one run.

The submission is a small notebook that does what every course notebook does first
(``start`` in quick mode, ``ensure_index`` on the demo data) and one graded exercise on the
index; a course notebook adds its own training time (up to minutes) in both modes alike.
Each mode grades the same class in a fresh output folder, so the shared mode pays its
one-time build (the demo data and notebook 01's mini FF++ tree) and the other mode pays
``ensure_demo`` once per student.

    python benchmarks/bench_grading.py [--students 2]
"""
import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from dfcourse import grading

NAME = "b01_index"


def notebook(solved: bool):
    def meta(grade_id, **kw):
        return {"nbgrader": {"schema_version": 3, "grade_id": grade_id, **kw}}

    answer = ("def fake_share(rows):\n    ### BEGIN SOLUTION\n    return sum(int(r['label']) for r in rows) / len(rows)\n"
              "    ### END SOLUTION") if solved else "def fake_share(rows):\n    raise NotImplementedError()"
    cells = [
        new_code_cell("from dfcourse import course as dc\nfrom dfcourse.index import read_index\n"
                      "course = dc.start('b01_index', quick=True)\nrows = read_index(dc.ensure_index(course))",
                      metadata=meta("setup", locked=True, solution=False, grade=False)),
        new_code_cell(answer, metadata=meta("ex1", solution=True, grade=False, locked=False)),
        new_code_cell("assert 0 < fake_share(rows) < 1", metadata=meta("ex1_tests", grade=True, solution=False,
                                                                        locked=True, points=1)),
    ]
    return new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                              "language": "python"}})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--students", type=int, default=2, help="submissions per mode (default 2)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        tmp = Path(tmp)
        src = tmp / "notebooks" / f"{NAME}.ipynb"
        src.parent.mkdir()
        nbformat.write(notebook(True), src)
        for i in range(args.students):
            (tmp / "subs" / f"s{i}").mkdir(parents=True)
            nbformat.write(notebook(True), tmp / "subs" / f"s{i}" / f"{NAME}.ipynb")
        results = {}
        for label, share in (("shared demo data (built once)", True), ("demo data built per student", False)):
            t0 = time.time()
            rows = grading.grade(tmp / "subs", tmp / f"out-{share}", [src], timeout=600, share_data=share,
                                 log=lambda *_: None)
            total = time.time() - t0
            assert all(r["total"] == 1.0 for r in rows), rows  # every submission really ran and passed
            per = sum(r["wall_s"] for r in rows) / len(rows)
            results[label] = (total, per)
    print("(the class time includes generating the gradebook and, when shared, building the data once)")
    print(f"grading throughput, {args.students} submissions of one small notebook per mode, "
          f"quick mode, CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores):")
    for label, (total, per) in results.items():
        print(f"  {label:32s} {total:6.1f} s for the class = {3600 * args.students / total:6.0f} submissions/h "
              f"(autograde {per:5.1f} s per submission: {3600 / per:6.0f}/h for a large class)")


if __name__ == "__main__":
    main()
