"""CLIP ViT-B/32 with a frozen backbone and a small trainable head: a residual
bottleneck adapter on the image embedding and text-prompt fusion.

Heads (``kind``): ``zeroshot`` (prompts only, nothing trained), ``linear`` (a linear probe),
``adapter`` (adapter + linear), ``adapter+prompt`` (adapter, then cosine similarity with
the prompt embeddings, learned temperature and bias). Frozen image features are cached on
disk (``FeatureCache``) so heads train for many epochs without re-encoding.
OpenAI's CLIP weights were trained with QuickGELU: the model is built with the activation
its weights' tag says (open_clip's pretrained config), wherever the weights come from.
Used in notebooks 03 and 05 (CAMs); notebook 04's CLIP localizer (patch tokens,
:mod:`dfcourse.localization`) builds on it.
"""
from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm import tqdm  # text bars: they also read cleanly in executed (nbconvert) copies

from .cam import vit_grid, vit_reshape_transform
from .net import setup_offline
from .registry import register_model
from .datasets import load_face, to_tensor
from .io import atomic_path
from .models import CLIP_MEAN, CLIP_STD, Normalize, Weights
from .runs import fingerprint, tensors_fingerprint


def _open_clip():
    """open_clip, imported when first needed: it pulls in torchvision's detection ops and takes
    about two seconds, which notebooks that never build a CLIP should not pay."""
    import open_clip

    return open_clip

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


def pretrained_config(model_name: str, pretrained: str) -> dict:
    """open_clip's config of a weights tag (where it is hosted, ``quick_gelu``); ``{}`` for
    a tag open_clip does not know for this model."""
    return _open_clip().get_pretrained_cfg(model_name, pretrained) if pretrained else {}


def _weights_reachable(cfg: dict) -> bool:
    """Online, or the tag's file already in the Hugging Face / open_clip cache."""
    if os.environ.get("HF_HUB_OFFLINE") != "1":
        return True
    if cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache

        repo, filename = os.path.split(cfg["hf_hub"])  # 'org/model/' or 'org/model/file.bin'
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        if any(isinstance(try_to_load_from_cache(repo, n), str) for n in names):
            return True
    url = cfg.get("url", "")
    return bool(url) and (Path.home() / ".cache" / "clip" / os.path.basename(url)).is_file()


def load_clip(model_name: str = "ViT-B-32", pretrained: str = "openai", weights=None):
    """``(model, tokenizer, Weights)``. Weights from ``weights``, ``$DFCOURSE_WEIGHTS_DIR``
    (``ViT-B-32-openai.bin``), the open_clip/HF cache or the hub; else random init, said
    in the record's note. Never waits on an absent network (``HF_HUB_OFFLINE=1`` is set
    then). A weights file that is there but does not load is an error naming it."""
    setup_offline()
    tokenizer = _open_clip().get_tokenizer(model_name)
    cfg = pretrained_config(model_name, pretrained)
    quick_gelu = bool(cfg.get("quick_gelu", pretrained == "openai"))  # OpenAI's CLIPs all use QuickGELU
    path = find_clip_weights(model_name, pretrained, weights)
    if path is not None:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such CLIP weights file")
        try:
            model = _open_clip().create_model(model_name, pretrained=str(path), force_quick_gelu=quick_gelu)
        except Exception as e:
            raise ValueError(f"{path}: cannot load these weights into {model_name} ({e.__class__.__name__}: "
                             f"{str(e)[:200]}). Is it a complete {model_name} '{pretrained}' file? Delete it or "
                             "download it again.") from e
        return model.eval(), tokenizer, Weights(True, str(path), f"{model_name}: pretrained weights loaded "
                                                f"from {path} (quick_gelu={quick_gelu})")
    if pretrained and not cfg:
        raise ValueError(f"{model_name}: open_clip knows no pretrained tag {pretrained!r}; it knows "
                         f"{_open_clip().list_pretrained_tags_by_model(model_name)}. Or put a weights file named "
                         f"{model_name}-{pretrained}.bin in $DFCOURSE_WEIGHTS_DIR.")
    if pretrained and _weights_reachable(cfg):
        model = _open_clip().create_model(model_name, pretrained=pretrained, force_quick_gelu=quick_gelu)
        return model.eval(), tokenizer, Weights(True, f"open_clip:{pretrained}", f"{model_name}: pretrained "
                                                f"'{pretrained}' weights loaded (quick_gelu={quick_gelu})")
    with torch.random.fork_rng():  # the same random CLIP in every notebook, so a head trained on it fits
        torch.manual_seed(0)
        model = _open_clip().create_model(model_name, pretrained=None, force_quick_gelu=quick_gelu)
    why = (f"pretrained '{pretrained}' weights not found: not in $DFCOURSE_WEIGHTS_DIR or the cache, and no "
           "network" if pretrained else "pretrained=''")
    return model.eval(), tokenizer, Weights(False, "", f"{model_name}: random init, seed 0 ({why})")


def uses_quick_gelu(model) -> bool:
    """Does the built CLIP use QuickGELU in its MLPs (what OpenAI's weights need)?"""
    return any(type(m).__name__ == "QuickGELU" for m in model.modules())


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
        self.arch, self.dim, self.hidden = kind, dim, hidden  # arch: the head's kind, its registry name
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


def _register_heads():
    """Each kind of :class:`ClipHead` in the registry (task ``clip_head``): what a checkpoint
    rebuilds it from (``dim``, ``hidden``; the prompt embeddings come with its weights)."""
    for kind in ClipHead.KINDS:
        @register_model(kind, "clip_head", display=f"CLIP {kind}", options={"dim": 512, "hidden": 64})
        def build(pretrained: bool = False, weights=None, dim: int = 512, hidden: int = 64, kind=kind) -> ClipHead:
            return ClipHead(kind, dim, torch.zeros(2, dim), hidden)


_register_heads()


class ClipDetector(nn.Module):
    """Frozen CLIP image encoder + a :class:`ClipHead`, taking images in [0, 1] at 224 px.
    Exposes ``forward_features`` / ``forward_head``, ``cam_target`` (``ln_1`` of the last
    block) and ``cam_reshape`` (tokens -> grid, side = input / patch size)."""

    def __init__(self, clip, head: ClipHead):
        super().__init__()
        self.clip, self.head = clip, head
        for p in self.clip.parameters():
            p.requires_grad = False
        self.normalize = Normalize(CLIP_MEAN, CLIP_STD)
        size = self.clip.visual.image_size
        self.input_size = size[0] if isinstance(size, (tuple, list)) else size
        patch = self.clip.visual.patch_size
        self.patch_size = patch[0] if isinstance(patch, (tuple, list)) else patch
        self.regime = "frozen"

    def forward_features(self, x):
        return nn.functional.normalize(self.clip.encode_image(self.normalize(x)).float(), dim=-1)

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


def weights_fingerprint(clip) -> str:
    """A short hash of the image encoder's weights (tells random inits and checkpoints apart)."""
    return tensors_fingerprint({k: v for k, v in clip.visual.state_dict().items()
                                if k.endswith(("conv1.weight", "class_embedding", "proj", "ln_post.weight"))})


class FeatureCache:
    """Frozen image features on disk, keyed by image content (SHA-1 of the file bytes), the
    model name, its weights and the preprocessing. Any change of those is a different key,
    so a stale feature is never served."""

    def __init__(self, folder, model_name: str, weights_tag: str, preprocess: dict):
        self.key = fingerprint({"model": model_name, "weights": weights_tag, "preprocess": preprocess}, 16)
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
    return _encode(net, [FeatureCache.content_key(r["path"]) for r in rows],
                   lambda i: load_face(rows[i]["path"], net.input_size), cache, batch_size, device)


def encode_images(net: ClipDetector, images, cache: FeatureCache | None = None, batch_size: int = 32,
                  device="cpu") -> torch.Tensor:
    """As :func:`encode_rows` for faces in memory (RGB uint8 arrays, e.g. fresh self-blends),
    cached under a hash of their pixels; each is resized to the model's input like a file."""
    keys = [hashlib.sha1(f"{a.shape}".encode() + np.ascontiguousarray(a).tobytes()).hexdigest() for a in images]
    size = (net.input_size, net.input_size)

    def face(i):
        img = Image.fromarray(np.asarray(images[i]))
        return img if img.size == size else img.resize(size, Image.BILINEAR)

    return _encode(net, keys, face, cache, batch_size, device)


def _encode(net, keys, face, cache, batch_size, device) -> torch.Tensor:
    todo = [i for i, k in enumerate(keys) if cache is None or k not in cache.store]
    if cache is not None:
        cache.hits += len(keys) - len(todo)
        cache.misses += len(todo)
    feats: dict[int, torch.Tensor] = {}
    net.eval().to(device)
    with torch.no_grad():
        for s in tqdm(range(0, len(todo), batch_size), desc="encode (CLIP)", leave=False):
            idx = todo[s:s + batch_size]
            x = torch.stack([to_tensor(face(i)) for i in idx]).to(device)
            for i, f in zip(idx, net.forward_features(x).cpu()):
                feats[i] = f
    if cache is not None:
        if todo:
            cache.store.update({keys[i]: feats[i] for i in todo})
            cache.save()
        return torch.stack([feats[i] if i in feats else cache.store[keys[i]] for i in range(len(keys))])
    return torch.stack([feats[i] for i in range(len(keys))])


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
    device = next(head.parameters()).device
    return torch.cat([torch.sigmoid(head(features[i:i + batch_size].to(device)).float()[:, 0]).cpu()
                      for i in range(0, len(features), batch_size)]).numpy()
