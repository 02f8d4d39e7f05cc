"""Face-forgery classifiers with a clean seam: ``forward_features`` / ``forward_head`` and
a named ``cam_target`` layer for Grad-CAM, plus pretrained-weight loading that never
waits on a network that is not there.

Weights are looked for, in order: an explicit path; ``$DFCOURSE_WEIGHTS_DIR/<file>``;
the torch hub cache (``~/.cache/torch/hub/checkpoints/<file>``); the network, only when it
is reachable. Otherwise the model keeps its random init and one line says so. What
happened is a :class:`Weights` record (loaded or not, from where), not a sentence to parse.
Also the input normalisation every model of the course uses (:class:`Normalize`), and the
registry entries (:mod:`dfcourse.registry`) of notebook 02's detectors: ``resnet18``,
``inception``, ``meso4`` (option ``highpass``; ``meso4-plain`` is its old name for ``highpass=False``).
Used in notebooks 02, 03 and 04; every model of the course (and ``predict``) is built on it.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from .net import network_available
from .registry import create_model, model_spec, register_alias, register_model

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FACENET_MEAN, FACENET_STD = (0.5, 0.5, 0.5), (128 / 255, 128 / 255, 128 / 255)  # (x - 127.5) / 128
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, for images in [0, 1] of shape (B, 3, H, W)."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


@dataclass(frozen=True)
class Weights:
    """Where a model's starting weights came from. ``loaded``: pretrained weights were
    loaded; ``source``: the file or URL (empty for random init); ``note``: one line for people."""

    loaded: bool
    source: str
    note: str

    @classmethod
    def random(cls, arch: str, why: str = "pretrained=False") -> "Weights":
        return cls(False, "", f"{arch}: random init ({why})")

    @classmethod
    def from_meta(cls, meta: dict) -> "Weights":
        w = meta.get("weights") or {}
        return cls(bool(w.get("loaded", meta.get("pretrained", False))), str(w.get("source", "")),
                   str(w.get("note", "")))

    def as_meta(self) -> dict:
        return asdict(self)

    @property
    def label(self) -> str:
        return "pretrained" if self.loaded else "random init"


def count_params(net: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in net.parameters())
    return sum(p.numel() for p in net.parameters() if p.requires_grad), total


@dataclass(frozen=True)
class WeightSpec:
    filename: str
    url: str


RESNET18_WEIGHTS = WeightSpec("resnet18-f37072fd.pth", "https://download.pytorch.org/models/resnet18-f37072fd.pth")
INCEPTION_WEIGHTS = WeightSpec("20180402-114759-vggface2.pt",
                               "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/"
                               "20180402-114759-vggface2.pt")


def find_weights(arch: str, path=None) -> Path | None:
    """The first local weights file for ``arch``: ``path``, the weights folder, the hub cache."""
    spec = model_spec(arch).weights
    candidates = [Path(path)] if path else []
    if os.environ.get("DFCOURSE_WEIGHTS_DIR"):
        candidates.append(Path(os.environ["DFCOURSE_WEIGHTS_DIR"]).expanduser() / spec.filename)
    candidates.append(Path(torch.hub.get_dir()) / "checkpoints" / spec.filename)
    return next((p for p in candidates if p.is_file()), None)


def load_pretrained(module: nn.Module, arch: str, path=None, allow_download: bool = True) -> Weights:
    """Load pretrained weights into ``module`` (keys that do not fit, e.g. a classifier
    head, are skipped). Returns a :class:`Weights` record of what happened; a file that is
    there but unreadable or of another model is an error naming it, not a random init.
    Where the weights come from is the registry's (:mod:`dfcourse.registry`) ``weights`` of ``arch``."""
    spec = model_spec(arch).weights
    found = find_weights(arch, path)
    if found is None and path:
        raise FileNotFoundError(f"{path}: no such weights file for {arch}")
    if found is not None:
        try:
            state = torch.load(found, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ValueError(f"{found}: not a readable weights file for {arch} ({e.__class__.__name__}); "
                             "delete it or download it again.") from e
        source = str(found)
    elif allow_download and os.environ.get("HF_HUB_OFFLINE") != "1" and network_available(
            spec.url.split("/")[2]):
        state = torch.hub.load_state_dict_from_url(spec.url, map_location="cpu", file_name=spec.filename)
        source = spec.url
    else:
        return Weights.random(arch, f"pretrained weights not found: no {spec.filename} in $DFCOURSE_WEIGHTS_DIR "
                              f"or {Path(torch.hub.get_dir()) / 'checkpoints'}, and no network")
    own = module.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if len(usable) < 0.5 * len(own):
        raise ValueError(f"{source}: only {len(usable)}/{len(own)} tensors fit {arch}; wrong weights file?")
    module.load_state_dict(usable, strict=False)
    return Weights(True, source, f"{arch}: pretrained weights loaded from {source} ({len(usable)}/{len(own)} tensors)")


class Detector(nn.Module):
    """Backbone + one-logit head. Takes images in [0, 1] (B, 3, H, W) and normalises them
    itself (with the registry's ``mean``/``std`` of ``arch``), so predict, Grad-CAM and training
    all feed the same thing. Returns (B, 1) logits."""

    def __init__(self, arch: str, backbone: nn.Module, num_features: int):
        super().__init__()
        spec = model_spec(arch)
        self.arch, self.num_features, self.regime = arch, num_features, "full"
        self.backbone = backbone
        self.head = nn.Linear(num_features, 1)
        self.normalize = Normalize(spec.mean, spec.std)
        self.weights = Weights.random(arch)

    @property
    def pretrained(self) -> bool:
        return self.weights.loaded

    def forward_features(self, x):
        return self.backbone(self.normalize(x))

    def forward_head(self, features):
        return self.head(features)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))

    @property
    def cam_target(self) -> nn.Module:
        """The layer Grad-CAM looks at: the registry's ``cam_target`` of this model."""
        path = model_spec(self.arch).cam_target
        if not path:
            raise ValueError(f"{self.arch} registers no cam_target; pass target_layer= to compute_cams")
        return self.get_submodule(path)

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


class MesoHead(nn.Sequential):
    """Meso-4's dense head (dropout, 16 units, LeakyReLU, dropout, one logit). ``weight`` and
    ``bias`` are those of its last layer, the logit, as on the one-layer head of the other
    detectors: code that re-draws "the head's weights" (notebook 05's randomisation test)
    works on every detector."""

    @property
    def weight(self) -> nn.Parameter:
        return self[-1].weight

    @property
    def bias(self) -> nn.Parameter:
        return self[-1].bias


class HighPass(nn.Module):
    """``x -> [x, gain * (x - mean3x3(x))]``: the image and its high-frequency residual, what
    is left after subtracting a 3x3 local mean (a fixed filter, as the SRM filters of
    forensics). Blending seams, resampling and re-rendering change a face's fine texture
    more than its colours: this channel hands them to the first convolution instead of
    leaving a small random-init net to find them. 3 channels in, 6 out."""

    def __init__(self, gain: float = 4.0):
        super().__init__()
        self.gain = gain

    def forward(self, x):
        local_mean = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, 1)
        return torch.cat([x, self.gain * (x - local_mean)], 1)


class Meso4(Detector):
    """Meso-4 (Afchar et al., 2018, "MesoNet"): four small conv blocks and a 16-unit
    dense layer, ~28k parameters, made to be trained from scratch on face crops. As in the
    paper: 3x3 then 5x5 convolutions, ReLU + BatchNorm, max-pooling, dropout 0.5 and a
    LeakyReLU(0.1) hidden layer. Two changes: the last 4x4 max-pool becomes an adaptive
    average pool to 8x8 (the paper's map at 256 px), so any input size >= 64 px works; and
    with ``highpass`` (the course's default) the first convolution also sees the image's
    high-pass residual (:class:`HighPass`); ``benchmarks/ablate_detector.py`` and
    ``benchmarks/ablate_localizer.py`` compare the two on validation. The authors' repository ships trained
    Keras weights (Meso4_DF, Meso4_F2F); this PyTorch net does not load them, it trains from
    random init."""

    def __init__(self, highpass: bool = True):
        def block(c_in, c_out, k, pool):
            layers = [nn.Conv2d(c_in, c_out, k, padding=k // 2), nn.ReLU(inplace=True), nn.BatchNorm2d(c_out)]
            return nn.Sequential(*layers, nn.MaxPool2d(pool) if pool else nn.AdaptiveAvgPool2d(8))

        backbone = nn.Sequential(block(6 if highpass else 3, 8, 3, 2), block(8, 8, 5, 2), block(8, 16, 5, 2),
                                 block(16, 16, 5, 0), nn.Flatten())
        super().__init__("meso4", backbone, 16 * 8 * 8)
        self.highpass = highpass
        self.stem = HighPass() if highpass else nn.Identity()
        self.head = MesoHead(nn.Dropout(0.5), nn.Linear(self.num_features, 16), nn.LeakyReLU(0.1),
                             nn.Dropout(0.5), nn.Linear(16, 1))

    def prepare(self, x):
        """Normalised input, with its high-pass residual when ``highpass``: what block 1 takes."""
        return self.stem(self.normalize(x))

    def forward_features(self, x):
        return self.backbone(self.prepare(x))


def with_weights(net: Detector, pretrained: bool, weights=None) -> Detector:
    """``net`` with its starting weights: pretrained ones loaded into its backbone (from
    ``weights``, else where the registry's ``weights`` of ``net.arch`` say) when ``pretrained``,
    else its random init; a model the registry says has none keeps its init and says so."""
    if model_spec(net.arch).weights is None:
        net.weights = (Weights(False, "", f"no pretrained weights for {net.arch}: random init") if pretrained
                       else Weights.random(net.arch))
    else:
        net.weights = load_pretrained(net.backbone, net.arch, weights) if pretrained else Weights.random(net.arch)
    return net


RESNET18_GROUPS = (("head", ["head"]), ("layer4", ["backbone.layer4"]), ("layer3", ["backbone.layer3"]),
                   ("layer2", ["backbone.layer2"]), ("layer1", ["backbone.layer1"]),
                   ("stem", ["backbone.conv1", "backbone.bn1"]))


@register_model("resnet18", display="ResNet18", mean=IMAGENET_MEAN, std=IMAGENET_STD, weights=RESNET18_WEIGHTS,
                cam_target="backbone.layer4.1", layer_groups=RESNET18_GROUPS)
def build_resnet18(pretrained: bool = True, weights=None) -> Detector:
    """torchvision's ResNet18 (ImageNet weights), a one-logit head; CAMs on its last block."""
    from torchvision.models import resnet18

    backbone = resnet18(weights=None)
    backbone.fc = nn.Identity()
    return with_weights(Detector("resnet18", backbone, 512), pretrained, weights)


@register_model("inception", display="InceptionResnetV1", mean=FACENET_MEAN, std=FACENET_STD,
                weights=INCEPTION_WEIGHTS, cam_target="backbone.block8")
def build_inception(pretrained: bool = True, weights=None) -> Detector:
    """facenet-pytorch's InceptionResnetV1 (VGGFace2 weights), a one-logit head."""
    from facenet_pytorch import InceptionResnetV1

    backbone = InceptionResnetV1(pretrained=None, classify=False)
    return with_weights(Detector("inception", backbone, 512), pretrained, weights)


@register_model("meso4", display="Meso-4", options={"highpass": True}, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                from_scratch=True, cam_target="backbone.3.2",  # the last conv block's BatchNorm: a 1/8-resolution map
                layer_groups=[("head", ["head"])] + [(f"block{i + 1}", [f"backbone.{i}"]) for i in (3, 2, 1, 0)],
                labels={"highpass": {False: "plain"}})
def build_meso4(pretrained: bool = False, weights=None, highpass: bool = True) -> Meso4:
    """Meso-4 from random init (no pretrained weights exist for it); ``highpass=False``: the published net."""
    return with_weights(Meso4(highpass=highpass), pretrained)


register_alias("meso4-plain", "meso4", {"highpass": False})  # its name before highpass was an option


def build_detector(arch: str = "resnet18", pretrained: bool = True, weights=None, verbose: bool = True,
                   options: dict | None = None) -> Detector:
    """A registered detector (:mod:`dfcourse.registry`: ``resnet18``, ``inception``, ``meso4``...)
    with ``options`` (e.g. ``{"highpass": False}`` for Meso-4), its starting weights, one line
    saying what they are (``verbose``), every parameter trainable."""
    net = create_model(arch, "detector", pretrained, weights, options)
    if verbose:
        print(net.weights.note)
    return net.set_regime("full")
