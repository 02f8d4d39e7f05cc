"""Run identity: a run is named by a fingerprint of everything that determines its result.

The fingerprint covers the model (class, architecture, regime, which parameters train,
and a hash of its *initial* weights — so a pretrained file, a random init with another
seed and a changed prompt are all different runs), the training configuration, the loss
and its settings, and each dataset (a hash of its rows, paths and labels, plus the
settings that turn rows into tensors: input size, augmentation, target, threshold...).
Same fingerprint: the finished run is reloaded from its folder. Any difference: a new
folder, trained fresh. The CLIP feature cache keys its files the same way.

Used in notebooks 02, 03, 04 and 05 (data fingerprints); :func:`dfcourse.train.fit` and the
CLIP feature cache name their runs with it.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch

from .io import atomic_path


def fingerprint(obj, length: int = 12) -> str:
    """Short SHA-1 of a JSON-able object (keys sorted; tuples as lists)."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()[:length]


def tensors_fingerprint(tensors, length: int = 16) -> str:
    """Hash of tensors' names, shapes and exact values (``{name: tensor}`` or a sequence)."""
    items = sorted(tensors.items()) if isinstance(tensors, dict) else enumerate(tensors)
    h = hashlib.sha1()
    for name, t in items:
        t = torch.as_tensor(t).detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()[:length]


def rows_fingerprint(rows) -> str:
    """Hash of index rows by what a model learns from: each face's path and label (in order)."""
    return fingerprint([[str(r["path"]), int(r["label"])] for r in rows], 16)


def model_identity(net: torch.nn.Module) -> dict:
    """Class, architecture, regime, the names of trainable parameters, initial weights."""
    trainable = [n for n, p in net.named_parameters() if p.requires_grad]
    return {"class": type(net).__name__, "arch": getattr(net, "arch", ""),
            "regime": getattr(net, "regime", ""), "trainable": fingerprint(trainable),
            "weights": tensors_fingerprint(net.state_dict())}


def dataset_identity(ds) -> dict:
    """A dataset's own ``identity()`` (rows + settings); for a ``TensorDataset`` (cached
    features) a hash of its tensors. Anything else cannot be fingerprinted: an error,
    never a silent reuse."""
    if hasattr(ds, "identity"):
        return ds.identity()
    if isinstance(ds, torch.utils.data.TensorDataset):
        return {"class": "TensorDataset", "tensors": tensors_fingerprint(list(ds.tensors)), "n": len(ds)}
    raise TypeError(f"{type(ds).__name__} has no identity(): cannot tell its runs apart. Give it an "
                    "identity() method returning its rows fingerprint and settings.")


def loss_identity(loss_fn) -> dict:
    """A loss function's name and settings (``loss_fn.spec`` when it has one)."""
    return getattr(loss_fn, "spec", {"name": getattr(loss_fn, "__qualname__", repr(loss_fn))})


def run_identity(net, train_ds, val_ds, cfg, loss_fn, **extra) -> dict:
    """Everything that determines a training run's result; ``extra`` adds caller settings."""
    settings = {k: v for k, v in vars(cfg).items() if k not in ("device", "num_workers", "log_every")}
    return {"model": model_identity(net), "config": settings, "loss": loss_identity(loss_fn),
            "train": dataset_identity(train_ds), "val": dataset_identity(val_ds), **extra}


def fresh_requested(fresh: bool = False) -> bool:
    """``fresh=True`` or ``DFCOURSE_FRESH=1``: retrain even when a finished run exists."""
    return bool(fresh) or os.environ.get("DFCOURSE_FRESH", "").strip().lower() in ("1", "true", "yes")


def run_folder(root, identity: dict, fresh: bool = False) -> Path:
    """``root/<fingerprint>``, holding ``identity.json``; emptied first when ``fresh``."""
    folder = Path(root) / fingerprint(identity)
    if fresh_requested(fresh) and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / "identity.json"
    if not spec.is_file():
        with atomic_path(spec) as tmp:
            tmp.write_text(json.dumps(identity, indent=2, sort_keys=True, default=str))
    return folder
