"""Forgery localization: residual targets, a map-predicting model, its loss and metrics.

The target for a fake is where it differs from its aligned real source:
``|fake - source|`` in grey, lightly blurred, thresholded (compression makes residuals
non-zero everywhere, hence the threshold). Real faces have all-zero maps. A model predicts
an image-level logit and a one-channel map at input resolution; the loss is BCE for the
label plus (BCE + Dice) for the map. Its metrics (IoU, Dice, pixel AUC) live in
:mod:`dfcourse.metrics`.
Used in notebooks 04 and 05; ``predict --localize``.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from .clip_peft import load_clip
from .datasets import augment_with_map, load_face, to_tensor
from .io import read_image
from .models import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, Normalize, Weights, build_detector
from .registry import register_model
from .runs import rows_fingerprint
from .synth import residual_target  # noqa: F401 - notebook 04's target, here with its loaders
from .viz import overlay


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
    """``(image, label, map (1, H, W), index)``. In training, ``augment_ops``
    (:func:`dfcourse.datasets.augment`) change the image; a flip flips the map too, and the
    others leave it as it is: a blur or JPEG does not move *where* the forgery is."""

    def __init__(self, rows, size: int, target: str = "residual", threshold: float = 0.05,
                 blur_sigma: float = 1.0, train: bool = False, seed: int = 0, augment_ops=("flip",)):
        self.rows = [r for r in rows if int(r["label"]) == 0 or r.get("source_path") or r.get("mask_path")]
        self.size, self.target, self.threshold, self.blur = size, target, threshold, blur_sigma
        self.train, self.seed, self.epoch, self.augment_ops = train, seed, 0, tuple(augment_ops)
        self._maps: dict[int, np.ndarray] = {}

    def __len__(self):
        return len(self.rows)

    def identity(self) -> dict:
        """What a run trained on this dataset depends on (see :mod:`dfcourse.runs`)."""
        return {"class": "LocalizationDataset", "rows": rows_fingerprint(self.rows), "n": len(self.rows),
                "size": self.size, "target": self.target, "threshold": self.threshold, "blur": self.blur,
                "augment": list(self.augment_ops) if self.train else [], "seed": self.seed}

    def map(self, i) -> np.ndarray:
        if i not in self._maps:
            self._maps[i] = load_map(self.rows[i], self.size, self.target, self.threshold, self.blur)
        return self._maps[i]

    def __getitem__(self, i):
        r = self.rows[i]
        img, m = load_face(r["path"], self.size), self.map(i)
        if self.train:
            img, m = augment_with_map(img, m, np.random.default_rng([self.seed, self.epoch, i]), self.augment_ops)
        return to_tensor(img), torch.tensor(float(r["label"])), torch.from_numpy(m.copy())[None], i


class ResNetLocalizer(nn.Module):
    """ResNet18 encoder (notebook 02), a light U-Net-style decoder to a one-channel map at
    input resolution, and an image-level logit from the pooled last stage.
    ``forward(x) -> (logit (B, 1), map logits (B, 1, H, W))``."""

    def __init__(self, pretrained: bool = True, width: int = 64, weights=None):
        super().__init__()
        det = build_detector("resnet18", pretrained=pretrained, weights=weights, verbose=pretrained)
        self.weights = det.weights
        self.encoder = det.backbone
        self.normalize = Normalize(IMAGENET_MEAN, IMAGENET_STD)
        self.width = width
        self.lateral = nn.ModuleList([nn.Conv2d(c, width, 1) for c in (64, 128, 256, 512)])
        self.smooth = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.out = nn.Conv2d(width, 1, 1)
        self.cls = nn.Linear(512, 1)
        self.arch = "resnet18"

    @property
    def pretrained(self) -> bool:
        return self.weights.loaded

    def forward(self, x):
        e = self.encoder
        h = self.normalize(x)
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


class MesoLocalizer(nn.Module):
    """Meso-4 (notebook 02's small net, random init, with its high-pass input unless
    ``highpass=False``) as the encoder, a top-down decoder over
    its last two blocks (1/4 and 1/8 of the input) to a map upsampled to input resolution,
    and Meso-4's own head for the image logit: about 31k parameters, so it trains from
    scratch on a CPU. The dense map loss is what teaches the encoder the forgery's trace.
    ``forward(x) -> (logit (B, 1), map logits (B, 1, H, W))``."""

    def __init__(self, width: int = 16, highpass: bool = True):
        super().__init__()
        self.encoder = build_detector("meso4", pretrained=False, verbose=False, options={"highpass": highpass})
        self.weights = self.encoder.weights
        self.width, self.highpass = width, highpass
        self.lateral = nn.ModuleList([nn.Conv2d(16, width, 1) for _ in range(2)])  # blocks 3 and 4: 16 channels
        self.smooth = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.out = nn.Conv2d(width, 1, 1)
        self.arch = "meso4"

    @property
    def pretrained(self) -> bool:
        return False

    def forward(self, x):
        enc = self.encoder
        h, feats = enc.prepare(x), []
        for block in enc.backbone[:4]:
            conv, relu, bn, pool = block
            h = bn(relu(conv(h)))
            feats.append(h)  # before pooling: 1, 1/2, 1/4, 1/8 of the input
            h = pool(h)
        logit = enc.forward_head(enc.backbone[4](h))
        y = F.interpolate(self.lateral[1](feats[3]), size=feats[2].shape[-2:], mode="bilinear", align_corners=False)
        y = self.out(self.smooth(y + self.lateral[0](feats[2])))
        return logit, F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


class ClipLocalizer(nn.Module):
    """CLIP ViT patch tokens (frozen, notebook 03) -> a 7x7 grid -> a light conv decoder
    upsampled to input resolution; the image logit from the pooled embedding."""

    def __init__(self, clip, width: int = 128, weights: Weights | None = None):
        super().__init__()
        self.weights = weights or Weights.random("CLIP")
        self.clip = clip
        for p in clip.parameters():
            p.requires_grad = False
        clip.visual.output_tokens = True
        dim = clip.visual.transformer.width if hasattr(clip.visual.transformer, "width") else 768
        self.normalize = Normalize(CLIP_MEAN, CLIP_STD)
        self.decoder = nn.Sequential(nn.Conv2d(dim, width, 1), nn.ReLU(inplace=True),
                                     nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True),
                                     nn.Conv2d(width, 1, 1))
        out_dim = clip.visual.output_dim
        self.cls = nn.Linear(out_dim, 1)
        size = clip.visual.image_size
        self.input_size = size[0] if isinstance(size, (tuple, list)) else size
        self.arch, self.regime = "clip", "frozen"

    @property
    def pretrained(self) -> bool:
        return self.weights.loaded

    def train(self, mode: bool = True):
        super().train(mode)
        self.clip.eval()
        return self

    def forward(self, x):
        with torch.no_grad():
            pooled, tokens = self.clip.visual(self.normalize(x))
        n = tokens.shape[1]
        g = int(round(n ** 0.5))
        grid = tokens.float().reshape(len(x), g, g, -1).permute(0, 3, 1, 2)
        y = F.interpolate(self.decoder(grid), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.cls(F.normalize(pooled.float(), dim=-1)), y


# The localizers, named by their encoder (notebook 04's ENCODER); ``width`` is the decoder's.
@register_model("resnet18", "localizer", display="ResNet18", options={"width": 64})
def build_resnet18_localizer(pretrained: bool = True, weights=None, width: int = 64) -> ResNetLocalizer:
    return ResNetLocalizer(pretrained, width, weights)


@register_model("meso4", "localizer", display="Meso-4", options={"width": 16, "highpass": True}, from_scratch=True,
                labels={"highpass": {False: "plain"}})
def build_meso4_localizer(pretrained: bool = False, weights=None, width: int = 16,
                          highpass: bool = True) -> MesoLocalizer:
    return MesoLocalizer(width, highpass)


@register_model("clip", "localizer", display="CLIP ViT-B/32", input_size=224, saved=False)
def build_clip_localizer(pretrained: bool = True, weights=None) -> ClipLocalizer:
    """Notebook 03's CLIP (OpenAI weights when found, ``pretrained`` or not: the decoder is what trains)."""
    clip, _, clip_weights = load_clip("ViT-B-32", "openai", weights)
    print(clip_weights.note)
    return ClipLocalizer(clip, weights=clip_weights)


def dice_loss(logits, target, eps: float = 1.0):
    """Soft Dice over each map, averaged; ``1 - 2|P.T| / (|P| + |T|)``."""
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    return (1 - (2 * (p * t).sum(1) + eps) / (p.sum(1) + t.sum(1) + eps)).mean()


def real_area(map_logits, y):
    """Soft positive area on the real faces of a batch: the mean of ``sigmoid(map)`` over
    their pixels (0 when the batch has no real face). A map that flags a face-shaped blob
    on a real face pays for every pixel of it."""
    real = y < 0.5
    if not real.any():
        return map_logits.sum() * 0.0
    return torch.sigmoid(map_logits[real].float()).mean()


def make_loss(map_weight: float = 1.0, real_weight: float = 0.0):
    """``loss_fn(net, batch) -> (loss, image logits)`` for :func:`dfcourse.train.fit`:
    BCE on the label + ``map_weight`` x (BCE + Dice) on the map; Dice over fakes only;
    plus ``real_weight`` x :func:`real_area` (the positive area predicted on real faces)."""
    def loss_fn(net, batch):
        x, y, m = batch[0], batch[1], batch[2]
        logit, map_logits = net(x)
        logit = logit.squeeze(1).float()
        loss = F.binary_cross_entropy_with_logits(logit, y.float())
        map_loss = F.binary_cross_entropy_with_logits(map_logits.float(), m.float())
        fake = y > 0.5
        if fake.any():
            map_loss = map_loss + dice_loss(map_logits[fake].float(), m[fake].float())
        if real_weight:
            map_loss = map_loss + real_weight * real_area(map_logits, y)
        return loss + map_weight * map_loss, logit
    loss_fn.spec = {"name": "bce+map(bce+dice)", "map_weight": float(map_weight)}
    if real_weight:
        loss_fn.spec["real_weight"] = float(real_weight)
    return loss_fn


def gate(maps, probs):
    """Image-level gate: each map scaled by its face's predicted probability of *fake*, so
    a face the classifier calls real gets a faint map. ``maps`` (N, H, W), ``probs`` (N,)."""
    return np.asarray(maps) * np.asarray(probs, np.float32)[:, None, None]


@torch.no_grad()
def predict_maps(net, dataset, batch_size: int = 32, device="cpu"):
    """``(p_fake (N,), maps (N, H, W) in [0, 1])`` for a :class:`LocalizationDataset`."""
    net.eval().to(device)
    probs, maps = [], []
    for batch in DataLoader(dataset, batch_size=batch_size):
        logit, m = net(batch[0].to(device))
        probs.append(torch.sigmoid(logit.float()[:, 0]).cpu())
        maps.append(torch.sigmoid(m.float()[:, 0]).cpu())
    return torch.cat(probs).numpy(), torch.cat(maps).numpy()


def localize(net, image, size: int, device="cpu") -> dict:
    """Single-image localization on a face crop (RGB uint8): label, confidence, map, overlay."""
    face = Image.fromarray(np.asarray(image)).resize((size, size), Image.BILINEAR)
    net.eval().to(device)
    with torch.no_grad():
        logit, m = net(to_tensor(face)[None].to(device))
    p = float(torch.sigmoid(logit.float())[0, 0])
    heat = torch.sigmoid(m.float())[0, 0].cpu().numpy()
    return {"label": "FAKE" if p >= 0.5 else "REAL", "prob_fake": p, "map": heat,
            "overlay": overlay(np.asarray(face), heat)}
