"""The cascading model-parameter randomisation test (dfcourse.sanity) and the Grad-CAM ==
XGradCAM == CAM identity for a global-average-pooling + linear head (notebook 05)."""
import cv2
import numpy as np
import pytest
import torch
from skimage.filters import sobel
from torch import nn

from dfcourse.cam import compute_cams
from dfcourse.sanity import randomisation_cascade, reinitialise, resnet18_groups, verdict
from dfcourse.viz import plot_cascade

GROUPS = [("head", ["head"]), ("block2", ["block2"]), ("block1", ["block1"]), ("stem", ["stem"])]


class Tiny(nn.Module):
    """Stem (conv + BatchNorm), two conv blocks, a pool and a linear head: a ResNet in miniature."""

    def __init__(self, pool=None):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.block1 = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.ReLU())
        self.block2 = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
        self.pool = pool or nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(16, 1)

    @property
    def cam_target(self):
        return self.block2

    def forward(self, x):
        return self.head(self.pool(self.block2(self.block1(self.stem(x)))).flatten(1))


@pytest.fixture
def net():
    torch.manual_seed(0)
    net = Tiny()
    net.stem[1].running_mean.uniform_(-0.5, 0.5)  # statistics that are not the defaults
    net.stem[1].running_var.uniform_(0.5, 2.0)
    net.stem[1].num_batches_tracked.fill_(10)
    with torch.no_grad():  # and affine parameters that are not the defaults (1 and 0)
        net.stem[1].weight.uniform_(0.5, 1.5)
        net.stem[1].bias.uniform_(-0.5, 0.5)
    return net.eval()


@pytest.fixture
def x():
    g = torch.Generator().manual_seed(0)
    return nn.functional.avg_pool2d(torch.rand(6, 3, 36, 36, generator=g), 5, 1)  # smooth 32x32 images


def edges(net, x):
    """A 'saliency method' that ignores the model: the grey image's edge magnitude."""
    maps = np.stack([sobel(im.mean(0).numpy()) for im in x])
    return maps / maps.max(axis=(1, 2), keepdims=True)


def test_a_map_that_ignores_the_model_stays_put_and_fails(net, x):
    c = randomisation_cascade(net, x, GROUPS, {"edges": edges}, seed=0)
    assert c.steps == ["original", "head", "block2", "block1", "stem"]
    assert np.allclose(c.mean("edges", "spearman"), 1) and np.allclose(c.mean("edges", "ssim"), 1)
    v = verdict(c, "edges")
    assert not v.passed and v.text.startswith("FAIL")


def test_gradcam_drops_once_the_backbone_is_randomised_and_passes(net, x):
    c = randomisation_cascade(net, x, GROUPS, ["gradcam"], seed=0)
    # the copy's frozen parameters shorten the backward pass, not the maps; the net keeps its flags
    np.testing.assert_allclose(c.maps["gradcam"][0], compute_cams(net, x, "gradcam"), atol=1e-6)
    assert all(p.requires_grad for p in net.parameters())
    rho, ssim = c.mean("gradcam", "spearman"), c.mean("gradcam", "ssim")
    assert rho[0] == pytest.approx(1) and ssim[0] == pytest.approx(1)
    assert rho[2] < 0.5 and ssim[2] < 0.5  # block2, Grad-CAM's own target layer, re-drawn
    v = verdict(c, "gradcam")
    assert v.passed and "once block2 is randomised" in v.text
    # the bound is what decides: nothing in this cascade falls below -1
    assert not verdict(c, "gradcam", bound=-1).passed
    assert len(c.rows()) == len(c.steps)


def test_cascade_is_top_down_cumulative_and_leaves_the_net_untouched(net, x):
    before = {k: v.clone() for k, v in net.state_dict().items()}
    seen = []

    def snapshot(n, xb):
        seen.append({k: v.clone() for k, v in n.state_dict().items()})
        return edges(n, xb)

    c = randomisation_cascade(net, x, GROUPS, {"snap": snapshot}, seed=0)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    params = dict(net.named_parameters())
    for i, state in enumerate(seen):
        done = [p for _, paths in GROUPS[:i] for p in paths]
        for k in before:  # parameters and BatchNorm statistics of the groups done so far, and only those
            changed = not torch.equal(before[k], state[k])
            assert changed == any(k.startswith(p + ".") for p in done), (i, k)
        assert sorted(c.randomised[i]) == sorted(k for k in params if any(k.startswith(p + ".") for p in done))
    # BatchNorm as freshly built: running statistics 0 and 1
    assert torch.equal(seen[-1]["stem.1.running_var"], torch.ones(8))


def test_seeded_and_reproducible(net, x):
    a = randomisation_cascade(net, x, GROUPS[:2], ["gradcam"], seed=3)
    b = randomisation_cascade(net, x, GROUPS[:2], ["gradcam"], seed=3)
    c = randomisation_cascade(net, x, GROUPS[:2], ["gradcam"], seed=4)
    assert np.array_equal(a.maps["gradcam"], b.maps["gradcam"])
    assert not np.array_equal(a.maps["gradcam"][2], c.maps["gradcam"][2])
    other = Tiny()
    state = torch.random.get_rng_state()
    reinitialise(other, ["head"], seed=0)
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's random state is kept


def test_resnet18_groups_name_real_modules():
    from dfcourse.models import build_detector

    det = build_detector("resnet18", pretrained=False, verbose=False)
    names = [n for n, _ in resnet18_groups()]
    assert names == ["head", "layer4", "layer3", "layer2", "layer1", "stem"]
    for _, paths in resnet18_groups():
        for p in paths:
            det.get_submodule(p)
    covered = {k for k, _ in det.named_parameters()
               if any(k.startswith(p + ".") for _, ps in resnet18_groups() for p in ps)}
    assert covered == {k for k, _ in det.named_parameters()}  # the cascade ends with every weight re-drawn


def test_plot_cascade(net, x):
    import matplotlib.pyplot as plt

    c = randomisation_cascade(net, x, GROUPS[:2], {"edges": edges}, seed=0)
    fig, ax = plt.subplots()
    assert plot_cascade(ax, c.steps, {"edges": c.mean("edges")}, bound=0.5) is fig
    assert len(ax.lines) == 3  # the curve, zero, the bound
    plt.close(fig)


def hand_cam(net, x, target):
    """CAM (Zhou et al., 2016) by hand: ReLU(sum_k w_k A_k), scaled to [0, 1], resized and
    scaled again, as pytorch-grad-cam does with its maps."""
    with torch.no_grad():
        a = net.block2(net.block1(net.stem(x)))
        w = net.head.weight[0] * (1 if target == 1 else -1)
        cam = torch.relu(torch.einsum("k,bkhw->bhw", w, a)).numpy()
    def scale(maps):
        maps = maps - maps.min(axis=(1, 2), keepdims=True)
        return maps / (1e-7 + maps.max(axis=(1, 2), keepdims=True))

    return scale(np.stack([cv2.resize(m, (x.shape[3], x.shape[2])) for m in scale(cam)]))


@pytest.mark.parametrize("target", [0, 1])
def test_gradcam_equals_xgradcam_equals_cam_for_a_gap_linear_head(net, x, target):
    grad, xgrad = (compute_cams(net, x, m, target=target) for m in ("gradcam", "xgradcam"))
    cam = hand_cam(net, x, target)
    assert (cam.max(axis=(1, 2)) > 0).sum() >= 2  # some maps are not empty
    np.testing.assert_allclose(grad, cam, atol=1e-4)
    np.testing.assert_allclose(xgrad, cam, atol=1e-4)


def test_with_a_max_pool_head_they_differ(x):
    torch.manual_seed(0)
    net = Tiny(pool=nn.AdaptiveMaxPool2d(1)).eval()
    grad, xgrad = (compute_cams(net, x, m) for m in ("gradcam", "xgradcam"))
    assert np.abs(grad - xgrad).max() > 0.1


def test_layer_groups_of_each_notebook02_detector():
    from dfcourse.models import build_detector
    from dfcourse.sanity import layer_groups, resnet18_groups

    resnet = build_detector("resnet18", pretrained=False, verbose=False)
    meso = build_detector("meso4", pretrained=False, verbose=False)
    assert layer_groups(resnet) == resnet18_groups()
    assert layer_groups(meso)[0] == ("head", ["head"]) and len(layer_groups(meso)) == 5
    with pytest.raises(ValueError):
        layer_groups(torch.nn.Linear(2, 1))
