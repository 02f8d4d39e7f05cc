import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never wait on the network in tests
os.environ.setdefault("GOMP_SPINCOUNT", "10000")  # as the Makefile: benchmarks/bench_thread_policy.py


@pytest.fixture(scope="session")
def detector():
    from dfcourse.faces import FaceDetector

    return FaceDetector()


@pytest.fixture(scope="session")
def astronaut():
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def ffpp_mini(tmp_path_factory):
    """A miniature FF++ tree of short mp4 clips written with OpenCV."""
    from dfcourse.demo import build_ffpp_mini

    return build_ffpp_mini(tmp_path_factory.mktemp("ffpp"), num_frames=5)


@pytest.fixture(scope="session")
def demo_index(tmp_path_factory):
    from dfcourse.demo import build_demo

    return build_demo(tmp_path_factory.mktemp("demo"), size=64, frames_per_id=2, num_lfw=12)


@pytest.fixture(scope="session")
def course_home(tmp_path_factory):
    """A fresh course folder: data/, figures/, runs/ land here, not in the checkout. Shared
    by the session, so the notebooks run in order (01..05, test_notebooks.py) leave their
    checkpoints for the browser test of notebook 05 (test_notebooks_in_browser.py)."""
    return tmp_path_factory.mktemp("course_home")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def detector_checkpoint(tmp_path_factory):
    """A random-init ResNet18 detector saved through the registry, as notebook 02 saves one."""
    import torch

    from dfcourse.checkpoints import save
    from dfcourse.models import build_detector

    torch.manual_seed(0)
    net = build_detector("resnet18", pretrained=False, verbose=False)
    return save(tmp_path_factory.mktemp("ck") / "det.pt", "detector", net, size=64)
