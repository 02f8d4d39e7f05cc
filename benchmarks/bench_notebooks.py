"""Quick-mode wall time of each notebook, executed as the grader does (nbclient).

    python benchmarks/bench_notebooks.py [notebooks ...]

Runs in a throw-away course folder (DFCOURSE_HOME), so the first notebook also pays
for building the demo data, exactly as on a fresh clone.
"""
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main():
    from dfcourse.runner import execute

    notebooks = [Path(p) for p in sys.argv[1:]] or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    with tempfile.TemporaryDirectory() as home:
        os.environ.update(DFCOURSE_HOME=home, DFCOURSE_QUICK="1")
        rows = []
        for nb in notebooks:
            t0 = time.perf_counter()
            try:
                execute(nb, timeout=900, cwd=home)
                status = "pass"
            except Exception as e:  # keep timing the others
                status = f"FAIL ({e.__class__.__name__})"
            rows.append((nb.stem, time.perf_counter() - t0, status))
            print(f"{nb.stem:28s} {rows[-1][1]:7.1f} s  {status}", flush=True)
    print(f"{'total':28s} {sum(r[1] for r in rows):7.1f} s  (quick mode, {os.cpu_count()} CPU cores)")


if __name__ == "__main__":
    main()
