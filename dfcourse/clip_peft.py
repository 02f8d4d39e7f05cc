"""CLIP ViT-B/32 with a frozen backbone and a small trainable head: a residual
bottleneck adapter on the image embedding and text-prompt fusion.

Heads (``kind``): ``zeroshot`` (prompts only, nothing trained), ``linear`` (a linear probe),
``adapter`` (adapter + linear), ``adapter+prompt`` (adapter, then cosine similarity with
the prompt embeddings, learned temperature and bias). Frozen image features are cached on
disk (``FeatureCache``) so heads train for many epochs without re-encoding.
Used in notebooks/03_clip_peft.ipynb, and by 04 (patch tokens) and 05 (CAMs).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .cam import vit_grid, vit_reshape_transform
from .io import atomic_path

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PROMPTS = ("a photo of a real human face", "a photo of a fake deepfake face")


def find_clip_weights(model_name: str, pretrained: str, path=None) -> Path | None:
    if path:
        return Path(path)
    folder = os.environ.get("DFCOURSE_WEIGHTS_DIR")
    if not folder:
        return None
    for name in (f"{model_name}-{pretrained}.bin", f"{model_name}-{pretrained}.pt",
                 f"{model_name}-{pretrained}.safetensors", f"{model_name}.pt"):
        if (Path(folder).expanduser() / name).is_file():
            return Path(folder).expanduser() / name
    return None


def load_clip(model_name: str = "ViT-B-32", pretrained: str = "openai", weights=None):
    """``(model, tokenizer, note)``. Weights from ``weights``, ``$DFCOURSE_WEIGHTS_DIR``
    (``ViT-B-32-openai.bin``), the open_clip/HF cache or the hub; else random init, said
    in ``note``. Never waits on an absent network (``HF_HUB_OFFLINE=1`` is set then)."""
    import logging

    import open_clip

    from .course import setup_offline

    setup_offline()
    tokenizer = open_clip.get_tokenizer(model_name)
    path = find_clip_weights(model_name, pretrained, weights)
    if path is not None:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such CLIP weights file")
        model = open_clip.create_model(model_name, pretrained=str(path))
        return model.eval(), tokenizer, f"{model_name}: pretrained weights loaded from {path}"
    log = logging.getLogger()
    level = log.level
    log.setLevel(logging.CRITICAL)  # open_clip logs a long download error offline; we say it in one line
    try:
        if pretrained:
            try:
                model = open_clip.create_model(model_name, pretrained=pretrained)
                return model.eval(), tokenizer, f"{model_name}: pretrained '{pretrained}' weights loaded"
            except Exception:  # no cache, no network
                pass
        model = open_clip.create_model(model_name, pretrained=None)
    finally:
        log.setLevel(level)
    return model.eval(), tokenizer, (
        f"{model_name}: pretrained '{pretrained}' weights not found (cache, $DFCOURSE_WEIGHTS_DIR, "
        "network): using RANDOM init")


class Adapter(nn.Module):
    """Residual bottleneck: ``f + scale * up(relu(down(f)))``; starts as the identity."""

    def __init__(self, dim: int = 512, hidden: int = 64, scale: float = 1.0):
        super().__init__()
        self.down, self.up, self.scale = nn.Linear(dim, hidden), nn.Linear(hidden, dim), scale
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, f):
        return f + self.scale * self.up(torch.relu(self.down(f)))


class ClipHead(nn.Module):
    """What trains on top of frozen, L2-normalised CLIP image features. Returns (B, 1) logits
    for *fake*. ``text`` is the (2, dim) prompt embeddings [real, fake]."""

    KINDS = ("zeroshot", "linear", "adapter", "adapter+prompt")

    def __init__(self, kind: str, dim: int, text: torch.Tensor, hidden: int = 64):
        super().__init__()
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {self.KINDS}, not {kind!r}")
        self.kind = kind
        self.register_buffer("text", nn.functional.normalize(text.float(), dim=-1))
        self.adapter = Adapter(dim, hidden) if kind.startswith("adapter") else None
        self.linear = nn.Linear(dim, 1) if kind in ("linear", "adapter") else None
        if kind in ("zeroshot", "adapter+prompt"):
            # CLIP's own temperature (100) to start; learned in adapter+prompt
            self.log_scale = nn.Parameter(torch.tensor(math.log(100.0)), requires_grad=kind != "zeroshot")
            self.bias = nn.Parameter(torch.zeros(1), requires_grad=kind != "zeroshot")

    def forward(self, f):
        f = f.float()
        if self.adapter is not None:
            f = self.adapter(f)
        if self.linear is not None:
            return self.linear(f)
        sims = nn.functional.normalize(f, dim=-1) @ self.text.T  # (B, 2): [real, fake]
        return (self.log_scale.exp() * (sims[:, 1:] - sims[:, :1]) + self.bias)


class ClipDetector(nn.Module):
    """Frozen CLIP image encoder + a :class:`ClipHead`, taking images in [0, 1] at 224 px.
    Exposes ``forward_features`` / ``forward_head``, ``cam_target`` (``ln_1`` of the last
    block) and ``cam_reshape`` (tokens -> grid, side = input / patch size)."""

    def __init__(self, clip, head: ClipHead):
        super().__init__()
        self.clip, self.head = clip, head
        for p in self.clip.parameters():
            p.requires_grad = False
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1))
        size = self.clip.visual.image_size
        self.input_size = size[0] if isinstance(size, (tuple, list)) else size
        patch = self.clip.visual.patch_size
        self.patch_size = patch[0] if isinstance(patch, (tuple, list)) else patch
        self.regime = "frozen"

    def forward_features(self, x):
        return nn.functional.normalize(self.clip.encode_image((x - self.mean) / self.std).float(), dim=-1)

    def forward_head(self, f):
        return self.head(f)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))

    def train(self, mode: bool = True):
        super().train(mode)
        self.clip.eval()  # the backbone never leaves eval mode
        return self

    @property
    def cam_target(self):
        return self.clip.visual.transformer.resblocks[-1].ln_1

    @property
    def cam_reshape(self):
        batch_first = getattr(self.clip.visual.transformer, "batch_first", True)
        return vit_reshape_transform(vit_grid(self.input_size, self.patch_size), batch_first)


@torch.no_grad()
def text_embeddings(clip, tokenizer, prompts=PROMPTS, device="cpu") -> torch.Tensor:
    """CLIP's own text encoder on the prompts, L2-normalised: (len(prompts), dim)."""
    clip.to(device)
    return nn.functional.normalize(clip.encode_text(tokenizer(list(prompts)).to(device)).float(), dim=-1).cpu()


def count_params(module) -> tuple[int, int]:
    total = sum(p.numel() for p in module.parameters())
    return sum(p.numel() for p in module.parameters() if p.requires_grad), total


def weights_fingerprint(clip) -> str:
    """A short hash of the image encoder's weights (tells random inits and checkpoints apart)."""
    h = hashlib.sha1()
    for name, p in sorted(clip.visual.state_dict().items()):
        if name.endswith(("conv1.weight", "class_embedding", "proj", "ln_post.weight")):
            h.update(name.encode())
            h.update(p.detach().cpu().float().numpy().tobytes())
    return h.hexdigest()[:16]


class FeatureCache:
    """Frozen image features on disk, keyed by image content (SHA-1 of the file bytes), the
    model name, its weights and the preprocessing. Any change of those is a different key,
    so a stale feature is never served."""

    def __init__(self, folder, model_name: str, weights_tag: str, preprocess: dict):
        key = json.dumps({"model": model_name, "weights": weights_tag, "preprocess": preprocess}, sort_keys=True)
        self.key = hashlib.sha1(key.encode()).hexdigest()[:16]
        self.path = Path(folder) / f"features_{self.key}.pt"
        self.store: dict[str, torch.Tensor] = {}
        if self.path.is_file():
            self.store = torch.load(self.path, weights_only=True)
        self.hits = self.misses = 0

    @staticmethod
    def content_key(path) -> str:
        return hashlib.sha1(Path(path).read_bytes()).hexdigest()

    def save(self) -> None:
        with atomic_path(self.path) as tmp:
            torch.save(self.store, tmp)


def encode_rows(net: ClipDetector, rows, cache: FeatureCache | None = None, batch_size: int = 32,
                device="cpu") -> torch.Tensor:
    """Normalised image features (N, dim) for index rows: from ``cache`` where present,
    encoded (and added to the cache) otherwise. No augmentation: a cached feature is the
    feature of the unchanged image."""
    from .datasets import load_face, to_tensor

    keys = [FeatureCache.content_key(r["path"]) for r in rows]
    todo = [i for i, k in enumerate(keys) if cache is None or k not in cache.store]
    if cache is not None:
        cache.hits += len(rows) - len(todo)
        cache.misses += len(todo)
    feats: dict[int, torch.Tensor] = {}
    net.eval().to(device)
    with torch.no_grad():
        for s in tqdm(range(0, len(todo), batch_size), desc="encode (CLIP)", leave=False):
            idx = todo[s:s + batch_size]
            x = torch.stack([to_tensor(load_face(rows[i]["path"], net.input_size)) for i in idx]).to(device)
            for i, f in zip(idx, net.forward_features(x).cpu()):
                feats[i] = f
    if cache is not None:
        if todo:
            cache.store.update({keys[i]: feats[i] for i in todo})
            cache.save()
        return torch.stack([feats[i] if i in feats else cache.store[keys[i]] for i in range(len(rows))])
    return torch.stack([feats[i] for i in range(len(rows))])


def make_cache(folder, net: ClipDetector, model_name: str) -> FeatureCache:
    preprocess = {"size": net.input_size, "resize": "bilinear", "mean": CLIP_MEAN, "std": CLIP_STD}
    return FeatureCache(folder, model_name, weights_fingerprint(net.clip), preprocess)


def head_loss(head, batch):
    """BCE for a :class:`ClipHead` on cached features (``(features, label, index)`` batches)."""
    logits = head(batch[0]).squeeze(1)
    return nn.functional.binary_cross_entropy_with_logits(logits.float(), batch[1].float()), logits


@torch.no_grad()
def head_probs(head, features, batch_size: int = 256) -> np.ndarray:
    head.eval()
    return torch.cat([torch.sigmoid(head(features[i:i + batch_size]).float()[:, 0])
                      for i in range(0, len(features), batch_size)]).numpy()


def save_head(path, head: ClipHead, **meta) -> Path:
    """Atomically save a trained head (the frozen CLIP is not saved: it is re-loaded)."""
    with atomic_path(path) as tmp:
        torch.save({"format": "dfcourse-clip-head", "kind": head.kind, "state_dict": head.state_dict(),
                    "meta": meta}, tmp)
    return Path(path)


def load_head(path, text: torch.Tensor, hidden: int = 64) -> ClipHead:
    from .models import read_checkpoint

    ckpt = read_checkpoint(path, "dfcourse-clip-head", "Run notebooks/03_clip_peft.ipynb first.")
    head = ClipHead(ckpt["kind"], text.shape[1], text, hidden)
    head.load_state_dict(ckpt["state_dict"])
    head.meta = ckpt["meta"]
    return head


def load_or_train_clip(course, train_rows, val_rows, model_name="ViT-B-32", pretrained="openai",
                       kind="adapter+prompt", epochs: int = 30):
    """The notebook-03 CLIP detector: its saved head when notebook 03 ran in this mode with
    the same weights, else a head trained here on cached features. Returns ``(net, note)``."""
    from torch.utils.data import TensorDataset

    from .train import TrainConfig, fit

    clip, tok, note = load_clip(model_name, pretrained)
    text = text_embeddings(clip, tok, PROMPTS, course.device)
    path = course.root / "runs" / "checkpoints" / "clip_head_latest.pt"
    tag = weights_fingerprint(clip)
    if path.is_file():
        head = load_head(path, text)
        if head.meta.get("mode") == course.mode and head.meta.get("weights") == tag:
            print(f"notebook-03 CLIP head loaded from {path} ({head.kind})")
            return ClipDetector(clip, head).to(course.device), note
    print(f"no notebook-03 CLIP head for these weights at {path}: training a {kind} head now")
    net = ClipDetector(clip, ClipHead(kind, text.shape[1], text)).to(course.device)
    cache = make_cache(course.data / "feature_cache", net, model_name)
    data = {}
    for name, rows in (("train", train_rows), ("val", val_rows)):
        f = encode_rows(net, rows, cache, device=course.device)
        y = torch.tensor([float(r["label"]) for r in rows])
        data[name] = TensorDataset(f, y, torch.arange(len(y)))
    cfg = TrainConfig(num_epochs=epochs, batch_size=64, lr=1e-3, schedule="cosine", grad_clip=1.0,
                      patience=8, seed=course.seed, log_every=10)
    fit(net.head, data["train"], data["val"], cfg, course.runs / "05_gradcam_analysis" / "clip_head",
        loss_fn=head_loss, name=f"CLIP {kind}")
    save_head(path, net.head, mode=course.mode, weights=tag, model=model_name)
    return net.to(course.device), note
