"""A pool of worker processes for ``prepare`` (decode and crop), or none at all.

Workers are started with ``spawn`` (forking a process that already runs torch threads can
hang) and use one thread each; while the pool is open the main process's torch keeps the
cores the workers leave (at least one), so N workers plus MTCNN in the main process share
the cores instead of fighting over them (measured: with 2 workers on 2 cores, MTCNN on 2
threads made prepare ~1.4x slower than on 1). ``workers=0`` runs every task inline.
Used by ``python -m dfcourse prepare --ffpp ... --workers N`` (notebooks/01_data_prep.ipynb).
"""
from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor


def default_workers() -> int:
    """The number of cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


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
