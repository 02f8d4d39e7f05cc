"""Class activation maps with pytorch-grad-cam, for CNNs and ViTs, frozen backbones included.

* A CNN detector exposes ``cam_target`` (ResNet18: ``layer4[-1]``).
* A ViT (CLIP) needs the ``ln_1`` of the last residual block — its output's CLS token is
  not the only token that reaches the head — and a reshape transform from tokens to a
  grid whose side is computed from the input and patch sizes (7 for ViT-B/32 at 224).
* A frozen backbone has no parameter that wants gradients, so the maps would be empty:
  the target layer's parameters are switched on for the call, and it never runs under
  ``torch.no_grad``.

Scores of maps against masks (pointing game, energy in mask) are in :mod:`dfcourse.metrics`.
Used in notebooks 02, 03, 04 and 05, and by ``predict --heatmap``.
"""
from __future__ import annotations

import contextlib

import cv2
import numpy as np
import torch

# pytorch-grad-cam's class of each method, by name (imported on first use: about a second)
METHOD_CLASSES = {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "xgradcam": "XGradCAM",
                  "layercam": "LayerCAM", "eigencam": "EigenCAM", "scorecam": "ScoreCAM"}
METHODS = tuple(METHOD_CLASSES)


def method_class(name: str):
    """The pytorch-grad-cam class of CAM method ``name`` (a key of :data:`METHOD_CLASSES`)."""
    import pytorch_grad_cam

    if name not in METHOD_CLASSES:
        raise ValueError(f"unknown CAM method {name!r}; choose from {METHODS}")
    return getattr(pytorch_grad_cam, METHOD_CLASSES[name])


def vit_grid(input_size: int, patch_size: int) -> int:
    """Tokens per side of a ViT: input size over patch size (7 for B/32 at 224)."""
    if input_size % patch_size:
        raise ValueError(f"input size {input_size} is not a multiple of the patch size {patch_size}")
    return input_size // patch_size


def vit_reshape_transform(grid: int, batch_first: bool = True):
    """Tokens ``(B, 1 + grid*grid, C)`` (or ``(L, B, C)``) -> feature map ``(B, C, grid, grid)``,
    dropping the CLS token."""
    def reshape(t):
        if not batch_first:
            t = t.permute(1, 0, 2)
        t = t[:, 1:, :]
        if t.shape[1] != grid * grid:
            raise ValueError(f"{t.shape[1]} patch tokens do not make a {grid}x{grid} grid")
        return t.reshape(t.shape[0], grid, grid, t.shape[2]).permute(0, 3, 1, 2)
    return reshape


@contextlib.contextmanager
def gradients_on(module: torch.nn.Module):
    """Let gradients reach ``module`` even when its parameters are frozen."""
    saved = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in saved:
        p.requires_grad_(True)
    try:
        with torch.enable_grad():
            yield
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)


def compute_cams(net, x, method: str = "gradcam", target_layer=None, reshape_transform=None,
                 target: int = 1, batch_size: int = 32, size: int | None = None) -> np.ndarray:
    """Maps in [0, 1], shape ``(B, H, W)`` at the input size (or ``size`` x ``size``), for
    the *fake* logit (``target=1``) or the *real* side (``target=0``) of a one-logit
    detector. ``x``: a tensor (B, 3, H, W), or a dataset whose items start with one image;
    either is processed ``batch_size`` images at a time."""
    if method not in METHODS:
        raise ValueError(f"unknown CAM method {method!r}; choose from {sorted(METHODS)}")
    from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget

    layer = target_layer if target_layer is not None else net.cam_target
    reshape_transform = reshape_transform or getattr(net, "cam_reshape", None)
    net.eval()
    device = next(net.parameters()).device
    out = []
    with gradients_on(layer), method_class(method)(model=net, target_layers=[layer],
                                              reshape_transform=reshape_transform) as cam:
        if method == "scorecam":
            cam.batch_size = batch_size
        for s in range(0, len(x), batch_size):
            xb = x[s:s + batch_size] if torch.is_tensor(x) else torch.stack(
                [x[i][0] for i in range(s, min(s + batch_size, len(x)))])
            xb = xb.to(device)
            maps = cam(input_tensor=xb, targets=[BinaryClassifierOutputTarget(target)] * len(xb))
            out += [cv2.resize(m, (size, size)) if size else m for m in np.asarray(maps, dtype=np.float32)]
    if not out:
        return np.zeros((0, size or 0, size or 0), np.float32)
    return np.nan_to_num(np.stack(out).astype(np.float32))
