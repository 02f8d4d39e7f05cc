"""Face-forgery classifiers with a clean seam: ``forward_features`` / ``forward_head`` and
a named ``cam_target`` layer for Grad-CAM, plus pretrained-weight loading that never
waits on a network that is not there.

Weights are looked for, in order: an explicit path; ``$DFCOURSE_WEIGHTS_DIR/<file>``;
the torch hub cache (``~/.cache/torch/hub/checkpoints/<file>``); the network, only when it
is reachable. Otherwise the model keeps its random init and one line says so.
Used in notebooks/02_resnet_baseline.ipynb, 04 and 05, and by ``predict``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FACENET_MEAN, FACENET_STD = (0.5, 0.5, 0.5), (128 / 255, 128 / 255, 128 / 255)  # (x - 127.5) / 128


@dataclass(frozen=True)
class WeightSpec:
    filename: str
    url: str


WEIGHTS = {
    "resnet18": WeightSpec("resnet18-f37072fd.pth",
                           "https://download.pytorch.org/models/resnet18-f37072fd.pth"),
    "inception": WeightSpec("20180402-114759-vggface2.pt",
                            "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/"
                            "20180402-114759-vggface2.pt"),
}


def find_weights(arch: str, path=None) -> Path | None:
    """The first local weights file for ``arch``: ``path``, the weights folder, the hub cache."""
    spec = WEIGHTS[arch]
    candidates = [Path(path)] if path else []
    if os.environ.get("DFCOURSE_WEIGHTS_DIR"):
        candidates.append(Path(os.environ["DFCOURSE_WEIGHTS_DIR"]).expanduser() / spec.filename)
    candidates.append(Path(torch.hub.get_dir()) / "checkpoints" / spec.filename)
    return next((p for p in candidates if p.is_file()), None)


def load_pretrained(module: nn.Module, arch: str, path=None, allow_download: bool = True) -> str:
    """Load pretrained weights into ``module`` (keys that do not fit, e.g. a classifier
    head, are skipped). Returns a one-line description of what happened."""
    from .course import network_available

    spec = WEIGHTS[arch]
    found = find_weights(arch, path)
    if found is None and path:
        raise FileNotFoundError(f"{path}: no such weights file for {arch}")
    if found is not None:
        state = torch.load(found, map_location="cpu", weights_only=True)
        source = str(found)
    elif allow_download and os.environ.get("HF_HUB_OFFLINE") != "1" and network_available(
            spec.url.split("/")[2]):
        state = torch.hub.load_state_dict_from_url(spec.url, map_location="cpu", file_name=spec.filename)
        source = spec.url
    else:
        return (f"{arch}: pretrained weights not found ({spec.filename} in $DFCOURSE_WEIGHTS_DIR or "
                f"{Path(torch.hub.get_dir()) / 'checkpoints'}; no network): using RANDOM init")
    own = module.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if len(usable) < 0.5 * len(own):
        raise ValueError(f"{source}: only {len(usable)}/{len(own)} tensors fit {arch}; wrong weights file?")
    module.load_state_dict(usable, strict=False)
    return f"{arch}: pretrained weights loaded from {source} ({len(usable)}/{len(own)} tensors)"


class Detector(nn.Module):
    """Backbone + one-logit head. Takes images in [0, 1] (B, 3, H, W) and normalises them
    itself, so predict, Grad-CAM and training all feed the same thing. Returns (B, 1) logits."""

    def __init__(self, arch: str, backbone: nn.Module, num_features: int, mean, std):
        super().__init__()
        self.arch, self.num_features = arch, num_features
        self.backbone = backbone
        self.head = nn.Linear(num_features, 1)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        self.pretrained_note = ""

    def forward_features(self, x):
        return self.backbone((x - self.mean) / self.std)

    def forward_head(self, features):
        return self.head(features)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))

    @property
    def cam_target(self) -> nn.Module:
        """The layer Grad-CAM looks at: the last convolutional block."""
        if self.arch == "resnet18":
            return self.backbone.layer4[-1]
        return self.backbone.block8

    def set_regime(self, regime: str) -> "Detector":
        """``frozen``: only the head trains (backbone BatchNorm stays in eval mode);
        ``full``: everything trains."""
        if regime not in ("frozen", "full"):
            raise ValueError(f"regime must be 'frozen' or 'full', not {regime!r}")
        self.regime = regime
        for p in self.backbone.parameters():
            p.requires_grad = regime == "full"
        return self

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and getattr(self, "regime", "full") == "frozen":
            self.backbone.eval()
        return self


class Meso4(Detector):
    """Meso-4 (Afchar et al., 2018, "MesoNet"): four small conv blocks and a 16-unit
    dense layer, ~28k parameters, made to be trained from scratch on face crops. As in the
    paper: 3x3 then 5x5 convolutions, ReLU + BatchNorm, max-pooling, dropout 0.5 and a
    LeakyReLU(0.1) hidden layer. One change: the last 4x4 max-pool becomes an adaptive
    average pool to 8x8 (the paper's map at 256 px), so any input size >= 64 px works.
    No published weights exist. Used in notebooks/02_resnet_baseline.ipynb."""

    def __init__(self):
        def block(c_in, c_out, k, pool):
            layers = [nn.Conv2d(c_in, c_out, k, padding=k // 2), nn.ReLU(inplace=True), nn.BatchNorm2d(c_out)]
            return nn.Sequential(*layers, nn.MaxPool2d(pool) if pool else nn.AdaptiveAvgPool2d(8))

        backbone = nn.Sequential(block(3, 8, 3, 2), block(8, 8, 5, 2), block(8, 16, 5, 2), block(16, 16, 5, 0),
                                 nn.Flatten())
        super().__init__("meso4", backbone, 16 * 8 * 8, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
        self.head = nn.Sequential(nn.Dropout(0.5), nn.Linear(self.num_features, 16), nn.LeakyReLU(0.1),
                                  nn.Dropout(0.5), nn.Linear(16, 1))

    @property
    def cam_target(self) -> nn.Module:
        """The last convolutional block's BatchNorm (before pooling): a 1/8-resolution map."""
        return self.backbone[3][2]


def build_detector(arch: str = "resnet18", pretrained: bool = True, weights=None, verbose: bool = True) -> Detector:
    """``resnet18`` (torchvision, ImageNet) or ``inception`` (facenet-pytorch
    InceptionResnetV1, VGGFace2), with a one-logit head."""
    if arch == "resnet18":
        from torchvision.models import resnet18

        backbone = resnet18(weights=None)
        backbone.fc = nn.Identity()
        net = Detector(arch, backbone, 512, IMAGENET_MEAN, IMAGENET_STD)
    elif arch == "inception":
        from facenet_pytorch import InceptionResnetV1

        backbone = InceptionResnetV1(pretrained=None, classify=False)
        net = Detector(arch, backbone, 512, FACENET_MEAN, FACENET_STD)
    elif arch == "meso4":  # from scratch by design: no weights to look for
        net = Meso4()
        net.pretrained = False
        net.pretrained_note = ("no pretrained weights for meso4: random init" if pretrained
                               else "meso4: random init (pretrained=False)")
        if verbose:
            print(net.pretrained_note)
        return net.set_regime("full")
    else:
        raise ValueError(f"unknown arch {arch!r}; choose 'resnet18', 'inception' or 'meso4'")
    note = f"{arch}: random init (pretrained=False)"
    if pretrained:
        note = load_pretrained(backbone, arch, weights)
    net.pretrained_note = note
    net.pretrained = pretrained and "RANDOM" not in note
    if verbose:
        print(note)
    return net.set_regime("full")


def save_checkpoint(path, net: Detector, **meta) -> Path:
    """Write ``{"arch", "state_dict", "meta"}`` atomically (loadable with weights_only=True)."""
    from .io import atomic_path

    with atomic_path(path) as tmp:
        torch.save({"format": "dfcourse-detector", "arch": net.arch, "state_dict": net.state_dict(),
                    "meta": {"pretrained": bool(getattr(net, "pretrained", False)), **meta}}, tmp)
    return Path(path)


def read_checkpoint(path, fmt: str, how_to_make: str, device="cpu") -> dict:
    """Load a dfcourse checkpoint dict of format ``fmt`` with ``weights_only=True``; a missing
    file says ``how_to_make`` one, and a foreign or corrupt file says so, naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint. {how_to_make}")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({e.__class__.__name__}).") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != fmt:
        raise ValueError(f"{path}: not a {fmt} checkpoint. {how_to_make}")
    return ckpt


def load_checkpoint(path, device="cpu", arch=None) -> Detector:
    """Rebuild a detector from :func:`save_checkpoint`. A checkpoint of another kind or
    architecture gives a clear error naming the file, not a shape dump."""
    path = Path(path)
    ckpt = read_checkpoint(path, "dfcourse-detector", "Run notebooks/02_resnet_baseline.ipynb (or `make course`) "
                           "to train one, or pass --checkpoint PATH.", device)
    if arch is not None and ckpt["arch"] != arch:
        raise ValueError(f"{path}: checkpoint is for arch {ckpt['arch']!r}, not {arch!r}.")
    net = build_detector(ckpt["arch"], pretrained=False, verbose=False)
    try:
        net.load_state_dict(ckpt["state_dict"])
    except RuntimeError:
        raise ValueError(f"{path}: weights do not fit a {ckpt['arch']} detector; the checkpoint was "
                         "saved by a different model definition.") from None
    net.pretrained = bool(ckpt["meta"].get("pretrained", False))
    net.meta = ckpt["meta"]
    return net.to(device).eval()
