import json

import numpy as np
import pytest
import torch
from PIL import Image

from dfcourse.cam import METHODS, compute_cams, vit_grid, vit_reshape_transform
from dfcourse.cli import main
from dfcourse.models import build_detector


@pytest.fixture(scope="module")
def checkpoint(detector_checkpoint):
    return detector_checkpoint


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, astronaut, ffpp_mini):
    d = tmp_path_factory.mktemp("inputs")
    Image.fromarray(astronaut).save(d / "face.jpg")
    Image.fromarray(np.full((200, 200, 3), 127, np.uint8)).save(d / "noface.png")
    (d / "corrupt.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    video = ffpp_mini / "original_sequences/youtube/c23/videos/000.mp4"
    return d, video


def test_predict_image_video_noface_corrupt(checkpoint, inputs, tmp_path, capsys):
    d, video = inputs
    rc = main(["predict", str(d / "face.jpg"), str(d / "noface.png"), str(d / "corrupt.jpg"), str(video),
               "--checkpoint", str(checkpoint), "--json", "--heatmap", str(tmp_path / "heat"), "--frames", "3"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    by = {r["path"].rsplit("/", 1)[-1]: r for r in out}
    face = by["face.jpg"]["faces"]
    assert len(face) == 1 and face[0]["label"] in ("REAL", "FAKE") and 0 <= face[0]["prob_fake"] <= 1
    assert (tmp_path / "heat" / "face_face0_gradcam.png").is_file()
    assert by["noface.png"]["faces"] == [] and by["noface.png"]["note"] == "no face found"
    assert "corrupt.jpg" in by["corrupt.jpg"]["error"]
    v = by["000.mp4"]
    assert len(v["frames"]) == 3
    assert v["video_prob_fake"] == pytest.approx(np.mean([f["prob_fake"] for f in v["frames"]]))


def test_predict_exit_code_when_nothing_processed(checkpoint, inputs, capsys):
    d, _ = inputs
    assert main(["predict", str(d / "corrupt.jpg"), "--checkpoint", str(checkpoint)]) == 1
    assert "corrupt.jpg: ERROR" in capsys.readouterr().out


def test_predict_missing_checkpoint_says_how_to_make_one(inputs, tmp_path, capsys):
    assert main(["predict", str(inputs[0] / "face.jpg"), "--checkpoint", str(tmp_path / "none.pt")]) == 1
    assert "02_resnet_baseline" in capsys.readouterr().err


@pytest.mark.parametrize("method", sorted(METHODS))
def test_cams_on_resnet_frozen_backbone(method):
    torch.manual_seed(0)
    net = build_detector("resnet18", pretrained=False, verbose=False).set_regime("frozen")
    x = torch.rand(2, 3, 64, 64)
    maps = compute_cams(net, x, method, batch_size=64)
    assert maps.shape == (2, 64, 64) and np.isfinite(maps).all()
    assert maps.std() > 0, "a constant map means no gradient reached the target layer"
    assert all(not p.requires_grad for p in net.backbone.parameters())  # restored


def test_vit_grid_and_reshape():
    assert vit_grid(224, 32) == 7 and vit_grid(224, 16) == 14
    with pytest.raises(ValueError):
        vit_grid(200, 32)
    tokens = torch.arange(2 * 50 * 4, dtype=torch.float32).reshape(2, 50, 4)
    fmap = vit_reshape_transform(7)(tokens)
    assert fmap.shape == (2, 4, 7, 7) and torch.equal(fmap[0, :, 0, 0], tokens[0, 1])
    assert torch.equal(vit_reshape_transform(7, batch_first=False)(tokens.permute(1, 0, 2)), fmap)
