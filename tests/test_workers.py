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


def test_demo_views_render_in_a_worker_as_in_the_training_process():
    """Workers receive the training set pickled (no fork): notebook 02/04's online demo views
    must travel, and render the same images in a worker as in the main process."""
    import cv2
    import numpy as np

    from dfcourse.demo import CANONICAL_LANDMARKS, DemoViews, Identity
    from dfcourse.selfblend import EpochConcat
    from dfcourse.train import TrainConfig, loader_options

    rng = np.random.default_rng(0)
    idents = []
    for k in range(2):
        img = cv2.GaussianBlur(rng.uniform(0, 255, (96, 96, 3)).astype(np.float32), (0, 0), 6).astype(np.uint8)
        idents.append(Identity(f"id{k}", img, CANONICAL_LANDMARKS * 48 + 24, np.array([19, 19, 77, 77])))
    views = EpochConcat([DemoViews(idents, 32, views=1, seed=3)])
    views.epoch = 2  # set in the main process, as fit() does before each epoch's loader
    options = loader_options(TrainConfig(device="cpu", num_workers=1))
    (x, y, index) = next(iter(DataLoader(views, batch_size=len(views), **options)))
    here = torch.stack([views[i][0] for i in range(len(views))])
    assert torch.equal(x, here) and index.tolist() == list(range(len(views)))
