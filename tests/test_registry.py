"""The model registry: a detector that registers once, here and nowhere else, goes through
the course's whole path (build, train, checkpoint, predict, Grad-CAM, randomisation test);
and the registry's own rules (names, options, aliases, display names)."""
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from dfcourse import registry
from dfcourse.cam import compute_cams
from dfcourse.checkpoints import load, save
from dfcourse.datasets import to_tensor
from dfcourse.experiments import run_detector
from dfcourse.models import Detector, build_detector, with_weights
from dfcourse.predict import Predictor
from dfcourse.sanity import layer_groups, randomisation_cascade
from dfcourse.train import TrainConfig

SIZE = 32


class ToyNet(Detector):
    """Two convolutions and a global average pool: the smallest detector with a map to look at."""

    def __init__(self, width: int = 4):
        backbone = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1),
                                 nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        super().__init__("toy", backbone, width)
        self.width = width


def build_toy(pretrained: bool = False, weights=None, width: int = 4) -> ToyNet:
    return with_weights(ToyNet(width), pretrained, weights)


@pytest.fixture
def toy():
    registry.register_model("toy", display="Toy net", options={"width": 4}, mean=(0.5, 0.5, 0.5),
                            std=(0.25, 0.25, 0.25), from_scratch=True, cam_target="backbone.2",
                            layer_groups=[("head", ["head"]), ("conv2", ["backbone.2"]), ("conv1", ["backbone.0"])],
                            labels={"width": {8: "wide"}})(build_toy)
    yield
    registry.unregister("toy")


def _rows(folder, split: str, n_videos: int, seed: int) -> list[dict]:
    """Two frames per video; fakes are redder than reals (something to learn in one epoch)."""
    rng, rows = np.random.default_rng(seed), []
    for v in range(n_videos):
        label = v % 2
        for f in range(2):
            img = rng.integers(0, 120, (SIZE, SIZE, 3), dtype=np.uint8)
            img[..., 0] += 120 * label
            path = folder / f"{split}_{v}_{f}.png"
            Image.fromarray(img).save(path)
            rows.append({"path": str(path), "label": label, "video_id": f"{split}{v}", "split": split,
                         "method": "toyfake" if label else "original"})
    return rows


def test_a_detector_registered_in_a_test_goes_through_the_course(toy, tmp_path, detector, astronaut):
    net = registry.create_model("toy", options={"width": 6})
    assert isinstance(net, ToyNet) and net.arch == "toy" and net.width == 6 and not net.pretrained
    assert torch.equal(net.normalize.std.flatten(), torch.tensor([0.25] * 3))  # the registry's normalisation
    assert registry.display_name(net) == "Toy net"
    assert registry.display_name(build_detector("toy", pretrained=False, verbose=False, options={"width": 8})) == \
        "Toy net (wide)"

    # one epoch through run_detector, what every notebook-02 recipe row trains with
    (tmp_path / "faces").mkdir()
    splits = {s: _rows(tmp_path / "faces", s, n, seed) for s, n, seed in (("train", 8, 0), ("val", 4, 1),
                                                                          ("test", 4, 2))}
    torch.manual_seed(0)
    cfg = TrainConfig(num_epochs=1, batch_size=4, lr=1e-3, patience=1, seed=0)
    res = run_detector("toy-scratch", "toy", "full", splits, cfg, SIZE, tmp_path / "runs", pretrained=False,
                       options={"width": 6})
    trained = res["net"].eval()
    assert res["arch"] == "toy" and len(res["history"]) == 1 and trained.width == 6
    assert 0 <= res["test"]["frame"]["auc"] <= 1 and "video" in res["test"]

    # checkpoint: saved with its registry name and options, rebuilt by the registry
    path = save(tmp_path / "toy.pt", "detector", trained, size=SIZE)
    assert torch.load(path, weights_only=True)["build"] == {"arch": "toy", "width": 6}
    back = load(path, "detector")
    x = torch.stack([to_tensor(Image.open(r["path"])) for r in splits["test"]])
    assert isinstance(back, ToyNet) and back.width == 6 and torch.allclose(back(x), trained(x))

    # predict: the reloaded checkpoint on a photo, with its Grad-CAM
    face = Predictor(path, detector=detector).predict_image(astronaut, with_heatmap=True)[0]
    with torch.no_grad():
        want = torch.sigmoid(trained(to_tensor(face["face"])[None]))[0, 0].item()
    assert face["prob_fake"] == pytest.approx(want, abs=1e-5) and face["heatmap"].shape == (SIZE, SIZE)

    # Grad-CAM on the layer the registry names
    assert back.cam_target is back.backbone[2]
    maps = compute_cams(back, x, "gradcam")
    assert maps.shape == (len(x), SIZE, SIZE) and np.isfinite(maps).all() and maps.std() > 0

    # the randomisation test over the registry's layer groups, top-down, every parameter re-drawn
    cascade = randomisation_cascade(back, x, layer_groups(back), ("gradcam",), seed=0, size=SIZE)
    assert cascade.steps == ["original", "head", "conv2", "conv1"]
    assert set(cascade.randomised[-1]) == {n for n, _ in back.named_parameters()}
    assert np.allclose(cascade.ssim["gradcam"][0], 1.0)


def test_unregister_forgets_the_model(toy):
    assert "toy" in registry.names()
    registry.unregister("toy")
    assert "toy" not in registry.names()
    with pytest.raises(ValueError, match="unknown detector 'toy'"):
        registry.create_model("toy")


def test_a_name_registers_once_per_task_and_options_are_checked(toy):
    with pytest.raises(ValueError, match="already registered"):
        registry.register_model("toy")(build_toy)
    with pytest.raises(ValueError, match="no option \\['depth'\\]"):
        build_detector("toy", pretrained=False, verbose=False, options={"depth": 3})
    with pytest.raises(ValueError, match="task must be one of"):
        registry.register_model("toy2", task="segmenter")


def test_meso4_plain_is_an_alias_of_meso4_without_highpass():
    spec, options = registry.resolve("meso4-plain")
    assert spec.name == "meso4" and options == {"highpass": False}
    assert spec.label(options) == "meso4-plain" and spec.label() == "meso4"  # run names as before the option
    assert spec.title(options) == "Meso-4 (plain)" and spec.title() == "Meso-4"
    assert registry.resolve("meso4", options={"highpass": False}) == (spec, options)


def test_every_model_answers_with_arch():
    from dfcourse import clip_peft as cp, localization as L

    assert registry.display_name(build_detector("resnet18", pretrained=False, verbose=False)) == "ResNet18"
    assert L.MesoLocalizer().arch == "meso4" and L.ResNetLocalizer(pretrained=False).arch == "resnet18"
    assert cp.ClipHead("linear", 8, torch.zeros(2, 8)).arch == "linear"
    assert registry.model_spec("clip", "localizer").saved is False
    assert set(registry.names("clip_head")) == set(cp.ClipHead.KINDS)
