"""Meso-4 in the detector registry: parameter count, shapes, seam, CAM target, no weights,
checkpoint round-trip; its high-pass input and the published net without it."""
import pytest
import torch

from dfcourse.checkpoints import load, save
from dfcourse.models import Detector, HighPass, build_detector
from dfcourse.sanity import layer_groups


def test_meso4_shapes_params_and_seam():
    net = build_detector("meso4", pretrained=False, verbose=False).eval()
    assert isinstance(net, Detector) and net.arch == "meso4" and net.highpass
    plain = build_detector("meso4", pretrained=False, verbose=False, options={"highpass": False})
    assert plain.arch == "meso4" and not plain.highpass
    assert not build_detector("meso4-plain", pretrained=False, verbose=False).highpass  # its old name still builds it
    assert sum(p.numel() for p in plain.parameters()) == 27_977  # as in Afchar et al. (2018)
    assert sum(p.numel() for p in net.parameters()) == 27_977 + 8 * 3 * 3 * 3  # 3 more input channels, first conv
    for size in (64, 96, 256):
        x = torch.rand(2, 3, size, size)
        f = net.forward_features(x)
        assert f.shape == (2, 1024) and net.forward_head(f).shape == (2, 1) and net(x).shape == (2, 1)


def test_meso4_cam_target_is_a_spatial_conv_map():
    net = build_detector("meso4", pretrained=False, verbose=False).eval()
    seen = {}
    handle = net.cam_target.register_forward_hook(lambda m, i, o: seen.setdefault("out", o))
    net(torch.rand(1, 3, 96, 96))
    handle.remove()
    assert seen["out"].shape == (1, 16, 12, 12)  # 96 / 8: the last conv block before pooling


def test_meso4_has_no_pretrained_weights(capsys):
    net = build_detector("meso4", pretrained=True)
    assert capsys.readouterr().out.strip() == "no pretrained weights for meso4: random init"
    assert net.pretrained is False


def test_meso4_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    net = build_detector("meso4", pretrained=False, verbose=False).eval()
    x = torch.rand(3, 3, 96, 96)
    path = save(tmp_path / "meso4.pt", "detector", net, size=96)
    back = load(path, "detector")
    assert back.arch == "meso4" and back.meta["size"] == 96 and not back.pretrained
    assert torch.allclose(back(x), net(x))


def test_meso4_head_weight_is_the_logit_layer():
    """Notebook 05 re-draws ``net.head.weight`` (randomisation test): on Meso-4 that is the logit layer."""
    torch.manual_seed(0)
    net = build_detector("meso4", pretrained=False, verbose=False).eval()
    assert net.head.weight is net.head[-1].weight and net.head.bias is net.head[-1].bias
    assert net.head.weight.shape == (1, 16)
    x = torch.rand(2, 3, 96, 96)
    before = net(x)
    torch.nn.init.zeros_(net.head.weight)
    torch.nn.init.zeros_(net.head.bias)
    assert not torch.allclose(before, net(x)) and torch.allclose(net(x), torch.zeros(2, 1))
    assert not any(k in ("head.weight", "head.bias") for k in net.state_dict())


def test_meso4_layer_groups_cover_every_parameter_top_down():
    net = build_detector("meso4", pretrained=False, verbose=False)
    groups = layer_groups(net)
    assert [g for g, _ in groups] == ["head", "block4", "block3", "block2", "block1"]
    covered = {f"{path}.{n}" for _, paths in groups for path in paths
               for n, _ in net.get_submodule(path).named_parameters()}
    assert covered == {n for n, _ in net.named_parameters()}


def test_highpass_is_the_image_and_its_residual_from_the_local_mean():
    hp = HighPass(gain=4.0)
    flat = torch.full((1, 3, 9, 9), 0.3)
    out = hp(flat)
    assert out.shape == (1, 6, 9, 9) and torch.equal(out[:, :3], flat)
    assert out[:, 3:].abs().max() < 1e-6  # no texture, no residual (borders replicated, not zero-padded)
    dot = flat.clone()
    dot[:, :, 4, 4] = 1.0
    res = hp(dot)[:, 3:]
    assert torch.allclose(res[0, 0, 4, 4], torch.tensor(4.0 * 0.7 * 8 / 9))  # the pixel minus its 3x3 mean
    assert res[0, 0, 4, 3] < 0 and res[0, 0, 0, 0].abs() < 1e-6  # its neighbours dip; far away, nothing


def test_meso4_plain_checkpoint_round_trip_and_no_mixing(tmp_path):
    torch.manual_seed(0)
    plain = build_detector("meso4", pretrained=False, verbose=False, options={"highpass": False}).eval()
    path = save(tmp_path / "plain.pt", "detector", plain, size=96)
    back = load(path, "detector")
    x = torch.rand(2, 3, 96, 96)
    assert back.arch == "meso4" and not back.highpass and torch.allclose(back(x), plain(x))
    state = torch.load(path, weights_only=True)
    assert state["build"] == {"arch": "meso4", "highpass": False}
    state["build"]["highpass"] = True  # the published net's weights under the high-pass net's options
    torch.save(state, tmp_path / "relabelled.pt")
    with pytest.raises(ValueError, match="do not fit"):
        load(tmp_path / "relabelled.pt", "detector")
    state["build"] = {"arch": "meso4-plain"}  # as checkpoints wrote it when highpass was part of the name
    torch.save(state, tmp_path / "old.pt")
    old = load(tmp_path / "old.pt", "detector")
    assert old.arch == "meso4" and not old.highpass and torch.allclose(old(x), plain(x))
    state["build"] = {"arch": "meso5"}
    torch.save(state, tmp_path / "unknown.pt")
    with pytest.raises(ValueError, match="do not fit"):
        load(tmp_path / "unknown.pt", "detector")
