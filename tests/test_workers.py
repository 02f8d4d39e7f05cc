"""DataLoader workers (dfcourse/workers.py, train.loader_options): none is a fork of the
multi-threaded training process, and each runs OpenCV and torch on one thread."""
import os

import torch
from torch.utils.data import DataLoader, Dataset


class WhoAmI(Dataset):
    """Each item: the worker's parent pid, OpenCV's and torch's thread counts, SIGUSR1 handled."""

    def __len__(self):
        return 2

    def __getitem__(self, i):
        import cv2

        from dfcourse.kernels import _catches_sigusr1

        return torch.tensor([os.getppid(), cv2.getNumThreads(), torch.get_num_threads(),
                             int(_catches_sigusr1(os.getpid()))])


def test_loader_workers_start_from_a_fork_server_on_one_thread():
    from dfcourse.train import TrainConfig, loader_options

    options = loader_options(TrainConfig(device="cpu", num_workers=1))
    assert options["multiprocessing_context"].get_start_method() in ("forkserver", "spawn")
    (batch,) = list(DataLoader(WhoAmI(), batch_size=2, **options))
    parent, cv_threads, torch_threads, dumps = batch[0].tolist()
    assert parent != os.getpid(), "the worker was forked from the training process"
    assert (cv_threads, torch_threads, dumps) == (1, 1, 1)
    assert "multiprocessing_context" not in loader_options(TrainConfig(device="cpu"))  # no workers: nothing started
