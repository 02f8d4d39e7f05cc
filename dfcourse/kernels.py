"""Headless notebook kernels that say why they died or stalled.

:class:`WatchedClient` is nbclient's ``NotebookClient`` (the engine of ``jupyter nbconvert
--execute``) with three additions:

- the kernel talks over unix sockets in a private folder (ZMQ transport ``ipc``), so no TCP
  port is picked, released and then bound by the kernel: kernels started back to back, or by
  other jobs on the machine, cannot race for a port;
- the kernel's own stderr and stdout (what C libraries, ``faulthandler`` and the OS print, as
  opposed to the cell outputs) go to a log file, and ``faulthandler`` is armed in the kernel by
  this module's IPython extension: a fatal signal prints every thread's stack there, and so
  does ``SIGUSR1``;
- a thread samples the kernel's peak RSS, its child processes' RSS (DataLoader workers) and
  the memory the machine has left.

When the kernel dies, :class:`nbclient.exceptions.DeadKernelError` says how it ended (exit
code or signal), its peak RSS, whether the OOM killer ran, the cell and the last lines of its
stderr. When a cell runs past its timeout, the kernel (and each child process that handles
``SIGUSR1``) dumps its stacks before :class:`nbclient.exceptions.CellTimeoutError` is raised
with the dump and the cell's line being run.

Used by :func:`dfcourse.runner.execute` (``make course``, the notebook tests) and
``benchmarks/stress_notebooks.py``.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from queue import Empty

from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

EXTENSION = __name__  # loaded in the kernel: arms faulthandler
TAIL_LINES = 30
DUMP_LINES = 400


# ----------------------------------------------------------------- in the kernel
def load_ipython_extension(ipython) -> None:  # noqa: ARG001 (IPython's extension entry point)
    """Arm ``faulthandler`` on the kernel's real stderr (the log file), not on the cell output
    stream: a fatal signal (SIGSEGV, SIGABRT, ...) or ``SIGUSR1`` writes every thread's stack."""
    import faulthandler

    try:
        fd = sys.stderr.fileno()  # ipykernel: its copy of the kernel's original stderr
    except (AttributeError, OSError, ValueError):
        fd = 2
    faulthandler.enable(file=fd, all_threads=True)
    faulthandler.register(signal.SIGUSR1, file=fd, all_threads=True)
    os.write(fd, f"dfcourse.kernels: faulthandler armed in kernel pid {os.getpid()} (SIGUSR1 dumps stacks)\n".encode())


# ----------------------------------------------------------------- the watcher
def _proc_status(pid: int) -> dict:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def _kib(field: str) -> int:
    return int(field.split()[0]) * 1024 if field else 0


def _mem_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return _kib(line.split(":", 1)[1])
    except OSError:
        pass
    return None


def oom_kills() -> int | None:
    """The OOM killer's kills on this machine since boot (``/proc/vmstat``), or ``None``."""
    try:
        for line in Path("/proc/vmstat").read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _catches_sigusr1(pid: int) -> bool:
    mask = _proc_status(pid).get("SigCgt", "").strip()
    return bool(mask) and bool(int(mask, 16) & (1 << (signal.SIGUSR1 - 1)))


def _mb(n) -> str:
    return "?" if n is None else f"{n / 2**20:.0f} MB"


class Watch:
    """Samples a process every ``interval`` seconds until it ends or :meth:`stop` is called:
    its peak RSS (``VmHWM``), the peak RSS summed over its child processes, the lowest
    ``MemAvailable`` of the machine."""

    def __init__(self, pid: int, interval: float = 0.5):
        self.pid, self.interval = pid, interval
        self.peak_rss = self.peak_children_rss = 0
        self.min_available = None
        self.oom_before = oom_kills()
        self._stop = threading.Event()
        self.sample()
        self._thread = threading.Thread(target=self._run, name=f"watch-kernel-{pid}", daemon=True)
        self._thread.start()

    def children(self) -> list[int]:
        import psutil

        try:
            return [c.pid for c in psutil.Process(self.pid).children(recursive=True)]
        except psutil.Error:
            return []

    def sample(self) -> bool:
        """One sample; ``False`` once the process is gone."""
        import psutil

        status = _proc_status(self.pid)
        if status:
            self.peak_rss = max(self.peak_rss, _kib(status.get("VmHWM", "")), _kib(status.get("VmRSS", "")))
        else:  # no /proc (macOS), or the process is gone
            try:
                self.peak_rss = max(self.peak_rss, psutil.Process(self.pid).memory_info().rss)
            except psutil.Error:
                return False
        total = 0
        for pid in self.children():
            try:
                total += psutil.Process(pid).memory_info().rss
            except psutil.Error:
                pass
        self.peak_children_rss = max(self.peak_children_rss, total)
        available = _mem_available()
        if available is not None:
            self.min_available = available if self.min_available is None else min(self.min_available, available)
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if not self.sample():
                return

    def stop(self) -> None:
        self._stop.set()

    def summary(self) -> str:
        line = (f"peak RSS: kernel {_mb(self.peak_rss)}, its child processes {_mb(self.peak_children_rss)} "
                f"together at most; lowest memory available on the machine {_mb(self.min_available)}")
        after = oom_kills()
        if self.oom_before is not None and after is not None:
            line += f"; OOM-killer kills on the machine meanwhile: {after - self.oom_before}"
        return line


# ----------------------------------------------------------------- reading the log
def _lines(text: str) -> list[str]:
    """Lines as a terminal would leave them (progress bars redraw with \\r), blank ones dropped."""
    return [ln.rstrip()[:300] for ln in re.split(r"[\r\n]+", text) if ln.strip()]


def _read(path: Path, start: int = 0) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(start)
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def exit_description(returncode) -> str:
    if returncode is None:
        return "is still alive"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown signal"
        return f"killed by signal {-returncode} ({name})"
    return f"exited with code {returncode}"


def _cell_file(source: str) -> str:
    """The file name ipykernel compiles a cell of this source to (``<hash>.py``), or ``""``."""
    try:
        from ipykernel.compiler import get_tmp_hash_seed, murmur2_x86
    except ImportError:
        return ""
    return f"{murmur2_x86(source, get_tmp_hash_seed())}.py"


def _cell_lines(cell, stack: str = "") -> str:
    """The cell's source, and the lines of it that the stack shows running (innermost first)."""
    src = cell.source.splitlines() if cell is not None else []
    out = []
    name = _cell_file(cell.source) if cell is not None else ""
    if name and stack:
        # faulthandler: '  File "/tmp/ipykernel_<pid>/<hash>.py", line N in func', most recent call first
        for n, func in re.findall(rf'File "[^"]*ipykernel_\d+[/\\]{re.escape(name)}", line (\d+) in (\S+)', stack):
            n = int(n)
            if 0 < n <= len(src):
                out.append(f"  running line {n} of the cell (in {func}): {src[n - 1].strip()}")
    if name and stack and not out:
        out.append("  no thread of the kernel is running this cell: it never started it, or is stuck after it "
                   "(a request or reply lost between nbclient and the kernel)")
    shown = src[:12]
    out += [f"    {i + 1:>3}| {s}" for i, s in enumerate(shown)]
    if len(src) > len(shown):
        out.append(f"    ... ({len(src) - len(shown)} more lines)")
    return "\n".join(out)


# ----------------------------------------------------------------- the client
POLL_SLICE = 2.0  # seconds: the longest single wait on a kernel channel


def sliced_get_msg(get_msg, slice_s: float = POLL_SLICE):
    """``get_msg`` (a channel's coroutine) that waits in slices of at most ``slice_s`` until
    its ``timeout`` (``None``: forever) is spent. Each slice polls the socket afresh, and a fresh
    poll sees messages ZMQ already holds: a single long wait on an asyncio ZMQ socket can miss
    the readiness event of a message that arrived, and then sleeps through the whole cell
    timeout with the kernel idle (seen in ``make course``: both ends idle, no bytes queued)."""
    async def get(timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return await get_msg(timeout=slice_s if left is None else min(slice_s, left))
            except Empty:
                if left is not None and left <= slice_s:
                    raise

    get.sliced = True
    return get


class WatchedClient(NotebookClient):
    """``NotebookClient`` whose kernel explains its death or stall (see the module docstring).
    ``log_dir``: where the kernel's log goes; by default a temporary folder, removed
    afterwards unless the run failed (the error names the log)."""

    def __init__(self, nb, log_dir=None, **kw):
        super().__init__(nb, **kw)
        # unix socket paths are limited to ~100 bytes: a short private folder
        self.socket_dir = Path(tempfile.mkdtemp(prefix="dfk-"))
        self._own_log = log_dir is None
        self.log_dir = Path(log_dir) if log_dir else self.socket_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.kernel_log = self.log_dir / "kernel.log"
        self.watch: Watch | None = None
        self._process = None
        self._cell = self._cell_index = None
        self._stack = ""
        self._failed = False
        self.extra_arguments = [*self.extra_arguments, f"--IPKernelApp.extra_extensions={EXTENSION}"]

    def create_kernel_manager(self):
        km = super().create_kernel_manager()
        km.transport = "ipc"
        km.ip = str(self.socket_dir / "k")
        km.cache_ports = False
        return km

    async def async_start_new_kernel(self, **kwargs):
        log = open(self.kernel_log, "ab")  # noqa: SIM115 (the kernel holds it; closed below)
        kwargs.setdefault("stdout", log)
        kwargs.setdefault("stderr", log)
        kwargs.setdefault("env", {**os.environ, "PYTHONFAULTHANDLER": "1"})
        try:
            await super().async_start_new_kernel(**kwargs)
        finally:
            log.close()  # the kernel has its own copy of the descriptor
        self._process = getattr(self.km.provisioner, "process", None)
        if self._process is not None:
            self.watch = Watch(self._process.pid)

    async def async_start_new_kernel_client(self):
        try:
            kc = await super().async_start_new_kernel_client()
        except RuntimeError as e:  # "Kernel died before replying to kernel_info"
            self._failed = True
            raise type(e)(f"{e}\n{self.report(None, 'the kernel did not start')}") from e
        for channel in (kc.shell_channel, kc.iopub_channel):
            if not getattr(channel.get_msg, "sliced", False):
                channel.get_msg = sliced_get_msg(channel.get_msg)
        return kc

    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        self._cell, self._cell_index, self._stack = cell, cell_index, ""
        try:
            return await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        except DeadKernelError as e:
            self._failed = True
            raise DeadKernelError(f"{e}\n{self.report(cell, f'the kernel died in cell {cell_index}')}") from e
        except CellTimeoutError as e:
            self._failed = True
            raise CellTimeoutError(f"{e}\n{self.report(cell, f'cell {cell_index} timed out')}") from e

    async def async_wait_for_reply(self, msg_id, cell=None):
        try:
            return await super().async_wait_for_reply(msg_id, cell)
        except (DeadKernelError, CellTimeoutError) as e:
            if cell is not None:  # a cell's own reply: async_execute_cell reports
                raise
            self._failed = True
            raise type(e)(f"{e}\n{self.report(None, 'the kernel did not answer kernel_info')}") from e

    async def _async_handle_timeout(self, timeout, cell=None):
        self._stack = self.dump_stacks()
        return await super()._async_handle_timeout(timeout, cell)

    def dump_stacks(self, settle: float = 0.5, wait: float = 5.0) -> str:
        """Ask the kernel and each child process that handles SIGUSR1 (forked ones inherit the
        handler; others would die of it) for their stacks; returns what they wrote."""
        if self._process is None or self._process.poll() is not None:
            return ""
        start = self.kernel_log.stat().st_size if self.kernel_log.exists() else 0
        pids = [self._process.pid] + [p for p in (self.watch.children() if self.watch else []) if _catches_sigusr1(p)]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGUSR1)
            except OSError:
                pass
        deadline, size, quiet_since = time.monotonic() + wait, start, time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now = self.kernel_log.stat().st_size
            if now != size:
                size, quiet_since = now, time.monotonic()
            elif size > start and time.monotonic() - quiet_since >= settle:
                break
        return _read(self.kernel_log, start)

    def report(self, cell, what: str) -> str:
        """What is known about the kernel: how it ended, memory, the cell, stacks, stderr tail."""
        rc = self._process.poll() if self._process is not None else None
        if self.watch is not None:
            self.watch.sample()
        parts = [f"--- {what}: kernel pid {self._process.pid if self._process else '?'} "
                 f"{exit_description(rc)}"]
        if self.watch is not None:
            parts.append(self.watch.summary())
        if cell is not None:
            parts.append(f"cell {self._cell_index}:\n{_cell_lines(cell, self._stack)}")
        if self._stack:
            dump = _lines(self._stack)
            parts.append(f"stacks of the kernel and its workers (faulthandler, SIGUSR1), {len(dump)} lines:\n"
                         + "\n".join(dump[:DUMP_LINES]))
        log = _read(self.kernel_log)
        before = log[:len(log) - len(self._stack)] if self._stack and log.endswith(self._stack) else log
        tail = _lines(before)[-TAIL_LINES:]
        parts.append(f"kernel stderr/stdout, last {len(tail)} lines ({self.kernel_log}):\n" + "\n".join(tail))
        return "\n".join(parts)

    async def _async_cleanup_kernel(self):
        try:
            await super()._async_cleanup_kernel()
        finally:
            if self.watch is not None:
                self.watch.stop()
            if not (self._own_log and self._failed):
                shutil.rmtree(self.socket_dir, ignore_errors=True)
