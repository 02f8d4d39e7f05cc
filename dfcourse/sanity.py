"""Sanity checks for saliency maps (Adebayo et al., 2018): the cascading model-parameter
randomisation test.

A map that explains the *model* must change when the model's weights are destroyed. The
cascade re-initialises the net's layer groups top-down (ResNet18 detector: head, layer4,
layer3, layer2, layer1, stem), cumulatively, on a copy of the net; after each step the maps
are recomputed on the same faces and compared with the original maps:

* **Spearman rank correlation** of the two maps per face, averaged over faces. Adebayo report
  it with and without absolute values for signed maps; CAMs are already non-negative (ReLU,
  then scaled to [0, 1]), so the two coincide and we report one.
* **SSIM** (scikit-image ``structural_similarity``, data range 1), averaged over faces.

"Re-initialise" means: each module's own ``reset_parameters``, seeded per step — PyTorch's
default init for that layer type (torchvision's ResNet draws its convolutions differently at
construction), BatchNorm running statistics included: kept, they would normalise the new
weights' activations with the old weights' statistics and flatten the maps to a constant.
:func:`verdict` turns the curve into a check that can fail.

Used in notebooks/05_gradcam_analysis.ipynb.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity

from . import models  # noqa: F401 - registers the detectors whose layer groups are asked for
from .cam import compute_cams
from .registry import model_spec, spec_of


def resnet18_groups():
    """The cascade for a ResNet18 :class:`~dfcourse.models.Detector`, top block first."""
    return _groups(model_spec("resnet18"))


def layer_groups(net) -> list[tuple[str, list[str]]]:
    """The cascade's layer groups, top-down, for a notebook-02 detector: those its registry
    entry names (:mod:`dfcourse.registry`)."""
    spec = spec_of(net)
    if spec is None or not spec.layer_groups:
        raise ValueError(f"no layer groups known for {type(net).__name__} ({getattr(net, 'arch', '?')})")
    return _groups(spec)


def _groups(spec) -> list[tuple[str, list[str]]]:
    return [(name, list(paths)) for name, paths in spec.layer_groups]


def reinitialise(net: torch.nn.Module, paths, seed: int) -> list[str]:
    """Re-initialise the modules at ``paths`` (e.g. ``"backbone.layer4"``) in place with each
    submodule's ``reset_parameters`` (BatchNorm: running statistics too), seeded. The caller's
    random state is left as it was. Returns the names of the parameters re-drawn."""
    names = []
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for path in paths:
            for name, m in net.get_submodule(path).named_modules():
                if hasattr(m, "reset_parameters") and list(m.parameters(recurse=False)):
                    m.reset_parameters()
                    names += [".".join(filter(None, (path, name, p))) for p, _ in m.named_parameters(recurse=False)]
    return names


def map_similarity(a, b) -> tuple[float, float]:
    """(Spearman rank correlation, SSIM) of two maps in [0, 1]. The rank correlation is NaN
    when either map is constant (e.g. an empty CAM): it has no ranks."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        rho = float("nan")
    else:
        rho = float(spearmanr(a.ravel(), b.ravel())[0])
    return rho, float(structural_similarity(a, b, data_range=1.0))


@dataclass
class Cascade:
    """Result of :func:`randomisation_cascade`. ``steps[0]`` is ``"original"``; ``steps[i]``
    names the group randomised at step ``i`` (with all groups before it). ``spearman[m]`` and
    ``ssim[m]``: arrays (steps, faces) for method ``m``; ``maps[m]``: (steps, faces, H, W)."""

    steps: list
    spearman: dict
    ssim: dict
    maps: dict
    randomised: list  # parameter names re-drawn by the end of each step

    def mean(self, method: str, metric: str = "spearman") -> np.ndarray:
        """Per-step mean over faces (NaNs from empty maps left out)."""
        values = getattr(self, metric)[method]
        with np.errstate(all="ignore"):
            return np.array([np.nanmean(v) if np.isfinite(v).any() else np.nan for v in values])

    def rows(self) -> list[list]:
        """One table row per (method, step): method, step, rank correlation and SSIM (mean ±
        standard deviation over faces), faces with a rank correlation (an empty map has none)."""
        out = []
        for m in self.spearman:
            for i, step in enumerate(self.steps):
                rho = self.spearman[m][i][np.isfinite(self.spearman[m][i])]
                ssim = self.ssim[m][i]
                out.append([m, step if i == 0 else f"+ {step}",
                            f"{rho.mean():.3f} ± {rho.std():.2f}" if len(rho) else "-",
                            f"{ssim.mean():.3f} ± {ssim.std():.2f}", f"{len(rho)}/{len(ssim)}"])
        return out


def randomisation_cascade(net, x, groups, methods=("gradcam",), seed: int = 0, size: int | None = None,
                          target: int = 1) -> Cascade:
    """Cascading model-parameter randomisation. ``groups``: ``[(name, [module paths]), ...]``
    ordered top-down (:func:`resnet18_groups`); ``methods``: names of
    :data:`dfcourse.cam.METHODS`, or ``{label: fn}`` with ``fn(net, x) -> maps (B, H, W)`` in
    [0, 1]. ``net`` is left untouched: the groups are re-initialised cumulatively on one copy
    (step ``i`` seeded with ``seed + i``), which lives on the CPU while its weights are re-drawn.
    The copy's parameters do not ask for gradients (a CAM method switches on its target layer's),
    so backward passes stop at the target layer: the maps are the same, at a fraction of the cost."""
    if isinstance(methods, dict):
        fns = dict(methods)
    else:
        fns = {m: (lambda n, xb, m=m: compute_cams(n, xb, m, target=target, size=size)) for m in methods}
    device = next(net.parameters()).device
    work = copy.deepcopy(net).requires_grad_(False)
    steps, randomised, maps = ["original"], [[]], {m: [fn(work, x)] for m, fn in fns.items()}
    for i, (name, paths) in enumerate(groups, start=1):
        work.cpu()
        names = reinitialise(work, paths, seed + i)
        work.to(device)
        steps.append(name)
        randomised.append(randomised[-1] + names)
        for m, fn in fns.items():
            maps[m].append(fn(work, x))
    maps = {m: np.stack(v) for m, v in maps.items()}
    sims = {m: np.array([[map_similarity(a, b) for a, b in zip(v[0], step)] for step in v]) for m, v in maps.items()}
    return Cascade(steps, {m: s[..., 0] for m, s in sims.items()}, {m: s[..., 1] for m, s in sims.items()},
                   maps, randomised)


@dataclass(frozen=True)
class Verdict:
    passed: bool
    text: str


def verdict(cascade: Cascade, method: str, bound: float = 0.5, metric: str = "spearman",
            exclude=("head",)) -> Verdict:
    """PASS ("the map depends on the model") if the mean similarity to the original maps falls
    below ``bound`` at some step of the cascade other than those in ``exclude``; FAIL otherwise.
    The head is excluded by default: with a global-average-pooling + linear head, re-drawing
    the head changes a CAM by construction, whatever the backbone has learnt."""
    values = cascade.mean(method, metric)
    counted = [(s, v) for s, v in zip(cascade.steps[1:], values[1:]) if s not in exclude]
    below = [s for s, v in counted if v < bound]
    last = f"fully randomised: {values[-1]:.2f}"
    if below:
        return Verdict(True, f"PASS ({method}): mean {metric} < {bound} once {below[0]} is randomised "
                             f"({last}) - the map depends on the model")
    lowest = min((v for _, v in counted), default=float("nan"))
    return Verdict(False, f"FAIL ({method}): mean {metric} stays >= {bound} at every counted step "
                          f"(lowest {lowest:.2f}, {last}) - the map does not show that it depends on the model")
