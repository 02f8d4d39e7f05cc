"""One checkpoint registry: where the course's trained models live, how they are written
and read, and :func:`load_or_train` for notebooks that need an earlier notebook's model.

Kinds and who makes them: ``detector`` (notebook 02; ``predict``), ``clip_head``
(notebook 03), ``localizer`` (notebook 04; ``predict --localize``). Each lives at
``<course>/runs/checkpoints/<kind>_latest.pt`` as ``{"format", "build", "state_dict",
"meta"}``, written atomically and read with ``weights_only=True``. ``build`` is the model's
name and options in :mod:`dfcourse.registry` (``{"arch": "meso4", "highpass": True}``), which
rebuilds it; checkpoints of older versions (``meso4-plain``, ``encoder``, ``kind``) still load.
``meta`` round-trips whole: mode, the starting-weights record (pretrained or not, from where), input size,
the run folder and the data it was trained on.
Used in notebooks 02, 03, 04 and 05, and by ``predict``.
"""
from __future__ import annotations

from pathlib import Path

import torch

from . import clip_peft, localization, models  # noqa: F401 - they register the models saved here
from .io import atomic_path
from .models import Weights
from .registry import create_model, model_spec, options_of

MADE_BY = {"detector": "notebooks/02_resnet_baseline.ipynb", "clip_head": "notebooks/03_clip_peft.ipynb",
           "localizer": "notebooks/04_residual_localization.ipynb"}


def checkpoint_path(root, kind: str) -> Path:
    """``<root>/runs/checkpoints/<kind>_latest.pt``."""
    if kind not in MADE_BY:
        raise ValueError(f"unknown checkpoint kind {kind!r}; choose from {sorted(MADE_BY)}")
    return Path(root) / "runs" / "checkpoints" / f"{kind}_latest.pt"


def _how_to_make(kind: str) -> str:
    return f"Run {MADE_BY[kind]} (or `make course`) to make one, or pass the path of one."


def _build_spec(kind: str, net) -> dict:
    """The registry name (``arch``) and options that rebuild ``net``."""
    spec = model_spec(getattr(net, "arch", type(net).__name__), kind)
    if not spec.saved:
        raise ValueError(f"{spec.title()} {kind}s are not saved: rebuild it in {MADE_BY[kind]}")
    return {"arch": net.arch, **options_of(net, kind)}


def _rebuild(kind: str, build: dict):
    """The model a build spec describes, random init. Older checkpoints named it ``encoder``
    (localizers) or ``kind`` (CLIP heads); an option they lack takes the registry's default."""
    key = next(k for k in ("arch", "encoder", "kind") if k in build)
    options = {k: v for k, v in build.items() if k not in ("arch", "encoder", "kind")}
    return create_model(build[key], kind, pretrained=False, options=options)


def save(path, kind: str, net, **meta) -> Path:
    """Write ``net`` as a ``kind`` checkpoint; its starting-weights record joins ``meta``."""
    weights = getattr(net, "weights", None)
    meta = {**({"weights": weights.as_meta(), "pretrained": weights.loaded} if weights else {}), **meta}
    with atomic_path(path) as tmp:
        torch.save({"format": f"dfcourse-{kind}", "build": _build_spec(kind, net),
                    "state_dict": net.state_dict(), "meta": meta}, tmp)
    return Path(path)


def read(path, kind: str, device="cpu") -> dict:
    """The checkpoint dict, checked: a missing, unreadable, foreign or incomplete file is a
    ``FileNotFoundError``/``ValueError`` naming it and saying how to make a good one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint. {_how_to_make(kind)}")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({e.__class__.__name__}). "
                         f"{_how_to_make(kind)}") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != f"dfcourse-{kind}":
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path}: not a {kind} checkpoint (format {found!r}). {_how_to_make(kind)}")
    missing = [k for k in ("build", "state_dict", "meta") if not isinstance(ckpt.get(k), dict)]
    if missing:
        raise ValueError(f"{path}: incomplete {kind} checkpoint (no {', '.join(missing)}); it was not written "
                         f"by this version of dfcourse. {_how_to_make(kind)}")
    return ckpt


def load(path, kind: str, device="cpu"):
    """Rebuild a ``kind`` model from its checkpoint; ``net.meta`` and ``net.weights`` are
    the saved ones. Weights that do not fit give a clear error, not a shape dump."""
    path = Path(path)
    ckpt = read(path, kind, device)
    b = ckpt["build"]
    try:
        net = _rebuild(kind, b)
        net.load_state_dict(ckpt["state_dict"])
    except (StopIteration, KeyError, TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"{path}: its weights do not fit the {kind} it describes ({e.__class__.__name__}); "
                         f"it was saved by another model definition. {_how_to_make(kind)}") from None
    net.meta = ckpt["meta"]
    net.weights = Weights.from_meta(ckpt["meta"])
    return net.to(device).eval()


def load_or_train(course, kind: str, train, data: str, **require):
    """The ``kind`` model its notebook saved in this mode on this data (``data``: a
    fingerprint of the index, e.g. :func:`dfcourse.runs.rows_fingerprint`) with every
    ``require``-d meta value (e.g. ``clip=`` the CLIP weights a head was trained on);
    otherwise ``train()`` — that notebook's own recipe, returning ``(net, meta)`` — runs,
    and its model is saved where the notebook would have saved it. Returns the model."""
    path = checkpoint_path(course.root, kind)
    why = "none saved yet"
    if path.is_file():
        try:
            net = load(path, kind, course.device)
        except (ValueError, FileNotFoundError) as e:
            why = str(e)
        else:
            want = {"mode": course.mode, "data": data, **require}
            differ = [k for k, v in want.items() if net.meta.get(k) != v]
            if not differ:
                print(f"{kind} from {MADE_BY[kind]} loaded: {path} ({net.meta.get('name', kind)}, "
                      f"{net.weights.label}, {course.mode} mode, run {net.meta.get('run_dir', '?')})")
                return net
            why = f"it differs in {', '.join(differ)}: {', '.join(f'{net.meta.get(k)!r}' for k in differ)}"
    print(f"no usable {kind} at {path} ({why}): training it now with the recipe of {MADE_BY[kind]}")
    net, meta = train()
    save(path, kind, net, mode=course.mode, data=data, **meta)
    net.meta = {**meta, "mode": course.mode, "data": data}
    return net
