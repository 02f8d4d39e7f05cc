import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from dfcourse.checkpoints import load, save
from dfcourse.models import build_detector
from dfcourse.train import TrainConfig, fit, predict_probs, run_epoch


def tiny_data(n=16, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g)
    y = torch.arange(n) % 2
    x[y == 1, 0] += 0.5  # fakes are redder: learnable
    return TensorDataset(x.clamp(0, 1), y.float(), torch.arange(n))


def test_detector_shapes_and_seams():
    for arch, size in [("resnet18", 32), ("inception", 96)]:
        net = build_detector(arch, pretrained=False, verbose=False).eval()
        x = torch.rand(2, 3, size, size)
        f = net.forward_features(x)
        assert f.shape == (2, 512) and net.forward_head(f).shape == (2, 1) and net(x).shape == (2, 1)
        assert isinstance(net.cam_target, torch.nn.Module)


def test_engine_overfits_a_tiny_batch(tmp_path):
    torch.manual_seed(0)
    net = build_detector("resnet18", pretrained=False, verbose=False)
    ds = tiny_data(8)
    cfg = TrainConfig(num_epochs=15, batch_size=8, lr=1e-3, patience=100)
    loader = torch.utils.data.DataLoader(ds, batch_size=8)
    before, _, _ = run_epoch(net, loader, cfg)
    fit(net, ds, ds, cfg, tmp_path)
    after, _, _ = run_epoch(net, loader, cfg)
    assert after < 0.5 * before


def _train_once(tmp_path, seed):
    torch.manual_seed(seed)
    net = build_detector("resnet18", pretrained=False, verbose=False)
    ds = tiny_data(16)
    res = fit(net, ds, ds, TrainConfig(num_epochs=2, batch_size=4, seed=seed), tmp_path)
    return res, predict_probs(net, ds)


def test_same_seed_same_numbers(tmp_path):
    (r1, p1), (r2, p2) = _train_once(tmp_path / "a", 3), _train_once(tmp_path / "b", 3)
    assert [h["val_loss"] for h in r1["history"]] == [h["val_loss"] for h in r2["history"]]
    assert np.array_equal(p1, p2)
    _, p3 = _train_once(tmp_path / "c", 4)
    assert not np.array_equal(p1, p3)


def test_finished_run_is_loaded_not_retrained(tmp_path):
    r1, p1 = _train_once(tmp_path, 5)
    torch.manual_seed(5)  # the same init, settings and data: the same run
    net = build_detector("resnet18", pretrained=False, verbose=False)
    r2 = fit(net, tiny_data(16), tiny_data(16), TrainConfig(num_epochs=2, batch_size=4, seed=5), tmp_path)
    assert r2["reloaded"] and r2["history"] == r1["history"] and r2["run_dir"] == r1["run_dir"]
    assert np.allclose(predict_probs(net, tiny_data(16)), p1)


def test_frozen_regime_trains_only_the_head(tmp_path):
    net = build_detector("resnet18", pretrained=False, verbose=False).set_regime("frozen")
    backbone0 = {k: v.clone() for k, v in net.backbone.state_dict().items()}
    head0 = net.head.weight.detach().clone()
    fit(net, tiny_data(8), tiny_data(8), TrainConfig(num_epochs=2, batch_size=4, lr=1e-2), tmp_path)
    assert all(torch.equal(v, net.backbone.state_dict()[k]) for k, v in backbone0.items())
    assert not torch.equal(head0, net.head.weight)


def test_checkpoint_roundtrip_and_clear_errors(tmp_path):
    net = build_detector("resnet18", pretrained=False, verbose=False).eval()
    path = save(tmp_path / "d.pt", "detector", net, size=32)
    back = load(path, "detector")
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(net(x), back(x)) and back.meta["size"] == 32
    torch.save(net.state_dict(), tmp_path / "raw.pt")
    with pytest.raises(ValueError, match="raw.pt: not a detector checkpoint"):
        load(tmp_path / "raw.pt", "detector")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk.pt: not a readable"):
        load(tmp_path / "junk.pt", "detector")
    ck = torch.load(path, weights_only=True)
    ck["state_dict"] = build_detector("inception", pretrained=False, verbose=False).state_dict()
    torch.save(ck, tmp_path / "mixed.pt")
    with pytest.raises(ValueError, match="mixed.pt: its weights do not fit the detector"):
        load(tmp_path / "mixed.pt", "detector")
    del ck["meta"]
    torch.save(ck, tmp_path / "nometa.pt")
    with pytest.raises(ValueError, match="nometa.pt: incomplete detector checkpoint .no meta"):
        load(tmp_path / "nometa.pt", "detector")
    with pytest.raises(FileNotFoundError, match="notebooks/02_resnet_baseline"):
        load(tmp_path / "missing.pt", "detector")


def test_pretrained_weights_from_a_weights_folder(tmp_path, monkeypatch, capsys):
    from torchvision.models import resnet18

    torch.manual_seed(1)
    ref = resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "resnet18-f37072fd.pth")
    monkeypatch.setenv("DFCOURSE_WEIGHTS_DIR", str(tmp_path))
    net = build_detector("resnet18", pretrained=True)
    assert net.pretrained and "loaded from" in capsys.readouterr().out
    assert torch.equal(net.backbone.conv1.weight, ref.conv1.weight)
    # a wrong file under the right name is refused, not silently half-loaded
    torch.save(build_detector("inception", pretrained=False, verbose=False).backbone.state_dict(),
               tmp_path / "resnet18-f37072fd.pth")
    with pytest.raises(ValueError, match="wrong weights file"):
        build_detector("resnet18", pretrained=True)


def test_no_weights_means_random_init_said_plainly(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DFCOURSE_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    net = build_detector("resnet18", pretrained=True)
    assert not net.pretrained and not net.weights.loaded and net.weights.source == ""
    assert "random init (pretrained weights not found" in capsys.readouterr().out


def test_loader_options_workers_and_pinned_memory_only_beside_a_gpu():
    from dfcourse.train import loader_options

    assert loader_options(TrainConfig(device="cpu")) == {"num_workers": 0, "pin_memory": False,
                                                         "persistent_workers": False}
    gpu = loader_options(TrainConfig(device="cuda"))
    assert gpu["pin_memory"] and 1 <= gpu["num_workers"] <= 8 and gpu["persistent_workers"]
    assert loader_options(TrainConfig(device="cpu", num_workers=2))["num_workers"] == 2  # asked for: given


def test_training_with_worker_processes_gives_the_same_numbers(tmp_path):
    # one torch thread in both runs: on a CPU, workers take threads from training
    # (train.threads_beside_workers), and another thread count sums floats in another order
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        (r0, p0) = _train_once(tmp_path / "a", 7)
        torch.manual_seed(7)
        net = build_detector("resnet18", pretrained=False, verbose=False)
        r2 = fit(net, tiny_data(16), tiny_data(16), TrainConfig(num_epochs=2, batch_size=4, seed=7, num_workers=2),
                 tmp_path / "b")
    finally:
        torch.set_num_threads(before)
    assert [h["val_loss"] for h in r2["history"]] == pytest.approx([h["val_loss"] for h in r0["history"]], abs=1e-6)


def test_workers_on_a_cpu_take_threads_from_training_and_give_them_back():
    import torch

    from dfcourse.train import TrainConfig, threads_beside_workers

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with threads_beside_workers(TrainConfig(num_workers=1, device="cpu")):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with threads_beside_workers(TrainConfig(num_workers=4, device="cpu")):
            assert torch.get_num_threads() == 1, "never fewer than one thread"
        for cfg in (TrainConfig(num_workers=0), TrainConfig(num_workers=-1), TrainConfig(num_workers=2, device="cuda")):
            with threads_beside_workers(cfg):
                assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
