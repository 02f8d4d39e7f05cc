"""Run notebooks 04 and 05 again and again beside a CPU hog; count kernel deaths and stalls.

    python benchmarks/stress_notebooks.py --runs 20 --hog 2          # the bar: no death, no stall
    python benchmarks/stress_notebooks.py --runs 1 --hog 0           # does it work at all

Each notebook is executed as the notebook tests execute it (nbclient through
:class:`dfcourse.kernels.WatchedClient`, quick mode, offline, the tests' per-cell timeout), in
one throw-away course folder. ``--prepare`` notebooks (default 02 and 03) run once first, not
counted, so that every run of 04 and 05 finds the checkpoints they reload, as in ``make test``;
notebook 04 runs with ``DFCOURSE_FRESH=1``, so it trains its localizer (DataLoader workers
included) every time. ``--hog K`` starts K busy processes at normal priority for the whole run.

Per run it prints the status (ok / DIED / STALLED / error), wall time, the kernel's peak RSS
and its workers'; at the end a table per notebook, and every failure's full report (signal,
memory, stacks, stderr) in ``--out`` (default: a folder under the course folder, which is removed after a clean run
unless ``--home`` or ``--out`` was given).
Minutes per run on a 2-core CPU: expect ~20-40 min for ``--runs 20`` per notebook, more under a hog.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CELL_TIMEOUT = 600  # as tests/test_notebooks.py


def notebook(prefix: str) -> Path:
    found = sorted((ROOT / "notebooks").glob(f"{prefix}_*.ipynb"))
    if not found:
        raise SystemExit(f"no notebooks/{prefix}_*.ipynb")
    return found[0]


def run_once(path: Path, home: Path, timeout: int, log_dir: Path, fresh: bool) -> dict:
    import nbformat
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    from dfcourse.kernels import WatchedClient

    os.environ["DFCOURSE_FRESH"] = "1" if fresh else ""
    nb = nbformat.read(path, as_version=4)
    client = WatchedClient(nb, log_dir=log_dir, timeout=timeout, kernel_name="python3",
                           resources={"metadata": {"path": str(home)}})
    t0 = time.perf_counter()
    status, report = "ok", ""
    try:
        client.execute()
    except DeadKernelError as e:
        status, report = "DIED", str(e)
    except CellTimeoutError as e:
        status, report = "STALLED", str(e)
    except CellExecutionError as e:
        status, report = "error", str(e)
    except RuntimeError as e:  # the kernel did not start
        status, report = "DIED" if "died" in str(e).lower() else "error", str(e)
    watch = client.watch
    return {"notebook": path.stem[:2], "status": status, "seconds": time.perf_counter() - t0,
            "peak_mb": watch.peak_rss / 2**20 if watch else float("nan"),
            "workers_mb": watch.peak_children_rss / 2**20 if watch else float("nan"), "report": report}


def start_hog(k: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(k)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20, help="runs of each notebook (default 20)")
    ap.add_argument("--hog", type=int, default=2, help="busy processes beside the runs (default 2)")
    ap.add_argument("--notebooks", nargs="+", default=["04", "05"], help="notebook prefixes (default 04 05)")
    ap.add_argument("--prepare", nargs="*", default=["02", "03"], help="run once first, not counted")
    ap.add_argument("--timeout", type=int, default=CELL_TIMEOUT, help="per-cell timeout, s (default 600)")
    ap.add_argument("--home", help="course folder (default: a new temporary one)")
    ap.add_argument("--out", help="folder for failure reports and kernel logs")
    args = ap.parse_args(argv)

    from dfcourse.index import format_table

    home = Path(args.home or tempfile.mkdtemp(prefix="dfcourse-stress-")).resolve()
    out = Path(args.out or home / "stress").resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.update(DFCOURSE_HOME=str(home), DFCOURSE_QUICK="1", HF_HUB_OFFLINE="1")
    print(f"course folder {home}; reports in {out}; {os.cpu_count()} CPU cores; hog: {args.hog} busy process(es); "
          f"per-cell timeout {args.timeout} s", flush=True)
    hog = start_hog(args.hog)
    results = []
    try:
        for prefix in args.prepare:
            r = run_once(notebook(prefix), home, args.timeout, out / f"prepare-{prefix}", fresh=False)
            print(f"prepare {prefix}: {r['status']} in {r['seconds']:.0f} s", flush=True)
            if r["status"] != "ok":
                (out / f"prepare-{prefix}.txt").write_text(r["report"])
        for i in range(1, args.runs + 1):
            for prefix in args.notebooks:
                r = run_once(notebook(prefix), home, args.timeout, out / f"run{i:02d}-{prefix}", fresh=prefix == "04")
                r["run"] = i
                results.append(r)
                print(f"run {i:2d} notebook {prefix}: {r['status']:7s} {r['seconds']:6.0f} s  peak RSS "
                      f"{r['peak_mb']:.0f} MB (workers {r['workers_mb']:.0f} MB)"
                      + (f"  -> {out / f'run{i:02d}-{prefix}.txt'}" if r["report"] else ""), flush=True)
                if r["report"]:
                    (out / f"run{i:02d}-{prefix}.txt").write_text(r["report"])
    finally:
        for p in hog:
            p.kill()
            p.wait()
    rows = []
    for prefix in args.notebooks:
        rs = [r for r in results if r["notebook"] == prefix]
        if not rs:
            continue
        count = {s: sum(r["status"] == s for r in rs) for s in ("ok", "DIED", "STALLED", "error")}
        secs = [r["seconds"] for r in rs]
        rows.append([prefix, len(rs), count["ok"], count["DIED"], count["STALLED"], count["error"],
                     f"{statistics.median(secs):.0f}", f"{max(secs):.0f}", f"{max(r['peak_mb'] for r in rs):.0f}",
                     f"{max(r['workers_mb'] for r in rs):.0f}"])
    print()
    print(format_table(["notebook", "runs", "ok", "died", "stalled", "error", "median s", "max s",
                        "peak RSS MB", "workers MB"], rows))
    print(f"(hog: {args.hog} busy process(es) on {os.cpu_count()} cores; per-cell timeout {args.timeout} s)")
    ok = all(r["status"] == "ok" for r in results)
    if ok and not (args.home or args.out):
        shutil.rmtree(home, ignore_errors=True)  # a temporary course folder, nothing to read in it
    else:
        print(f"kept: {home}" + (f" (reports in {out})" if not ok else ""))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
