"""Online self-blending (dfcourse/selfblend.py): fresh fakes per epoch, repeatable per seed,
exact masks, every region type; and a learning test for the engine's defaults on a
synthetic blending trace."""
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from dfcourse.datasets import FaceDataset
from dfcourse.io import save_image
from dfcourse.selfblend import (FALLBACK_LANDMARKS, REGIONS, EpochConcat, SelfBlendDataset, region_mask,
                                self_blend_region)
from dfcourse.train import TrainConfig, fit, predict_probs


def smooth_face(rng, size):
    """A smooth random colour image (a stand-in for a face crop)."""
    import cv2

    x = cv2.GaussianBlur(rng.uniform(0, 255, (size, size, 3)).astype(np.float32), (0, 0), size / 10)
    x = (x - x.min()) / (np.ptp(x) + 1e-6) * 180 + 40
    return x.round().astype(np.uint8)


@pytest.fixture
def reals(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for k in range(6):
        path = tmp_path / f"real{k}.png"
        save_image(path, smooth_face(rng, 64))
        rows.append({"path": path, "label": 0, "method": "original"})
    return rows, np.repeat(FALLBACK_LANDMARKS[None] * 64, len(rows), 0)


def test_self_blends_are_new_each_epoch_and_repeat_per_seed(reals):
    rows, lm = reals
    a, b = SelfBlendDataset(rows, lm, 64, seed=1), SelfBlendDataset(rows, lm, 64, seed=1)
    assert len(a) == 2 * len(rows)
    assert torch.equal(a[3][0], b[3][0]) and torch.equal(a[3][2], b[3][2])
    a.epoch = 1
    assert not torch.equal(a[3][0], b[3][0])  # a new epoch, a new fake
    b.epoch = 1
    assert torch.equal(a[3][0], b[3][0])
    assert not torch.equal(SelfBlendDataset(rows, lm, 64, seed=2)[3][0], SelfBlendDataset(rows, lm, 64)[3][0])
    x, y, m, i = a[2]
    assert x.shape == (3, 64, 64) and m.shape == (1, 64, 64) and float(y) == 0 and m.sum() == 0 and i == 2
    assert float(a[3][1]) == 1 and a[3][2].sum() > 0


def test_mask_marks_exactly_the_changed_pixels(reals):
    rows, lm = reals
    ds = SelfBlendDataset(rows, lm, 64, seed=0)
    for epoch in range(3):
        ds.epoch = epoch
        for k in range(len(rows)):
            real, _, zero, _ = ds.sample(2 * k)
            fake, label, mask, region = ds.sample(2 * k + 1)
            changed = (fake != real).any(-1)
            assert label == 1 and region in REGIONS and zero.sum() == 0
            assert changed.any() and np.array_equal(changed, mask > 0)
            assert mask.max() <= 1


def test_every_region_type_appears_and_stays_in_its_place():
    rng = np.random.default_rng(0)
    img, lm = smooth_face(rng, 96), FALLBACK_LANDMARKS * 96
    seen = {self_blend_region(img, lm, rng)[2] for _ in range(60)}
    assert seen == set(REGIONS)
    eye = region_mask(img.shape, lm, np.random.default_rng(0), "eye")
    mouth = region_mask(img.shape, lm, np.random.default_rng(0), "mouth")
    hull = region_mask(img.shape, lm, np.random.default_rng(0), "hull")
    half = region_mask(img.shape, lm, np.random.default_rng(0), "half")
    assert eye.sum() < mouth.sum() < hull.sum() and 0 < half.sum() < hull.sum()
    ys, _ = np.nonzero(eye)
    assert ys.mean() < np.nonzero(mouth)[0].mean()  # eyes above the mouth
    with pytest.raises(ValueError, match="unknown region"):
        region_mask(img.shape, lm, rng, "nose")


def test_concat_passes_the_epoch_on(reals):
    rows, lm = reals
    sb = SelfBlendDataset(rows, lm, 64, masks=False)
    ds = EpochConcat([FaceDataset(rows, 64, train=True), sb])
    ds.epoch = 4
    assert sb.epoch == 4 and ds.datasets[0].epoch == 4 and len(ds[len(rows)]) == 3


def blend_task(tmp_path, n, seed):
    """Reals and self-blends of smooth images written to disk: a visible blending trace."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n):
        img = np.clip(smooth_face(rng, 64) + rng.normal(0, 12, (64, 64, 3)), 0, 255).astype(np.uint8)  # texture
        path = tmp_path / f"{seed}_{k}.png"
        if k % 2:
            img = self_blend_region(img, FALLBACK_LANDMARKS * 64, rng, region="hull")[0]
        save_image(path, img)
        rows.append({"path": path, "label": k % 2})
    return rows


def test_engine_defaults_learn_a_blending_trace(tmp_path):
    """The engine with the ablated defaults (TrainConfig() and FaceDataset's augmentation)
    learns what a plain loop learns: training loss falls, held-out AUC clearly above chance."""
    from dfcourse.models import build_detector

    train, test = blend_task(tmp_path, 128, 0), blend_task(tmp_path, 96, 1)
    torch.manual_seed(0)
    net = build_detector("meso4", pretrained=False, verbose=False)
    cfg = TrainConfig(num_epochs=6, batch_size=16)
    res = fit(net, FaceDataset(train, 64, train=True), FaceDataset(test[:32], 64), cfg, tmp_path / "run")
    losses = [h["train_loss"] for h in res["history"]]
    assert min(losses[-3:]) < 0.8 * losses[0], losses
    p = predict_probs(net, FaceDataset(test[32:], 64))
    assert roc_auc_score([r["label"] for r in test[32:]], p) > 0.6  # chance is 0.5; 64 held-out faces


def test_auc_by_family_against_sklearn():
    from dfcourse.selfblend import auc_by_family

    rows = [{"label": 0, "method": "original"}] * 3 + [{"label": 1, "method": "swap"}] * 2 + \
        [{"label": 1, "method": "rerender"}] * 2
    p = np.array([0.1, 0.5, 0.3, 0.9, 0.2, 0.4, 0.6])
    out = auc_by_family(rows, p)
    assert out["swap"] == pytest.approx(roc_auc_score([0, 0, 0, 1, 1], p[[0, 1, 2, 3, 4]]))
    assert out["rerender"] == pytest.approx(roc_auc_score([0, 0, 0, 1, 1], p[[0, 1, 2, 5, 6]]))
    assert set(out) == {"swap", "rerender"}


def test_training_set_protocols(reals, tmp_path):
    from dfcourse.selfblend import training_set

    rows, _ = reals
    fakes = blend_task(tmp_path, 4, 3)[1::2]  # two fake rows
    ds, pw = training_set(rows + fakes, 64, landmark_cache=tmp_path / "lm.json")
    assert len(ds) == len(rows) + len(fakes) + 2 * len(rows) and pw == pytest.approx(12 / 8)
    ds.epoch = 2
    assert ds.datasets[1].epoch == 2 and (tmp_path / "lm.json").is_file()
    sb, pw = training_set(rows + fakes, 64, with_fakes=False, landmark_cache=tmp_path / "lm.json")
    assert len(sb) == 2 * len(rows) and pw == 1.0
