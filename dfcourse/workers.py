"""Worker processes: a pool for ``prepare`` (decode and crop), and how DataLoader workers start.

No worker is forked from the process that starts it: that process runs threads (torch's and
OpenCV's pools; in a notebook also the kernel's I/O, heartbeat and control threads), and a
forked child inherits every lock those threads held at that moment with no thread left to
release it (CPython 3.12 warns on such a fork, 3.14 stopped making it the default). The
``prepare`` pool is started with ``spawn``; DataLoader workers with ``forkserver``
(:func:`loader_context`): they fork from a single-threaded server that imported torch, OpenCV
and the datasets once, so a worker starts in a fraction of a second (``spawn`` would pay the
imports again every epoch). Every worker uses one thread.

While the pool is open the main process's torch keeps the cores the workers leave (at least
one), so N workers plus MTCNN in the main process share the cores instead of fighting over
them (measured: with 2 workers on 2 cores, MTCNN on 2 threads made prepare ~1.4x slower than
on 1). ``workers=0`` runs every task inline.
Used by ``python -m dfcourse prepare --ffpp ... --workers N`` (notebooks/01_data_prep.ipynb) and
by :func:`dfcourse.train.loader_options` (notebooks 02-04).
"""
from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor


def default_workers() -> int:
    """The number of cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


# imported once by the forkserver, so that each DataLoader worker forked from it starts warm
LOADER_PRELOAD = ["numpy", "PIL.Image", "cv2", "torch", "dfcourse.datasets", "dfcourse.selfblend", "dfcourse.demo",
                  "dfcourse.localization"]


def loader_context():
    """The multiprocessing context for DataLoader workers: ``forkserver`` where there is one
    (Linux, macOS), else ``spawn``; never a fork of the (multi-threaded) caller."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    from multiprocessing import forkserver

    if getattr(forkserver._forkserver, "_forkserver_pid", None) is None:  # not started yet
        multiprocessing.set_forkserver_preload(LOADER_PRELOAD)
    return multiprocessing.get_context("forkserver")


def init_loader_worker(worker_id: int) -> None:  # noqa: ARG001 (DataLoader's worker_init_fn signature)
    """Each DataLoader worker: OpenCV on one thread (torch already is: DataLoader sets it), and
    its stacks dumped on SIGUSR1 (as the notebook tests ask of a stalled kernel's workers)."""
    import faulthandler
    import signal

    import cv2

    cv2.setNumThreads(1)
    if hasattr(signal, "SIGUSR1") and sys.__stderr__ is not None:
        faulthandler.register(signal.SIGUSR1, file=sys.__stderr__, all_threads=True)


def _init_worker(parent: int) -> None:
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")  # should torch ever be imported
    import cv2

    cv2.setNumThreads(1)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """A killed ``prepare`` (SIGKILL) leaves its workers waiting for work forever: end them."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


class Workers:
    """``submit(fn, *args)`` -> a Future, run by ``n`` worker processes (inline for ``n == 0``)."""

    def __init__(self, n: int):
        if n < 0:
            raise ValueError(f"workers must be >= 0, got {n}")
        self.n = n
        self.pool = (ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_init_worker, initargs=(os.getpid(),)) if n else None)

    def submit(self, fn, *args) -> Future:
        if self.pool is not None:
            return self.pool.submit(fn, *args)
        fut = Future()
        try:
            fut.set_result(fn(*args))
        except Exception as e:  # delivered by .result(), as from a worker process
            fut.set_exception(e)
        return fut

    def __enter__(self):
        import torch

        self._threads = torch.get_num_threads()
        if self.n:
            torch.set_num_threads(max(1, default_workers() - self.n))
        return self

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self._threads)
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
