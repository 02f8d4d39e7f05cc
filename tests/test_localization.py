import numpy as np
import pytest
import torch

from dfcourse import localization as L
from dfcourse import metrics as M
from dfcourse.index import read_index
from dfcourse.train import TrainConfig, fit, run_epoch


def test_residual_target_known_pair():
    src = np.full((20, 20, 3), 100, np.uint8)
    fake = src.copy()
    fake[5:10, 5:10] = 160  # residual 60/255 = 0.235 inside the square
    fake[15, 15] = 103       # compression-like noise: 3/255 = 0.012 < threshold
    t = L.residual_target(fake, src, threshold=0.05, blur_sigma=0)
    expected = np.zeros((20, 20), np.float32)
    expected[5:10, 5:10] = 1
    assert np.array_equal(t, expected)
    blurred = L.residual_target(fake, src, threshold=0.05, blur_sigma=1.0)
    assert blurred[7, 7] == 1 and blurred[15, 15] == 0 and blurred[0, 0] == 0


def test_load_map_real_is_zero_and_fake_from_source(demo_index):
    rows = read_index(demo_index, split="train")
    real = next(r for r in rows if r["label"] == 0)
    fake = next(r for r in rows if r["label"] == 1)
    assert L.load_map(real, 32).sum() == 0
    m_res, m_mask = L.load_map(fake, 64, "residual"), L.load_map(fake, 64, "mask")
    assert m_res.shape == m_mask.shape == (64, 64) and m_res.sum() > 0
    assert (m_res * (1 - m_mask)).sum() <= 0.05 * m_res.sum()  # residual lies inside the mask


def test_iou_dice_hand_made():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2, :2] = True            # 4 pixels
    b[:2, :3] = True            # 6 pixels, 4 shared
    assert M.mask_iou(a, b) == pytest.approx(4 / 6)
    assert M.dice(a, b) == pytest.approx(2 * 4 / 10)
    assert M.mask_iou(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0
    assert M.mask_iou(a, ~a) == 0.0


def test_pixel_auc_and_threshold_hand_made():
    gt = [np.array([[1, 0], [0, 0]]), np.array([[0, 1], [0, 0]])]
    perfect = [np.array([[0.9, 0.1], [0.2, 0.1]]), np.array([[0.3, 0.8], [0.1, 0.2]])]
    assert M.pixel_auc(perfect, gt) == 1.0
    assert M.pixel_auc([1 - m for m in perfect], gt) == 0.0
    assert 0.3 <= M.best_threshold(perfect, gt) < 0.8
    maps = perfect + [np.full((2, 2), 0.6), np.zeros((2, 2))]
    gts = gt + [np.zeros((2, 2)), np.zeros((2, 2))]  # a real face, and a fake whose target is empty
    m = M.localization_metrics(maps, gts, [1, 1, 0, 1], None, 0.5)
    assert m["iou"] == 1.0 and m["dice"] == 1.0 and m["fp_area_real"] == 1.0
    assert m["n_fake"] == 2 and m["n_fake_empty_target"] == 1  # the empty one does not inflate IoU
    ones, zeros = np.ones_like(gts[0]), np.zeros_like(gts[0])
    base = M.prior_rows({"ones": ones, "zeros": zeros}, (gts, [1, 1, 0, 1]), (gts, [1, 1, 0, 1]))
    assert base["ones"]["iou"] == 0.25 and base["zeros"]["iou"] == 0.0 and base["ones"]["fp_area_real"] == 1.0


def test_output_shapes_both_encoders():
    net = L.ResNetLocalizer(pretrained=False)
    logit, m = net(torch.rand(2, 3, 96, 96))
    assert logit.shape == (2, 1) and m.shape == (2, 1, 96, 96)
    from dfcourse.clip_peft import load_clip

    clip, _, _ = load_clip("ViT-S-32", pretrained="")
    cnet = L.ClipLocalizer(clip)
    logit, m = cnet(torch.rand(2, 3, 224, 224))
    assert logit.shape == (2, 1) and m.shape == (2, 1, 224, 224)
    assert all(not p.requires_grad for p in clip.parameters())
    meso = L.MesoLocalizer()
    logit, m = meso(torch.rand(2, 3, 96, 96))
    assert logit.shape == (2, 1) and m.shape == (2, 1, 96, 96)
    assert sum(p.numel() for p in meso.parameters()) < 40_000 and not meso.pretrained  # small, from scratch


def test_loss_falls_on_a_tiny_batch(tmp_path):
    """The training loop fits 8 hand-made faces: 4 real, 4 with a brightened square and its mask
    (made here, so the check does not depend on how subtle the demo's forgeries are)."""
    from dfcourse.io import save_image

    rng = np.random.default_rng(0)
    rows = []
    for k in range(8):
        img = np.clip(rng.normal(110, 25, (64, 64, 3)), 0, 255).astype(np.uint8)
        row = {"label": k % 2, "source_path": "", "mask_path": "", "path": str(tmp_path / f"{k}.png")}
        if k % 2:
            mask = np.zeros((64, 64), np.uint8)
            y, x = rng.integers(8, 40, 2)
            mask[y:y + 16, x:x + 16] = 255
            img[mask > 0] = np.clip(img[mask > 0].astype(int) + 60, 0, 255).astype(np.uint8)
            row["mask_path"] = str(save_image(tmp_path / f"{k}_mask.png", np.stack([mask] * 3, -1)))
        save_image(tmp_path / f"{k}.png", img)
        rows.append(row)
    ds = L.LocalizationDataset(rows, 64, target="mask")
    torch.manual_seed(0)
    net = L.ResNetLocalizer(pretrained=False)
    cfg = TrainConfig(num_epochs=20, batch_size=8, lr=1e-3, patience=100)
    loader = torch.utils.data.DataLoader(ds, batch_size=8)
    before, _, _ = run_epoch(net, loader, cfg, L.make_loss())
    fit(net, ds, ds, cfg, tmp_path / "run", loss_fn=L.make_loss())
    after, _, _ = run_epoch(net, loader, cfg, L.make_loss())
    assert after < 0.6 * before


def test_localizer_checkpoint_and_predict_localize(tmp_path, astronaut, capsys):
    import json

    from PIL import Image

    from dfcourse.cli import main
    from dfcourse import checkpoints as ck
    from dfcourse.models import build_detector

    net = L.ResNetLocalizer(pretrained=False)
    lpath = ck.save(tmp_path / "loc.pt", "localizer", net, size=64)
    assert torch.equal(ck.load(lpath, "localizer").out.weight, net.out.weight)
    cpath = ck.save(tmp_path / "det.pt", "detector", build_detector("resnet18", pretrained=False, verbose=False),
                    size=64)
    Image.fromarray(astronaut).save(tmp_path / "a.jpg")
    rc = main(["predict", str(tmp_path / "a.jpg"), "--checkpoint", str(cpath), "--localize", "--localizer",
               str(lpath), "--json", "--heatmap", str(tmp_path / "h")])
    face = json.loads(capsys.readouterr().out)[0]["faces"][0]
    assert rc == 0 and face["loc_label"] in ("REAL", "FAKE") and 0 <= face["map_area"] <= 1
    assert (tmp_path / "h" / "a_face0_localization.png").is_file()
    with pytest.raises(ValueError, match="not a localizer checkpoint"):
        ck.load(cpath, "localizer")
    x = torch.rand(2, 3, 64, 64)
    for highpass in (True, False):
        torch.manual_seed(1)
        meso = L.MesoLocalizer(highpass=highpass).eval()
        again = ck.load(ck.save(tmp_path / "meso.pt", "localizer", meso, size=64), "localizer")
        assert again.arch == "meso4" and again.highpass is highpass
        assert all(torch.equal(a, b) for a, b in zip(meso(x), again(x)))


def test_widget_callback_renders_headless(monkeypatch):
    import dfcourse.widgets as W
    from dfcourse.widgets import localization_explorer, render_localization

    shown = []
    monkeypatch.setattr(W, "_show", shown.append)
    imgs = [np.zeros((16, 16, 3), np.uint8)] * 2
    gts = [np.zeros((16, 16)), np.ones((16, 16))]
    maps = [np.zeros((16, 16)), np.full((16, 16), 0.7)]
    fig = render_localization(imgs, gts, maps, ["a", "b"], index=1, threshold=0.5)
    assert "IoU 1.000" in fig._suptitle.get_text() and len(fig.axes) == 5  # four panels and the map's colourbar
    assert fig.axes[-1].get_ylabel() == "p(manipulated)"
    box = localization_explorer(imgs, gts, maps, ["a", "b"])
    box.children[0].children[0].value = 1
    box.children[0].children[1].value = 0.9  # move the threshold slider: the callback re-renders
    assert "threshold 0.90" in shown[-1]._suptitle.get_text() and "IoU 0.000" in shown[-1]._suptitle.get_text()
    fig = render_localization(imgs, gts, maps, ["a", "b"], index=0, threshold=0.5)  # a real face
    assert "real face: 0.0% flagged" in fig._suptitle.get_text() and "IoU" not in fig._suptitle.get_text()


def test_localizer_training_set_adds_self_blends_in_varied_regions(demo_index, tmp_path):
    from dfcourse import recipes
    from dfcourse.index import read_index
    from dfcourse.runs import dataset_identity

    rows = {s: read_index(demo_index, split=s) for s in ("train", "val")}
    ds = recipes.localizer_datasets(rows, 64, 0, landmark_cache=tmp_path / "lm.json", self_blend=True)
    reals = [r for r in rows["train"] if r["label"] == 0]
    assert len(ds["train"]) == len(ds["train_index"]) + 2 * len(reals)
    sb = ds["train"].datasets[1]
    x, y, m, _ = sb[1]
    assert float(y) == 1 and m.shape == (1, 64, 64) and float(m.sum()) > 0  # a self-blend and its mask
    assert float(sb[0][2].sum()) == 0  # its real face: an all-zero target
    regions = {sb.sample(2 * k + 1)[3] for k in range(len(reals))}
    assert len(regions) >= 3, regions  # the region moves from sample to sample
    plain = recipes.localizer_datasets(rows, 64, 0, self_blend=False)
    assert "train_index" in plain and dataset_identity(plain["train"]) != dataset_identity(ds["train"])
    # the notebook passes every parameter, the size too, beside the input size it uses
    both = recipes.localizer_datasets(rows, 64, 0, **{**recipes.NB04, "self_blend": False})
    assert both["train"].size == 64


def test_real_area_penalty_is_zero_on_empty_maps_and_grows_with_area():
    y = torch.tensor([0.0, 0.0, 1.0])
    off = torch.full((3, 1, 8, 8), -30.0)  # sigmoid ~ 0 everywhere
    assert float(L.real_area(off, y)) < 1e-6
    areas = []
    for k in (2, 4, 8):
        m = off.clone()
        m[:2, :, :k, :k] = 30.0  # k*k of 64 pixels flagged on both real faces
        areas.append(float(L.real_area(m, y)))
    assert areas == pytest.approx([4 / 64, 16 / 64, 1.0], abs=1e-4)
    fake_only = off.clone()
    fake_only[2] = 30.0  # a positive map on the fake face costs nothing here
    assert float(L.real_area(fake_only, y)) < 1e-6
    assert float(L.real_area(fake_only[2:], y[2:])) == 0.0  # no real face in the batch
    # the loss term: same batch, more area on the reals, higher loss
    class Fixed(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return torch.zeros(len(x), 1), self.m

    batch = (torch.zeros(3, 3, 8, 8), y, torch.zeros(3, 1, 8, 8))
    lo, _ = L.make_loss(real_weight=1.0)(Fixed(off), batch)
    hi, _ = L.make_loss(real_weight=1.0)(Fixed(torch.where(y[:, None, None, None] < 0.5, 30.0, -30.0)
                                               .expand(3, 1, 8, 8)), batch)
    base, _ = L.make_loss()(Fixed(torch.where(y[:, None, None, None] < 0.5, 30.0, -30.0).expand(3, 1, 8, 8)), batch)
    assert float(hi) - float(base) == pytest.approx(1.0, abs=1e-3) and float(lo) < float(base)
    assert L.make_loss().spec == {"name": "bce+map(bce+dice)", "map_weight": 1.0}  # old runs keep their identity


def test_gate_scales_each_map_by_its_probability():
    maps = np.ones((3, 4, 4), np.float32)
    gated = L.gate(maps, np.array([0.0, 0.5, 1.0]))
    assert gated.shape == maps.shape
    assert np.allclose(gated[0], 0) and np.allclose(gated[1], 0.5) and np.allclose(gated[2], 1)


def test_meso4_localizer_trains_on_fresh_demo_views_only_on_the_builtin_split(demo_index, tmp_path, monkeypatch):
    """ENCODER = "meso4" on the built-in demo data: DEMO_VIEWS fresh views of the training
    identities per epoch with notebook 04's residual target; on other data, the index's crops."""
    from dfcourse import course as dc, recipes
    from dfcourse.demo import CANONICAL_LANDMARKS, DemoViews, Identity

    course = dc.Course("t", True, "test", "cpu", 0, "", True, tmp_path)
    rows = {s: read_index(demo_index, split=s) for s in ("train", "val")}
    img = np.full((192, 192, 3), 128, np.uint8)
    ids = [Identity(n, img, CANONICAL_LANDMARKS * 96 + 48, np.array([38, 38, 154, 154]))
           for n in ("lfw000", "lfw001", "astronaut")]
    monkeypatch.setattr(recipes, "demo_identities", lambda split, **kw: ids)
    builtin = {**rows, "train": [dict(r, video_id=ids[k % 3].name) for k, r in enumerate(rows["train"])]}
    ds = recipes.localizer_datasets(builtin, 64, 0, course=course, encoder="meso4", demo_views=3)
    assert isinstance(ds["train"], DemoViews) and ds["train"].views == 3 and ds["train"].target == "residual"
    assert ds["train_index"].rows and ds["val"].rows == L.LocalizationDataset(rows["val"], 64).rows
    for other in (dict(encoder="resnet18"), dict(encoder="meso4", demo_views=0)):
        assert isinstance(recipes.localizer_datasets(builtin, 64, 0, course=course, **other)["train"],
                          L.LocalizationDataset)
    assert isinstance(recipes.localizer_datasets(rows, 64, 0, course=course, encoder="meso4")["train"],
                      L.LocalizationDataset)  # a folder's identities: no views to render
    assert isinstance(recipes.build_localizer("meso4"), L.MesoLocalizer)
    with pytest.raises(ValueError, match="unknown localizer 'vgg'; choose from .*meso4"):
        recipes.build_localizer("vgg")
