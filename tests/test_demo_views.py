"""Online demo views (dfcourse/demo.py DemoViews, demo_identities): as many training samples
as asked, fresh per epoch, repeatable per seed, and only from the identities given."""
import numpy as np
import pytest
import torch

from dfcourse.demo import CANONICAL_LANDMARKS, DemoViews, Identity, demo_identities
from dfcourse.index import read_index


def identities(n=3, seed=0):
    import cv2

    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        img = cv2.GaussianBlur(rng.uniform(0, 255, (192, 192, 3)).astype(np.float32), (0, 0), 12)
        img = ((img - img.min()) / (np.ptp(img) + 1e-6) * 200 + 20).astype(np.uint8)
        out.append(Identity(f"id{k}", img, CANONICAL_LANDMARKS * 96 + 48, np.array([38, 38, 154, 154])))
    return out


def test_views_as_many_as_asked_fresh_per_epoch_and_repeatable():
    ids = identities()
    a, b = DemoViews(ids, 64, views=5, seed=1), DemoViews(ids, 64, views=5, seed=1)
    assert len(a) == 3 * 5 * 6 and len(DemoViews(ids, 64, views=2)) == 3 * 2 * 6
    labels = [float(a[i][1]) for i in range(6)]
    assert labels == [0, 0, 0, 1, 1, 1]  # three reals, then selfblend, swap, rerender
    assert torch.equal(a[4][0], b[4][0]) and a[4][0].shape == (3, 64, 64)
    assert not torch.equal(a[0][0], a[1][0])  # two views of one identity differ
    a.epoch = 1
    assert not torch.equal(a[4][0], b[4][0])
    for i in range(3, 6):
        face, label, mask, method = a.sample(i)
        assert label == 1 and mask.max() > 0 and method in ("selfblend", "swap", "rerender")
    x, y, m, i = DemoViews(ids, 64, views=1, masks=True)[3]
    assert m.shape == (1, 64, 64) and m.max() > 0 and float(y) == 1
    with pytest.raises(ValueError, match="2 identities"):
        DemoViews(ids[:1], 64)


def test_demo_identities_split_like_the_index(demo_index, tmp_path):
    rows = read_index(demo_index)
    cache = tmp_path / "identities.json"
    for split in ("train", "val", "test"):
        names = {i.name for i in demo_identities(split, num_lfw=12, cache=cache)}
        assert names == {r["video_id"] for r in rows if r["split"] == split}
    assert cache.is_file()
