"""The notebook harness: where things live, quick or full mode, device, seed, offline.

Every notebook's first code cell after ``parameters`` calls :func:`start`, which prints
one line saying the mode and why, and :func:`ensure_index` builds or finds the data,
so each notebook also runs alone, from any working directory.
Used in every notebook.
"""
from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .demo import CROP_LANDMARKS_FILE, DEMO_VERSION, build_demo, built_version
from .ffpp import prepare_ffpp, prepare_folder
from .io import atomic_path
from .net import setup_offline


def project_root() -> Path:
    """The course folder: ``$DFCOURSE_HOME``, else the checkout this package lives in,
    else the current directory."""
    if os.environ.get("DFCOURSE_HOME"):
        return Path(os.environ["DFCOURSE_HOME"]).expanduser().resolve()
    here = Path(__file__).resolve().parent.parent
    if (here / "notebooks").is_dir() and (here / "pyproject.toml").is_file():
        return here
    return Path.cwd().resolve()


def resolve_device(device: str = "auto") -> str:
    import torch

    if device in ("auto", "", None):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        print(f"DEVICE={device!r} asked for, but no CUDA GPU is visible: using cpu.")
        return "cpu"
    return device


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def detect_layout(root) -> str:
    """``index`` (a CSV or a folder holding index.csv), ``ffpp``, ``folder`` or ``missing``."""
    root = Path(root)
    if root.is_file() and root.suffix == ".csv" or (root / "index.csv").is_file():
        return "index"
    if (root / "original_sequences").is_dir():
        return "ffpp"
    if (root / "train").is_dir():
        return "folder"
    return "missing"


@dataclass
class Course:
    """What a notebook needs to know about this run."""

    notebook: str
    quick: bool
    reason: str
    device: str
    seed: int
    data_root: str
    offline: bool
    root: Path

    @property
    def mode(self) -> str:
        return "quick" if self.quick else "full"

    @property
    def data_label(self) -> str:
        """What the run's numbers are measured on, for titles: "demo data" or the dataset folder."""
        return "demo data" if self.quick else (Path(self.data_root).name or self.data_root)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def figures(self) -> Path:
        p = self.root / "figures"
        p.mkdir(parents=True, exist_ok=True)
        return p

    @property
    def runs(self) -> Path:
        return self.root / "runs" / self.mode

    def figure_path(self, name: str) -> Path:
        return self.figures / f"{self.notebook}_{name}.png"


def start(notebook: str, data_root: str = "", quick=None, seed: int = 0, device: str = "auto") -> Course:
    """Decide quick/full mode, device, seed and offline state; print them in one line.

    Quick mode when ``DFCOURSE_QUICK=1``, when ``quick=True``, or when no real dataset is
    configured (``data_root`` empty or not found): then the embedded demo data is used.
    """
    env_quick = os.environ.get("DFCOURSE_QUICK", "").strip()
    layout = detect_layout(data_root) if data_root else "missing"
    if env_quick in ("1", "true", "yes"):
        is_quick, reason = True, "DFCOURSE_QUICK=1"
    elif quick:
        is_quick, reason = True, "QUICK=True in the parameters cell"
    elif not data_root:
        is_quick, reason = True, "no DATA_ROOT configured: using the embedded demo data"
    elif layout == "missing":
        is_quick, reason = True, f"DATA_ROOT={data_root!r} not found or not a known layout: using the demo data"
    else:
        is_quick, reason = False, f"DATA_ROOT={data_root} ({layout} layout)"
    offline = setup_offline()
    course = Course(notebook, is_quick, reason, resolve_device(device), seed,
                    data_root if not is_quick else "", offline, project_root())
    seed_everything(seed)
    print(f"[dfcourse] {notebook} | mode: {course.mode.upper()} ({reason}) | device: {course.device} "
          f"| seed: {seed} | network: {'offline (HF_HUB_OFFLINE=1)' if offline else 'online'}")
    return course


def ensure_demo(course: Course) -> Path:
    """The embedded demo dataset's index, built on first use (about 20 s on a laptop CPU)."""
    index = course.data / "demo" / "index.csv"
    if index.is_file() and built_version(index.parent) != DEMO_VERSION:
        print(f"{index.parent} was built by demo engine version {built_version(index.parent)}; this course's is "
              f"{DEMO_VERSION} (its forgeries differ): rebuilding it.")
        shutil.rmtree(index.parent)
    if not index.is_file():
        print(f"Building the demo dataset in {index.parent} (first run only) ...")
        build_demo(index.parent, seed=0)
    share_crop_landmarks(index.parent / CROP_LANDMARKS_FILE, landmark_cache(course))
    return index


def landmark_cache(course: Course) -> Path:
    """Where the real crops' landmarks are kept between runs (a face detector runs once per crop)."""
    return course.data / "landmarks" / "landmarks.json"


def share_crop_landmarks(exact: Path, cache: Path) -> None:
    """Put the demo crops' exact landmarks (written by ``build_demo``) into the landmark cache,
    over any a face detector found for the same files, so self-blends of them need no detector."""
    if not exact.is_file():
        return
    known = json.loads(exact.read_text())
    cached = json.loads(cache.read_text()) if cache.is_file() else {}
    if all(cached.get(k) == v for k, v in known.items()):
        return
    with atomic_path(cache) as tmp:
        Path(tmp).write_text(json.dumps({**cached, **known}))


def ensure_index(course: Course, num_frames: int = 32, size: int = 224) -> Path:
    """The index CSV this run uses: the demo data in quick mode; in full mode the given
    index, or the prepared FF++/folder dataset under ``data/prepared/`` (prepared if absent)."""
    if course.quick:
        return ensure_demo(course)
    root = Path(course.data_root)
    layout = detect_layout(root)
    if layout == "index":
        return root if root.suffix == ".csv" else root / "index.csv"
    out = course.data / "prepared" / root.name
    index = out / "index.csv"
    if index.is_file():
        return index
    print(f"Preparing {root} into {out} (resumable; re-run to continue) ...")
    if layout == "ffpp":
        return prepare_ffpp(root, out, num_frames=num_frames, size=size, device=course.device)
    return prepare_folder(root, out, size=size)
