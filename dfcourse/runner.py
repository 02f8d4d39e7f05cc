"""Execute the course notebooks headless, exactly as a grader's ``jupyter nbconvert --execute``
would (nbclient, the same engine), save executed copies, and print a grading report.

Each notebook may leave a ``summary.json`` (see :func:`record`) with its mode and
headline metrics; the report collects them. ``make course`` runs ``python -m dfcourse course``.
Used in every notebook (:func:`record`).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from .index import format_table
from .io import atomic_path
from .kernels import WatchedClient


def record(course, **metrics) -> None:
    """Write this notebook's mode and headline metrics for the grading report."""
    path = course.root / "runs" / "summaries" / f"{course.notebook}.json"
    data = {"notebook": course.notebook, "mode": course.mode, "reason": course.reason,
            "device": course.device, **metrics}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=str))


def execute(path, out_path=None, timeout: int = 600, cwd=None, kernel_name: str = "python3",
            allow_errors: bool = False, log_dir=None):
    """Run one notebook top to bottom with nbclient; returns the executed notebook.
    Raises ``nbclient.exceptions.CellExecutionError`` on the first failing cell (unless
    ``allow_errors``). A kernel that dies or a cell that times out raises nbclient's
    ``DeadKernelError`` / ``CellTimeoutError`` with the cause (:mod:`dfcourse.kernels`)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    client = WatchedClient(nb, log_dir=log_dir, timeout=timeout, kernel_name=kernel_name, allow_errors=allow_errors,
                           resources={"metadata": {"path": str(cwd or Path(path).parent)}})
    try:
        client.execute()
    finally:
        if out_path is not None:
            Path(out_path).parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, out_path)
    return nb


def run_course(root, notebooks=None, out_dir=None, timeout: int = 900) -> list[dict]:
    """Execute notebooks in order; returns one result dict per notebook and writes the report."""
    root = Path(root)
    notebooks = notebooks or sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    out_dir = Path(out_dir or root / "runs" / "executed")
    results = []
    for nb_path in notebooks:
        nb_path = Path(nb_path)
        name = nb_path.stem
        summary = root / "runs" / "summaries" / f"{name}.json"
        if summary.exists():
            summary.unlink()
        print(f"== {name} ...", flush=True)
        t0 = time.time()
        error = ""
        try:
            execute(nb_path, out_dir / nb_path.name, timeout=timeout)
        except Exception as e:  # report and go on to the next notebook
            error = _headline(e)
        info = json.loads(summary.read_text()) if summary.exists() else {}
        results.append({"notebook": name, "status": "FAIL" if error else "pass",
                        "seconds": round(time.time() - t0, 1), "error": error, **info})
        print(f"   {results[-1]['status']} in {results[-1]['seconds']} s" + (f": {error}" if error else ""))
    write_report(results, root / "runs" / "report.md")
    return results


def _headline(e: Exception) -> str:
    """One line for the report: a cell error's last line (the exception), or for a dead or
    stalled kernel the line saying how it ended (:mod:`dfcourse.kernels`)."""
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    if not lines:
        return e.__class__.__name__
    cause = next((ln.lstrip("- ") for ln in lines if ln.startswith("--- ")), None)
    return (cause or lines[-1])[:200]


HEADLINE_SKIP = {"notebook", "status", "seconds", "error", "mode", "reason", "device", "weights"}
QUICK_BUDGET_S = 360  # all five notebooks in quick mode on a 2-core CPU, the course's promise


def total_line(results) -> str:
    """The notebooks' summed wall time, and for a quick-mode run of the whole course, against
    its 6-minute budget."""
    total = sum(r["seconds"] for r in results)
    line = f"total: {int(total // 60)} m {total % 60:.0f} s for {len(results)} notebook(s)"
    if len(results) >= 5 and all(r.get("mode") == "quick" for r in results):
        line += (f" (quick-mode budget {QUICK_BUDGET_S // 60} min on a 2-core CPU: "
                 f"{'within' if total <= QUICK_BUDGET_S else 'OVER'})")
    return line


def format_report(results) -> str:
    rows = []
    for r in results:
        headline = ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in r.items() if k not in HEADLINE_SKIP)
        rows.append([r["notebook"], r["status"], r["seconds"], r.get("mode", "?"), r.get("device", "?"),
                     r.get("weights", "-"), headline or r.get("error", "")])
    return format_table(["notebook", "status", "seconds", "mode", "device", "weights", "headline"], rows)


def write_report(results, path) -> Path:
    text = "# dfcourse grading report\n\n```\n" + format_report(results) + "\n```\n\n" + total_line(results) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    print()
    print(format_report(results))
    print(total_line(results))
    print(f"\nreport written: {path}")
    return Path(path)
