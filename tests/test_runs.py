"""Run identity: the same settings reload, any change trains a new run; the checkpoint
registry round-trips its metadata; weights problems are named, not hidden."""
import numpy as np
import pytest
import torch
from PIL import Image

from dfcourse import checkpoints as ck
from dfcourse import clip_peft as cp
from dfcourse import localization as L
from dfcourse.datasets import FaceDataset
from dfcourse.models import build_detector
from dfcourse.runs import fingerprint, run_identity
from dfcourse.train import TrainConfig, fit, predict_probs


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """12 tiny face crops (fakes carry a red square) with aligned sources and masks."""
    root = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        real = rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)
        Image.fromarray(real).save(root / f"r{i}.png")
        rows.append({"path": str(root / f"r{i}.png"), "label": 0, "source_path": "", "mask_path": ""})
        fake = real.copy()
        fake[6:14, 6:14] = (255, 0, 0)
        mask = np.zeros((24, 24), np.uint8)
        mask[6:14, 6:14] = 255
        Image.fromarray(fake).save(root / f"f{i}.png")
        Image.fromarray(mask).save(root / f"m{i}.png")
        rows.append({"path": str(root / f"f{i}.png"), "label": 1, "source_path": str(root / f"r{i}.png"),
                     "mask_path": str(root / f"m{i}.png")})
    return rows


CFG = TrainConfig(num_epochs=1, batch_size=8, lr=1e-3, seed=0)


def detector_identity(rows, size=24, seed=0, cfg=CFG, **kw):
    torch.manual_seed(seed)
    net = build_detector("resnet18", pretrained=False, verbose=False)
    return fingerprint(run_identity(net, FaceDataset(rows[:16], size, train=True), FaceDataset(rows[16:], size),
                                    cfg, L.make_loss(), **kw))


def localizer_identity(rows, map_weight=1.0, **ds):
    torch.manual_seed(0)
    net = L.ResNetLocalizer(pretrained=False)
    train, val = L.LocalizationDataset(rows[:16], 24, **ds), L.LocalizationDataset(rows[16:], 24, **ds)
    return fingerprint(run_identity(net, train, val, CFG, L.make_loss(map_weight)))


def test_every_setting_is_part_of_the_identity(faces):
    base = detector_identity(faces)
    assert detector_identity(faces) == base  # deterministic
    changed = {
        "input size": detector_identity(faces, size=32),
        "initial weights (seed)": detector_identity(faces, seed=1),
        "learning rate": detector_identity(faces, cfg=TrainConfig(**{**vars(CFG), "lr": 1e-4})),
        "rows (same size, other rows)": detector_identity(faces[4:] + faces[:4]),
        "extra setting": detector_identity(faces, weights_source="x.pth"),
    }
    assert all(v != base for v in changed.values()), changed
    loc = localizer_identity(faces)
    for name, other in {"target": localizer_identity(faces, target="mask"),
                        "residual threshold": localizer_identity(faces, threshold=0.2),
                        "residual blur": localizer_identity(faces, blur_sigma=0.0),
                        "map-loss weight": localizer_identity(faces, map_weight=0.5)}.items():
        assert other != loc, name


def test_prompts_and_frozen_layers_change_the_model_identity():
    from dfcourse.runs import model_identity

    text = torch.randn(2, 16)
    torch.manual_seed(0)
    a = cp.ClipHead("adapter+prompt", 16, text)
    torch.manual_seed(0)
    b = cp.ClipHead("adapter+prompt", 16, text)
    assert model_identity(a) == model_identity(b)
    torch.manual_seed(0)
    other_prompts = cp.ClipHead("adapter+prompt", 16, torch.randn(2, 16))
    assert model_identity(other_prompts) != model_identity(a)
    net = build_detector("resnet18", pretrained=False, verbose=False)
    full = model_identity(net)
    assert model_identity(net.set_regime("frozen")) != full


def _fit(rows, tmp_path, seed=0, size=24, fresh=False):
    torch.manual_seed(seed)
    net = build_detector("resnet18", pretrained=False, verbose=False)
    run = fit(net, FaceDataset(rows[:16], size, train=True), FaceDataset(rows[16:], size), CFG,
              tmp_path, name="t", fresh=fresh)
    return net, run


def test_identical_rerun_reloads_and_any_change_trains_anew(faces, tmp_path):
    net1, r1 = _fit(faces, tmp_path)
    assert not r1["reloaded"] and (r1["run_dir"] / "identity.json").is_file()
    net2, r2 = _fit(faces, tmp_path)
    assert r2["reloaded"] and r2["run_dir"] == r1["run_dir"]
    x = FaceDataset(faces, 24)
    assert np.allclose(predict_probs(net1, x), predict_probs(net2, x))
    _, r3 = _fit(faces[4:] + faces[:4], tmp_path)  # same size, other training rows
    _, r4 = _fit(faces, tmp_path, size=32)
    assert not r3["reloaded"] and not r4["reloaded"]
    assert len({r1["run_dir"], r3["run_dir"], r4["run_dir"]}) == 3
    _, r5 = _fit(faces, tmp_path, fresh=True)  # FRESH: retrained in the same folder
    assert not r5["reloaded"] and r5["run_dir"] == r1["run_dir"]


def test_localizer_trained_pretrained_reloads_as_pretrained(tmp_path, monkeypatch):
    from torchvision.models import resnet18

    torch.save(resnet18(weights=None).state_dict(), tmp_path / "resnet18-f37072fd.pth")
    monkeypatch.setenv("DFCOURSE_WEIGHTS_DIR", str(tmp_path))
    net = L.ResNetLocalizer(pretrained=True)
    assert net.pretrained and net.weights.source == str(tmp_path / "resnet18-f37072fd.pth")
    path = ck.save(ck.checkpoint_path(tmp_path, "localizer"), "localizer", net, size=24, mode="quick")
    back = ck.load(path, "localizer")
    assert back.pretrained and back.weights == net.weights and back.meta["size"] == 24
    assert path == tmp_path / "runs" / "checkpoints" / "localizer_latest.pt"


def test_load_or_train_reuses_only_a_matching_checkpoint(tmp_path, capsys):
    from types import SimpleNamespace

    course = SimpleNamespace(root=tmp_path, mode="quick", device="cpu")
    calls = []

    def recipe():
        calls.append(1)
        return build_detector("resnet18", pretrained=False, verbose=False), {"name": "r", "size": 24}

    a = ck.load_or_train(course, "detector", recipe, data="d1")
    b = ck.load_or_train(course, "detector", recipe, data="d1")
    assert len(calls) == 1 and b.meta["name"] == "r" and "loaded" in capsys.readouterr().out
    x = torch.rand(1, 3, 24, 24)
    assert torch.allclose(a.eval()(x), b(x))
    ck.load_or_train(course, "detector", recipe, data="d2")  # other data: trained again
    course.mode = "full"
    ck.load_or_train(course, "detector", recipe, data="d2")  # other mode: trained again
    assert len(calls) == 3


def test_corrupt_clip_weights_file_is_named(tmp_path, monkeypatch):
    (tmp_path / "ViT-S-32-openai.bin").write_bytes(b"not a checkpoint at all")
    monkeypatch.setenv("DFCOURSE_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(ValueError, match=r"ViT-S-32-openai\.bin: cannot load these weights"):
        cp.load_clip("ViT-S-32", "openai")


def test_clip_activation_matches_the_weights_tag(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    openai, _, w = cp.load_clip("ViT-B-32", "openai")  # offline: random init, but the right build
    assert not w.loaded and cp.uses_quick_gelu(openai)
    laion, _, _ = cp.load_clip("ViT-B-32", "laion2b_s34b_b79k")
    assert not cp.uses_quick_gelu(laion)
    with pytest.raises(ValueError, match="knows no pretrained tag 'nope'"):
        cp.load_clip("ViT-B-32", "nope")
