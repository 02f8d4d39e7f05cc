"""Forgery localization: residual targets, a map-predicting model, its loss and metrics.

The target for a fake is where it differs from its aligned real source:
``|fake - source|`` in grey, lightly blurred, thresholded (compression makes residuals
non-zero everywhere, hence the threshold). Real faces have all-zero maps. A model predicts
an image-level logit and a one-channel map at input resolution; the loss is BCE for the
label plus (BCE + Dice) for the map.
Used in notebooks/04_residual_localization.ipynb and 05; ``predict --localize``.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset

from .datasets import load_face, to_tensor
from .io import read_image


def residual_target(fake, source, threshold: float = 0.05, blur_sigma: float = 1.0) -> np.ndarray:
    """Binary float32 map: grey ``|fake - source|`` in [0, 1], Gaussian-blurred, ``> threshold``."""
    d = np.abs(fake.astype(np.float32) - source.astype(np.float32)).mean(-1) / 255.0
    if blur_sigma > 0:
        d = cv2.GaussianBlur(d, (0, 0), blur_sigma)
    return (d > threshold).astype(np.float32)


def load_map(row, size: int, target: str = "residual", threshold: float = 0.05, blur_sigma: float = 1.0):
    """The supervision map of an index row at ``size``: zeros for real faces; for fakes the
    residual target (needs ``source_path``) or the mask (``mask_path``), whichever is asked,
    falling back to the other when it is missing. ``None`` when a fake has neither."""
    if int(row["label"]) == 0:
        return np.zeros((size, size), np.float32)
    if target == "residual" and row.get("source_path"):
        fake = np.asarray(load_face(row["path"], size))
        return residual_target(fake, np.asarray(load_face(row["source_path"], size)), threshold, blur_sigma)
    if row.get("mask_path"):
        m = read_image(row["mask_path"])[..., 0]
        return (cv2.resize(m, (size, size), interpolation=cv2.INTER_LINEAR) > 127).astype(np.float32)
    if row.get("source_path"):
        return load_map(row, size, "residual", threshold, blur_sigma)
    return None


class LocalizationDataset(Dataset):
    """``(image, label, map (1, H, W), index)``; a flip in augmentation flips the map too.
    Only flips are used: colour/blur/JPEG changes would not change *where* the forgery is,
    but JPEG at low quality blurs the very boundaries the map is about."""

    def __init__(self, rows, size: int, target: str = "residual", threshold: float = 0.05,
                 blur_sigma: float = 1.0, train: bool = False, seed: int = 0):
        self.rows = [r for r in rows if int(r["label"]) == 0 or r.get("source_path") or r.get("mask_path")]
        self.size, self.target, self.threshold, self.blur = size, target, threshold, blur_sigma
        self.train, self.seed, self.epoch = train, seed, 0
        self._maps: dict[int, np.ndarray] = {}

    def __len__(self):
        return len(self.rows)

    def map(self, i) -> np.ndarray:
        if i not in self._maps:
            self._maps[i] = load_map(self.rows[i], self.size, self.target, self.threshold, self.blur)
        return self._maps[i]

    def __getitem__(self, i):
        r = self.rows[i]
        img, m = load_face(r["path"], self.size), self.map(i)
        if self.train and np.random.default_rng([self.seed, self.epoch, i]).random() < 0.5:
            img, m = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT), m[:, ::-1]
        return to_tensor(img), torch.tensor(float(r["label"])), torch.from_numpy(m.copy())[None], i


class ResNetLocalizer(nn.Module):
    """ResNet18 encoder (notebook 02), a light U-Net-style decoder to a one-channel map at
    input resolution, and an image-level logit from the pooled last stage.
    ``forward(x) -> (logit (B, 1), map logits (B, 1, H, W))``."""

    def __init__(self, pretrained: bool = True, width: int = 64):
        super().__init__()
        from .models import IMAGENET_MEAN, IMAGENET_STD, build_detector

        det = build_detector("resnet18", pretrained=pretrained, verbose=pretrained)
        self.pretrained, self.pretrained_note = det.pretrained, det.pretrained_note
        self.encoder = det.backbone
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.lateral = nn.ModuleList([nn.Conv2d(c, width, 1) for c in (64, 128, 256, 512)])
        self.smooth = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.out = nn.Conv2d(width, 1, 1)
        self.cls = nn.Linear(512, 1)
        self.kind = "resnet18"

    def forward(self, x):
        e = self.encoder
        h = (x - self.mean) / self.std
        h = e.maxpool(e.relu(e.bn1(e.conv1(h))))
        feats = []
        for layer in (e.layer1, e.layer2, e.layer3, e.layer4):
            h = layer(h)
            feats.append(h)
        logit = self.cls(torch.flatten(F.adaptive_avg_pool2d(feats[-1], 1), 1))
        y = self.lateral[3](feats[3])
        for k in (2, 1, 0):  # top-down: upsample and add the lateral of the finer stage
            y = F.interpolate(y, size=feats[k].shape[-2:], mode="bilinear", align_corners=False)
            y = y + self.lateral[k](feats[k])
        y = self.out(self.smooth(y))
        return logit, F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


class ClipLocalizer(nn.Module):
    """CLIP ViT patch tokens (frozen, notebook 03) -> a 7x7 grid -> a light conv decoder
    upsampled to input resolution; the image logit from the pooled embedding."""

    def __init__(self, clip, width: int = 128):
        super().__init__()
        from .clip_peft import CLIP_MEAN, CLIP_STD

        self.clip = clip
        for p in clip.parameters():
            p.requires_grad = False
        clip.visual.output_tokens = True
        dim = clip.visual.transformer.width if hasattr(clip.visual.transformer, "width") else 768
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1))
        self.decoder = nn.Sequential(nn.Conv2d(dim, width, 1), nn.ReLU(inplace=True),
                                     nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True),
                                     nn.Conv2d(width, 1, 1))
        out_dim = clip.visual.output_dim
        self.cls = nn.Linear(out_dim, 1)
        size = clip.visual.image_size
        self.input_size = size[0] if isinstance(size, (tuple, list)) else size
        self.kind, self.regime = "clip", "frozen"

    def train(self, mode: bool = True):
        super().train(mode)
        self.clip.eval()
        return self

    def forward(self, x):
        with torch.no_grad():
            pooled, tokens = self.clip.visual((x - self.mean) / self.std)
        n = tokens.shape[1]
        g = int(round(n ** 0.5))
        grid = tokens.float().reshape(len(x), g, g, -1).permute(0, 3, 1, 2)
        y = F.interpolate(self.decoder(grid), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.cls(F.normalize(pooled.float(), dim=-1)), y


def dice_loss(logits, target, eps: float = 1.0):
    """Soft Dice over each map, averaged; ``1 - 2|P.T| / (|P| + |T|)``."""
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    return (1 - (2 * (p * t).sum(1) + eps) / (p.sum(1) + t.sum(1) + eps)).mean()


def make_loss(map_weight: float = 1.0):
    """``loss_fn(net, batch) -> (loss, image logits)`` for :func:`dfcourse.train.fit`:
    BCE on the label + ``map_weight`` x (BCE + Dice) on the map; Dice over fakes only."""
    def loss_fn(net, batch):
        x, y, m = batch[0], batch[1], batch[2]
        logit, map_logits = net(x)
        logit = logit.squeeze(1).float()
        loss = F.binary_cross_entropy_with_logits(logit, y.float())
        map_loss = F.binary_cross_entropy_with_logits(map_logits.float(), m.float())
        fake = y > 0.5
        if fake.any():
            map_loss = map_loss + dice_loss(map_logits[fake].float(), m[fake].float())
        return loss + map_weight * map_loss, logit
    return loss_fn


@torch.no_grad()
def predict_maps(net, dataset, batch_size: int = 32, device="cpu"):
    """``(p_fake (N,), maps (N, H, W) in [0, 1])`` for a :class:`LocalizationDataset`."""
    from torch.utils.data import DataLoader

    net.eval().to(device)
    probs, maps = [], []
    for batch in DataLoader(dataset, batch_size=batch_size):
        logit, m = net(batch[0].to(device))
        probs.append(torch.sigmoid(logit.float()[:, 0]).cpu())
        maps.append(torch.sigmoid(m.float()[:, 0]).cpu())
    return torch.cat(probs).numpy(), torch.cat(maps).numpy()


# ---------------------------------------------------------------- metrics
def iou(pred, gt) -> float:
    """IoU of two binary maps; 1.0 when both are empty."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    union = (pred | gt).sum()
    return float((pred & gt).sum() / union) if union else 1.0


def dice(pred, gt) -> float:
    """Dice = F1 of two binary maps; 1.0 when both are empty."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    s = pred.sum() + gt.sum()
    return float(2 * (pred & gt).sum() / s) if s else 1.0


def pixel_auc(maps, gts, max_pixels: int = 2_000_000, seed: int = 0) -> float:
    """ROC AUC over all pixels of the given maps (subsampled beyond ``max_pixels``)."""
    s, t = np.concatenate([m.ravel() for m in maps]), np.concatenate([g.ravel() for g in gts]).astype(int)
    if len(s) > max_pixels:
        idx = np.random.default_rng(seed).choice(len(s), max_pixels, replace=False)
        s, t = s[idx], t[idx]
    return float(roc_auc_score(t, s)) if 0 < t.sum() < len(t) else float("nan")


def _fakes_with_target(maps, gts, labels=None):
    """(map, binary gt) pairs of fakes whose target is not empty: a fake with nothing to
    localize (the change vanished under the threshold) cannot score IoU either way."""
    labels = [1] * len(maps) if labels is None else labels
    return [(m, g > 0.5) for m, g, y in zip(maps, gts, labels) if int(y) == 1 and (g > 0.5).any()]


def best_threshold(maps, gts, candidates=np.linspace(0.05, 0.95, 19)) -> float:
    """The threshold with the highest mean IoU over the given (validation) fakes."""
    pairs = _fakes_with_target(maps, gts)
    scores = [np.mean([iou(m > t, g) for m, g in pairs]) for t in candidates]
    return float(candidates[int(np.argmax(scores))])


def localization_metrics(maps, gts, labels, image_scores=None, threshold: float = 0.5) -> dict:
    """Over fakes with a non-empty target: pixel AUC, mean IoU and Dice (F1) at ``threshold``.
    Over reals: the false-positive area (mean fraction of pixels above it). Image-level AUC
    from the map maximum (and from ``image_scores`` if given), over all faces."""
    labels = np.asarray(labels).astype(int)
    pairs = _fakes_with_target(maps, gts, labels)
    rl = np.flatnonzero(labels == 0)
    nan = float("nan")
    out = {"threshold": float(threshold), "n_fake": len(pairs), "n_fake_empty_target": int(labels.sum()) - len(pairs),
           "n_real": int(len(rl)),
           "pixel_auc": pixel_auc([m for m, _ in pairs], [g for _, g in pairs]) if pairs else nan,
           "iou": float(np.mean([iou(m > threshold, g) for m, g in pairs])) if pairs else nan,
           "dice": float(np.mean([dice(m > threshold, g) for m, g in pairs])) if pairs else nan,
           "fp_area_real": float(np.mean([(maps[i] > threshold).mean() for i in rl])) if len(rl) else nan}
    if labels.any() and len(rl):
        out["image_auc_map_max"] = float(roc_auc_score(labels, [float(np.max(m)) for m in maps]))
        if image_scores is not None:
            out["image_auc_logit"] = float(roc_auc_score(labels, image_scores))
    return out


def constant_baselines(gts, labels) -> dict:
    """Mean IoU of an all-ones and an all-zeros map, over fakes with a non-empty target."""
    pairs = _fakes_with_target(gts, gts, labels)
    return {"all_ones_iou": float(np.mean([iou(np.ones_like(g), g) for _, g in pairs])),
            "all_zeros_iou": float(np.mean([iou(np.zeros_like(g), g) for _, g in pairs]))}


def localize(net, image, size: int, device="cpu") -> dict:
    """Single-image localization on a face crop (RGB uint8): label, confidence, map, overlay."""
    from .viz import overlay

    face = Image.fromarray(np.asarray(image)).resize((size, size), Image.BILINEAR)
    net.eval().to(device)
    with torch.no_grad():
        logit, m = net(to_tensor(face)[None].to(device))
    p = float(torch.sigmoid(logit.float())[0, 0])
    heat = torch.sigmoid(m.float())[0, 0].cpu().numpy()
    return {"label": "FAKE" if p >= 0.5 else "REAL", "prob_fake": p, "map": heat,
            "overlay": overlay(np.asarray(face), heat)}



def save_localizer(path, net, **meta):
    """Atomically save a :class:`ResNetLocalizer` (loadable with weights_only=True)."""
    from pathlib import Path

    from .io import atomic_path

    if net.kind != "resnet18":
        raise ValueError("only the ResNet18 localizer is saved for predict --localize")
    with atomic_path(path) as tmp:
        torch.save({"format": "dfcourse-localizer", "kind": net.kind, "state_dict": net.state_dict(),
                    "meta": {"pretrained": bool(net.pretrained), **meta}}, tmp)
    return Path(path)


def load_localizer(path, device="cpu"):
    """Rebuild a localizer saved by :func:`save_localizer`; clear errors for anything else."""
    from .models import read_checkpoint

    ckpt = read_checkpoint(path, "dfcourse-localizer", "Run notebooks/04_residual_localization.ipynb "
                           "(or `make course`) first, or pass --localizer PATH.", device)
    net = ResNetLocalizer(pretrained=False)
    net.load_state_dict(ckpt["state_dict"])
    net.meta = ckpt["meta"]
    return net.to(device).eval()


def load_or_train_localizer(course, splits, size: int, cfg, target: str = "residual"):
    """The notebook-04 localizer when it was saved in this mode, else one trained here."""
    from .train import fit

    path = course.root / "runs" / "checkpoints" / "localizer_latest.pt"
    if path.is_file():
        net = load_localizer(path, course.device)
        if net.meta.get("mode") == course.mode:
            print(f"notebook-04 localizer loaded from {path}")
            return net, net.meta.get("size", size)
    print(f"no notebook-04 localizer for {course.mode} mode at {path}: training one now")
    torch.manual_seed(course.seed)
    net = ResNetLocalizer(pretrained=True)
    ds = {s: LocalizationDataset(splits[s], size, target, train=(s == "train"), seed=course.seed)
          for s in ("train", "val")}
    fit(net, ds["train"], ds["val"], cfg, course.runs / "04_residual_localization" / "resnet18",
        loss_fn=make_loss(), name="resnet18-localizer")
    save_localizer(path, net, size=size, mode=course.mode)
    return net, size
