"""The training engine shared by notebooks 02, 03 and 04.

AdamW (or Adam), optional cosine schedule and gradient clipping, early stopping on the
validation loss, best weights chosen on validation only. Seeded: the same seed gives the
same numbers on a CPU. AMP and channels_last on CUDA. ``tqdm`` progress, a per-epoch log
line and ``train_log.csv``.

Every run lives in a folder named by its identity (:mod:`dfcourse.runs`): the model and
its initial weights, the configuration, the loss and the data. ``last.pt`` is written
atomically every epoch, so a stopped run resumes where it was, and a finished run *of
the same identity* is reloaded instead of retrained; change any setting and it is a new
run. ``fresh=True`` (or ``DFCOURSE_FRESH=1``) retrains regardless.
Used in notebook 03; notebooks 02 and 04 train through :mod:`dfcourse.recipes`.
"""
from __future__ import annotations

import contextlib
import csv
import functools
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader
from tqdm import tqdm  # text bars: they also read cleanly in executed (nbconvert) copies

from .io import atomic_path
from .runs import fingerprint, run_folder, run_identity
from .workers import init_loader_worker, loader_context


@dataclass
class TrainConfig:
    num_epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3                # from scratch 1e-4 barely moves in a few epochs (benchmarks/ablate_detector.py)
    weight_decay: float = 1e-4
    optimizer: str = "adamw"        # "adamw" or "adam"
    schedule: str = "none"          # "none" or "cosine"
    grad_clip: float = 0.0          # max gradient norm; 0 = off
    patience: int = 5               # epochs without val-loss improvement before stopping (3 stops
                                    # random-init runs on a noisy val loss before they learn)
    seed: int = 0
    device: str = "cpu"
    amp: bool = True                # mixed precision, CUDA only
    channels_last: bool = True      # CUDA only
    num_workers: int = -1           # DataLoader workers; -1: none on a CPU, up to 8 beside a GPU
    log_every: int = 1              # print every n-th epoch (and the last, and stops)
    # options benchmarks/ablate_detector.py compares:
    pos_weight: float = 1.0         # weight of the fake class in the BCE (instead of downsampling)
    warmup_epochs: int = 0          # linear learning-rate warm-up over the first epochs
    monitor: str = "val_loss"       # what early stopping and the best epoch follow: "val_loss" or
                                    # "val_auc" (a random-init net's val loss can sit at 0.69 while its AUC rises)


def bce_loss(net, batch, pos_weight: float = 1.0):
    """Binary cross-entropy on a one-logit classifier; returns ``(loss, scores)``.
    With a frozen backbone the features are computed without autograd (faster).
    ``pos_weight`` weighs the fake class (e.g. n_real / n_fake on unbalanced rows)."""
    x, y = batch[0], batch[1]
    frozen = getattr(net, "regime", "full") == "frozen"
    with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
        features = net.forward_features(x)
    logits = net.forward_head(features).squeeze(1)
    pw = torch.tensor(pos_weight, device=logits.device) if pos_weight != 1.0 else None
    return torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), y.float(), pos_weight=pw), logits


def _to(batch, device, channels_last):
    out = []
    for b in batch:
        if torch.is_tensor(b):
            b = b.to(device, non_blocking=True)
            if channels_last and b.ndim == 4:
                b = b.contiguous(memory_format=torch.channels_last)
        out.append(b)
    return out


def loader_options(cfg_or_device, num_workers: int = -1) -> dict:
    """DataLoader workers and pinned memory: on a GPU, decoding and augmenting in worker
    processes (up to 8, one core left) and pinned host memory keep the GPU fed; on a CPU
    the main process does it (workers would only compete with training for the cores),
    unless ``num_workers`` asks for some. Workers start from a fork server, never as forks
    of this multi-threaded process, on one thread each (:mod:`dfcourse.workers`)."""
    device = str(getattr(cfg_or_device, "device", cfg_or_device))
    workers = getattr(cfg_or_device, "num_workers", num_workers)
    cuda = device.startswith("cuda")
    if workers < 0:
        workers = min(8, max(1, (os.cpu_count() or 2) - 1)) if cuda else 0
    options = {"num_workers": workers, "pin_memory": cuda, "persistent_workers": workers > 0}
    if workers > 0:
        options.update(multiprocessing_context=loader_context(), worker_init_fn=init_loader_worker)
    return options


def _autocast(cfg):
    on = cfg.amp and str(cfg.device).startswith("cuda")
    return torch.autocast("cuda", dtype=torch.float16, enabled=True) if on else torch.autocast("cpu", enabled=False)


def run_epoch(net, loader, cfg, loss_fn=bce_loss, optimizer=None, scaler=None, desc=""):
    """One pass; trains when ``optimizer`` is given. Returns ``(mean loss, scores, labels)``."""
    train = optimizer is not None
    net.train(train)
    cl = cfg.channels_last and str(cfg.device).startswith("cuda")
    total, n, scores, labels = 0.0, 0, [], []
    with torch.set_grad_enabled(train):
        for batch in tqdm(loader, desc=desc, leave=False):
            batch = _to(batch, cfg.device, cl)
            with _autocast(cfg):
                loss, s = loss_fn(net, batch)
            if train:
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if cfg.grad_clip:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
                scaler.step(optimizer)
                scaler.update()
            k = len(batch[1])
            total, n = total + float(loss.detach()) * k, n + k
            scores.append(s.detach().float().reshape(k, -1)[:, 0].cpu())
            labels.append(batch[1].detach().cpu().reshape(k, -1)[:, 0])
    return total / max(n, 1), torch.cat(scores).numpy(), torch.cat(labels).numpy()


def fit(net, train_ds, val_ds, cfg: TrainConfig, run_root, loss_fn=bce_loss, name: str = "",
        fresh: bool = False, **settings) -> dict:
    """Train ``net`` in place and leave it holding the best-validation weights.

    The run folder is ``run_root/<identity fingerprint>``; ``settings`` (e.g. the weights
    source) join the identity. Returns ``{"history", "best_epoch", "best_val_loss",
    "seconds", "resumed", "reloaded", "run_dir", "identity"}``.
    """
    identity = run_identity(net, train_ds, val_ds, cfg, loss_fn, **settings)
    run_dir = run_folder(run_root, identity, fresh)
    torch.manual_seed(cfg.seed)
    net.to(cfg.device)
    if cfg.channels_last and str(cfg.device).startswith("cuda"):
        net.to(memory_format=torch.channels_last)
    params = [p for p in net.parameters() if p.requires_grad]
    opt_cls = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}[cfg.optimizer]
    optimizer = opt_cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.num_epochs)
             if cfg.schedule == "cosine" else None)
    if cfg.warmup_epochs:  # epoch e (from 0) runs at lr * min(1, (e + 1) / (warmup + 1)), then cosine if asked
        cos = (lambda e: 0.5 * (1 + np.cos(np.pi * e / cfg.num_epochs))) if sched else (lambda e: 1.0)
        sched = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda e: min(1.0, (e + 1) / (cfg.warmup_epochs + 1)) * cos(e))
    if loss_fn is bce_loss and cfg.pos_weight != 1.0:
        loss_fn = functools.partial(bce_loss, pos_weight=cfg.pos_weight)
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and str(cfg.device).startswith("cuda"))
    val_loader = DataLoader(val_ds, batch_size=cfg.batch_size, **loader_options(cfg))
    key = fingerprint(identity)

    state = {"epoch": 0, "history": [], "best_val": float("inf"), "best_epoch": 0, "bad": 0, "done": False}
    last, best = run_dir / "last.pt", run_dir / "best.pt"
    resumed = False
    if last.is_file():
        ckpt = torch.load(last, map_location=cfg.device, weights_only=True)
        if ckpt.get("key") == key:
            net.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            if sched is not None:
                sched.load_state_dict(ckpt["scheduler"])
            state, resumed = ckpt["state"], True
            if state["done"]:
                print(f"{name}: reloaded the finished run of these exact settings from {run_dir} "
                      f"(best epoch {state['best_epoch']}; FRESH=True or DFCOURSE_FRESH=1 retrains)")
            else:
                print(f"{name}: resuming {run_dir} at epoch {state['epoch']}/{cfg.num_epochs}")
    if not resumed:
        print(f"{name}: new run in {run_dir}")
    reloaded = resumed and state["done"]
    t0 = time.time()
    with threads_beside_workers(cfg):
        _train_epochs(net, train_ds, val_loader, cfg, loss_fn, optimizer, sched, scaler, state, key, run_dir, name)
    if best.is_file():
        net.load_state_dict(torch.load(best, map_location=cfg.device, weights_only=True)["model"])
    net.eval()
    return {"history": state["history"], "best_epoch": state["best_epoch"],
            "best_val_loss": state["best_val"], "seconds": time.time() - t0, "resumed": resumed,
            "reloaded": reloaded, "run_dir": run_dir, "identity": identity}


def _train_epochs(net, train_ds, val_loader, cfg, loss_fn, optimizer, sched, scaler, state, key, run_dir, name):
    """The epochs of :func:`fit` still to run; ``state`` is updated and checkpointed after each."""
    last, best = run_dir / "last.pt", run_dir / "best.pt"
    while not state["done"] and state["epoch"] < cfg.num_epochs:
        epoch = state["epoch"] + 1
        if hasattr(train_ds, "epoch"):
            train_ds.epoch = epoch
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        loader = DataLoader(train_ds, batch_size=cfg.batch_size, shuffle=True, generator=gen,
                            drop_last=len(train_ds) > cfg.batch_size, **{**loader_options(cfg),
                                                                         "persistent_workers": False})
        te = time.time()
        train_loss, _, _ = run_epoch(net, loader, cfg, loss_fn, optimizer, scaler, desc=f"epoch {epoch}")
        val_loss, s, y = run_epoch(net, val_loader, cfg, loss_fn, desc="val")
        if sched is not None:
            sched.step()
        row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
               "val_auc": float(roc_auc_score(y, s)) if len(np.unique(y)) == 2 else float("nan"),
               "lr": optimizer.param_groups[0]["lr"], "seconds": time.time() - te}
        state["history"].append(row)
        watched = -row["val_auc"] if cfg.monitor == "val_auc" and np.isfinite(row["val_auc"]) else val_loss
        improved = watched < state["best_val"] - 1e-6  # best_val holds -AUC when monitor="val_auc"
        if improved:
            state.update(best_val=watched, best_epoch=epoch, bad=0)
            with atomic_path(best) as tmp:
                torch.save({"model": net.state_dict(), "epoch": epoch}, tmp)
        else:
            state["bad"] += 1
        state["epoch"] = epoch
        state["done"] = state["bad"] >= cfg.patience or epoch >= cfg.num_epochs
        with atomic_path(last) as tmp:
            torch.save({"key": key, "model": net.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": sched.state_dict() if sched else {}, "state": state}, tmp)
        _write_log(run_dir / "train_log.csv", state["history"])
        if epoch % cfg.log_every == 0 or state["done"]:
            print(f"{name} epoch {epoch}/{cfg.num_epochs}: train loss {train_loss:.4f} | val loss "
                  f"{val_loss:.4f} | val AUC (frame) {row['val_auc']:.3f} | {row['seconds']:.1f} s"
                  + ("  *best*" if improved else ""))
        if state["bad"] >= cfg.patience:
            print(f"{name}: early stop, {cfg.monitor.replace('_', ' ')} has not improved for {cfg.patience} epochs")


@contextlib.contextmanager
def threads_beside_workers(cfg):
    """On a CPU, DataLoader workers (``cfg.num_workers > 0``) take cores from training: torch
    runs with that many fewer threads meanwhile (at least one). Online rendering (notebook 02's
    demo views) then runs beside the train step instead of before each batch."""
    workers = getattr(cfg, "num_workers", 0)
    if workers <= 0 or str(cfg.device).startswith("cuda"):
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, before - workers))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _write_log(path, history):
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(history[0]))
        w.writeheader()
        w.writerows(history)


@torch.no_grad()
def predict_probs(net, dataset, batch_size: int = 64, device="cpu", amp: bool = True,
                  progress: bool = True) -> np.ndarray:
    """Probability of *fake* for every item of ``dataset`` (no augmentation); ``progress=False``
    hides the bar (callers that loop over many sets show their own)."""
    net.eval().to(device)
    cuda = str(device).startswith("cuda")
    loader = DataLoader(dataset, batch_size=batch_size, **loader_options(device))
    out = []
    for batch in tqdm(loader, desc="predict", leave=False, disable=not progress):
        x = batch[0].to(device, non_blocking=True)
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.float16, enabled=amp and cuda):
            logits = net(x)
        out.append(torch.sigmoid(logits.float().reshape(len(x), -1)[:, 0]).cpu())
    return torch.cat(out).numpy() if out else np.zeros(0)

