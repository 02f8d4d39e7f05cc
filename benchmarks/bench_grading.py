"""Grading throughput of ``dfcourse.grading.grade`` on this machine, side by side in one run:

* serial vs ``--workers N`` (default 2) on the same class: submissions per hour;
* the same class as two ``--shard i/2`` runs merged with ``--merge``: the CSV must equal the
  serial one but for wall times (printed as a check, and the script exits non-zero if not);
* the sandbox's overhead per submission: autograde wall time per submission in the bubblewrap
  sandbox vs ``--unsafe-no-sandbox`` (goal: under 2 s);
* with ``--data-modes``, also the demo data built once and shared read-only vs built by every
  student's notebook.

The submission is a small notebook that does what every course notebook does first
(``start`` in quick mode, ``ensure_index`` on the demo data) and one graded exercise on the
index; a course notebook adds its own training time (up to minutes) in every mode alike.
The shared demo data is built once and copied into each run's output folder.

    python benchmarks/bench_grading.py [--students 4] [--workers 2] [--data-modes]
"""
import argparse
import csv
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from dfcourse import grading, shards

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


def kernel_round_trip(tmp: Path, isolate: bool) -> float:
    """Seconds to start a kernel as ``grade`` does (sandboxed or not), run one cell, shut it down."""
    from jupyter_client.manager import KernelManager

    from dfcourse import sandbox

    run = Path(tempfile.mkdtemp(prefix="dfk-"))
    home, nbdir = tmp / "k-home", tmp / "k-nb"
    home.mkdir(exist_ok=True)
    nbdir.mkdir(exist_ok=True)
    argv = sandbox.kernel_argv(home, nbdir, run, {"HOME": str(home), "PATH": "/usr/bin:/bin"}, isolate=isolate)
    spec = sandbox.write_kernelspec(run / "jupyter", argv)
    t0 = time.time()
    km = KernelManager(kernel_name=sandbox.KERNEL, transport="ipc", ip=str(run / "k"),
                       connection_file=str(run / "kernel.json"))
    km.kernel_spec_manager.kernel_dirs.insert(0, str(spec.parent))
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=120)
    kc.execute_interactive("import numpy", timeout=120)
    kc.stop_channels()
    km.shutdown_kernel(now=True)
    shutil.rmtree(run, ignore_errors=True)
    return time.time() - t0


def without_wall_times(path):
    with open(path) as f:
        return [{k: v for k, v in row.items() if k != "wall_s"} for row in csv.DictReader(f)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--students", type=int, default=4, help="submissions in the class (default 4)")
    ap.add_argument("--workers", type=int, default=2, help="workers of the parallel run (default 2)")
    ap.add_argument("--data-modes", action="store_true", help="also time the demo data built per student")
    args = ap.parse_args()
    quiet = {"log": lambda *_: None, "timeout": 600}
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        tmp = Path(tmp)
        src = tmp / "notebooks" / f"{NAME}.ipynb"
        src.parent.mkdir()
        nbformat.write(notebook(True), src)
        for i in range(args.students):
            (tmp / "subs" / f"s{i:02d}").mkdir(parents=True)
            nbformat.write(notebook(True), tmp / "subs" / f"s{i:02d}" / f"{NAME}.ipynb")
        t0 = time.time()
        demo = grading.shared_demo(tmp / "cache")
        build_s = time.time() - t0

        def run(label, fn, out, **kw):
            shutil.copytree(demo, tmp / out / "shared-data" / "demo")
            t0 = time.time()
            rows = fn(tmp / "subs", tmp / out, [src], **quiet, **kw)
            total = time.time() - t0
            assert all(float(r["total"]) == 1.0 for r in rows), rows  # every submission really ran and passed
            per = sum(float(r["wall_s"]) for r in rows) / len(rows)
            results[label] = (total, per)

        starts = {True: [], False: []}
        for _ in range(5):  # alternated, so a busy moment weighs on both alike
            for isolate in (True, False):
                starts[isolate].append(kernel_round_trip(tmp, isolate))
        results = {}
        run("serial, sandboxed", grading.grade, "serial")
        run(f"--workers {args.workers}, sandboxed", lambda *a, **kw: shards.grade_workers(*a[:3], args.workers, **kw),
            "workers")
        run("serial, --unsafe-no-sandbox", grading.grade, "unsafe", sandbox=False)
        for i in (1, 2):
            shutil.copytree(demo, tmp / f"shard{i}" / "shared-data" / "demo")
            grading.grade(tmp / "subs", tmp / f"shard{i}", [src], shard=(i, 2), **quiet)
        shards.merge([tmp / "shard1", tmp / "shard2"], tmp / "merged")
        same = {out: without_wall_times(tmp / out / "grades.csv") == without_wall_times(tmp / "serial" / "grades.csv")
                for out in ("merged", "workers")}
        if args.data_modes:
            t0 = time.time()
            rows = grading.grade(tmp / "subs", tmp / "per-student", [src], share_data=False, **quiet)
            results["demo data built per student"] = (time.time() - t0, sum(r["wall_s"] for r in rows) / len(rows))
    print(f"grading throughput, {args.students} submissions of one small notebook, quick mode, CPU "
          f"({platform.processor() or platform.machine()}, {os.cpu_count()} cores); the shared demo data was "
          f"built once ({build_s:.0f} s, not counted):")
    for label, (total, per) in results.items():
        print(f"  {label:32s} {total:6.1f} s for the class = {3600 * args.students / total:6.0f} submissions/h "
              f"(autograde {per:5.1f} s per submission)")
    sandboxed, unsafe = results["serial, sandboxed"][1], results["serial, --unsafe-no-sandbox"][1]
    print(f"sandbox overhead per submission: {sandboxed - unsafe:+.1f} s ({sandboxed:.1f} s sandboxed vs "
          f"{unsafe:.1f} s unsafe, one run each; goal < 2 s)")
    med = {k: statistics.median(v) for k, v in starts.items()}
    print(f"kernel start + one cell + shutdown, median of 5 alternated: {med[True]:.2f} s sandboxed vs "
          f"{med[False]:.2f} s not = {med[True] - med[False]:+.2f} s per kernel "
          f"(all: {', '.join(f'{v:.2f}' for v in starts[True])} vs {', '.join(f'{v:.2f}' for v in starts[False])})")
    print(f"shard 1/2 + shard 2/2 merged == serial (but wall times): {same['merged']}; "
          f"--workers {args.workers} == serial: {same['workers']}")
    raise SystemExit(0 if all(same.values()) else 1)


if __name__ == "__main__":
    main()
