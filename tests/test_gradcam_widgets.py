import io

import numpy as np
import pytest
import torch
from PIL import Image

from dfcourse import clip_peft as cp
from dfcourse.cam import METHODS, compute_cams
from dfcourse.metrics import cam_scores, energy_in_mask, pointing_game
from dfcourse.models import build_detector
from dfcourse.predict import Predictor
from dfcourse.widgets import cam_explorer, handle_upload, localization_explorer, render_cam, upload_demo


def test_pointing_game_and_energy_hand_made():
    mask = np.zeros((4, 4))
    mask[:2, :2] = 1
    inside = np.zeros((4, 4))
    inside[0, 1] = 1.0
    inside[3, 3] = 0.5
    assert pointing_game(inside, mask) is True
    assert pointing_game(1 - mask, mask) is False
    assert energy_in_mask(inside, mask) == pytest.approx(1.0 / 1.5)
    assert energy_in_mask(np.ones((4, 4)), mask) == pytest.approx(4 / 16)  # uniform = mask share
    s = cam_scores([inside, mask], [mask, mask], threshold=0.5)
    assert s["pointing_game"] == 1.0 and s["n"] == 2
    assert s["iou"] == pytest.approx((1 / 4 + 1) / 2)


@pytest.mark.parametrize("method", [m for m in sorted(METHODS) if m != "scorecam"])
def test_every_cam_method_on_clip_gives_input_sized_maps(method):
    torch.manual_seed(0)
    clip, tok, _ = cp.load_clip("ViT-S-32", pretrained="")
    text = cp.text_embeddings(clip, tok)
    net = cp.ClipDetector(clip, cp.ClipHead("adapter+prompt", text.shape[1], text))
    maps = compute_cams(net, torch.rand(2, 3, 224, 224), method)
    assert maps.shape == (2, 224, 224) and np.isfinite(maps).all() and maps.std() > 0


@pytest.fixture(scope="module")
def predictor(detector):
    torch.manual_seed(0)
    return Predictor(net=build_detector("resnet18", pretrained=False, verbose=False), size=64, detector=detector)


def _png(arr):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_upload_handler_face_noface_and_non_image(predictor, astronaut):
    fig, msg = handle_upload(_png(astronaut), "astro.png", predictor)
    assert fig is not None and "face 0:" in msg and "p(fake)" in msg
    fig, msg = handle_upload(_png(np.full((120, 120, 3), 90, np.uint8)), "wall.png", predictor)
    assert fig is None and "no face found" in msg
    fig, msg = handle_upload(b"%PDF-1.4 not a photo", "doc.pdf", predictor)
    assert fig is None and "doc.pdf: not an image" in msg
    fig, msg = handle_upload(_png(astronaut[:12, :12]), "thumb.png", predictor)  # a thumbnail: a message, no raise
    assert fig is None and "thumb.png" in msg and "too small" in msg
    grey16 = Image.fromarray((astronaut.mean(-1) * 257).astype(np.uint16))
    buf = io.BytesIO()
    grey16.save(buf, format="PNG")
    fig, msg = handle_upload(buf.getvalue(), "grey16.png", predictor)  # odd mode: still works
    assert fig is not None


def test_cam_widget_callbacks_render_headless(monkeypatch):
    import dfcourse.widgets as W

    shown = []
    monkeypatch.setattr(W, "_show", shown.append)
    imgs = [np.zeros((32, 32, 3), np.uint8)] * 3
    cams = {("ResNet18", "gradcam"): np.random.default_rng(0).random((3, 16, 16)),
            ("ResNet18", "eigencam"): np.random.default_rng(1).random((3, 16, 16)),
            ("CLIP", "eigencam"): np.zeros((3, 32, 32)),
            ("Localizer", "supervised map"): np.stack([0.05 + 0.9 * np.pad(np.ones((16, 16)), 8)] * 3)}
    masks = [np.zeros((32, 32)), np.pad(np.ones((16, 16)), 8), None]
    fig = render_cam(imgs, cams, "ResNet18", "gradcam", index=2, alpha=0.3, threshold=0.4)
    assert len(fig.axes) == 4 and "ResNet18: gradcam" in fig.axes[1].get_title()  # three panels and a colourbar
    assert fig.axes[-1].get_ylabel().startswith("CAM")
    fig = render_cam(imgs, cams, "Localizer", "supervised map", index=1, threshold=0.5, masks=masks)
    assert "IoU 1.00, max in mask" in fig.axes[2].get_title()
    fig = render_cam(imgs, cams, "Localizer", "supervised map", index=0, threshold=0.5, masks=masks)
    assert "25% of a real face flagged" in fig.axes[2].get_title()
    fig = render_cam(imgs, {("c", "m"): np.ones((3, 32, 32))}, "c", "m", index=1, masks=masks)
    assert "max outside mask" in fig.axes[2].get_title()  # a constant map's argmax is a corner
    with pytest.raises(KeyError, match="no gradcam maps for CLIP"):
        render_cam(imgs, cams, "CLIP", "gradcam")
    # opens on the view it is given (the static figure's), with the notebook's threshold
    box = cam_explorer(imgs, cams, masks=masks, model="ResNet18", method="eigencam", threshold=0.3)
    index, model, method = box.children[0].children
    alpha, thr = box.children[1].children
    assert (model.value, method.value, thr.value) == ("ResNet18", "eigencam", 0.3)
    assert all(not c.continuous_update for c in (index, alpha, thr))
    assert "ResNet18: eigencam" in shown[-1].axes[1].get_title()
    # only combinations that exist: switching model offers that model's methods
    n0 = len(shown)
    model.value = "Localizer"
    assert list(method.options) == ["supervised map"] and method.value == "supervised map"
    model.value = "ResNet18"
    assert list(method.options) == ["eigencam", "gradcam"]
    for control, value in ((index, 1), (alpha, 0.8), (thr, 0.6), (method, "gradcam")):
        n = len(shown)
        control.value = value  # every control re-renders
        assert len(shown) > n
    assert len(shown) > n0 and "ResNet18: gradcam" in shown[-1].axes[1].get_title()
    assert "CAM > 0.60" in shown[-1].axes[2].get_title()


def test_upload_message_says_model_weights_and_mode(predictor, astronaut):
    _, msg = handle_upload(_png(astronaut), "astro.png", predictor, about="ResNet18, random init, quick mode")
    assert msg.endswith("[ResNet18, random init, quick mode]")


def test_explorers_read_cleanly_as_text():
    """An executed copy keeps a widget's text/plain form: it must say what it is."""
    from dfcourse.widgets import localization_explorer

    box = localization_explorer([np.zeros((8, 8, 3), np.uint8)], [np.zeros((8, 8))], [np.zeros((8, 8))], ["a"])
    text = box._repr_mimebundle_()["text/plain"] if hasattr(box, "_repr_mimebundle_") else repr(box)
    assert "interactive explorer" in text and "VBox(" not in text


def test_every_explorer_control_has_a_tooltip(monkeypatch):
    """Without one, ipywidgets 8.1 renders the label's hover text as "null"."""
    import ipywidgets as w

    import dfcourse.widgets as W

    monkeypatch.setattr(W, "_show", lambda fig: None)
    imgs = [np.zeros((32, 32, 3), np.uint8)] * 2
    maps = np.random.default_rng(0).random((2, 32, 32))
    boxes = [cam_explorer(imgs, {("ResNet18", "gradcam"): maps}), upload_demo(predictor=None),
             localization_explorer(imgs, [np.zeros((32, 32))] * 2, maps, ["a", "b"])]

    def controls(widget):
        if isinstance(widget, w.Box):
            return [c for child in widget.children for c in controls(child)]
        return [] if isinstance(widget, w.Output) else [widget]

    found = [c for box in boxes for c in controls(box)]
    assert len(found) == 8  # 5 + 1 + 2
    assert all(c.tooltip for c in found), [c.description for c in found if not c.tooltip]
