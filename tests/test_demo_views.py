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


def test_views_identity_names_the_engine_version():
    from dfcourse.demo import DEMO_VERSION

    assert DemoViews(identities(), 64).identity()["engine"] == DEMO_VERSION


def test_notebook02_uses_online_views_only_on_the_builtin_demo_split(demo_index, tmp_path, monkeypatch):
    from dfcourse import course as dc, recipes

    course = dc.Course("t", True, "test", "cpu", 0, "", True, tmp_path)
    train = read_index(demo_index, split="train")
    ids = identities()
    monkeypatch.setattr(recipes, "demo_identities", lambda split, **kw: ids)
    rows = [{"video_id": n} for n in ("lfw000", "lfw001", "astronaut")]
    assert recipes.demo_views(course, rows, 64) is None, "another split of the built-in faces"
    assert recipes.demo_views(course, [{"video_id": "person1"}], 64) is None, "a folder of the user's faces"
    ids[:] = [Identity(n, i.image, i.landmarks, i.square) for n, i in zip(["lfw000", "lfw001", "astronaut"], ids)]
    views = recipes.demo_views(course, rows, 64, demo_views=2)
    assert isinstance(views, DemoViews) and views.views == 2 and len(views.idents) == 3
    assert recipes.NB02["demo_views"] == 0 and recipes.demo_views(course, rows, 64) is None, \
        "by default Meso-4 trains on the index's crops + self-blends (the high-pass input needs no views)"
    assert train  # names the identities do not have: no views, the index's crops are used
    assert recipes.demo_views(course, train, 64, demo_views=2) is None


def test_views_give_notebook04s_residual_target():
    """target="residual": the map a localizer learns from is notebook 04's target, computed
    from the resized fake and its source exactly as for an index row; reals get zeros."""
    from PIL import Image

    from dfcourse.localization import residual_target

    ds = DemoViews(identities(), 48, views=1, masks=True, target="residual", augment_ops=())
    assert ds.identity()["target"] == "residual"
    nonempty = []
    for i in range(len(ds)):
        _, y, m, _ = ds[i]
        fake, label, _, _, src = ds._render(i)
        small = [np.asarray(Image.fromarray(a).resize((48, 48), Image.BILINEAR)) for a in (fake, src)]
        want = residual_target(*small) if label else np.zeros((48, 48), np.float32)
        assert float(y) == label and np.array_equal(m[0].numpy(), want)
        if label:  # a fake whose cues are all weak can fall under the threshold (notebook 04 counts those)
            nonempty.append(want.sum() > 0)
    assert any(nonempty), "no fake has a residual target"
    with pytest.raises(ValueError, match="target"):
        DemoViews(identities(), 48, target="blend")


def test_selfblend_only_trains_on_views_of_reals_and_their_self_blends(demo_index, tmp_path, monkeypatch):
    """Notebook 02's reals + self-blends-only run on the built-in demo split: fresh views of the
    training identities, each real or self-blended, never another family; elsewhere the reals
    of the index plus online self-blends (``SB_ONLY_VIEWS = 0`` too)."""
    from dfcourse import course as dc, recipes
    from dfcourse.selfblend import SelfBlendDataset

    course = dc.Course("t", True, "test", "cpu", 0, "", True, tmp_path)
    ids = [Identity(n, i.image, i.landmarks, i.square) for n, i in zip(["lfw000", "lfw001", "astronaut"], identities())]
    monkeypatch.setattr(recipes, "demo_identities", lambda split, **kw: ids)
    seen = {}

    def fake_run(name, arch, regime, splits, cfg, size, run_dir, **kw):
        seen.update(train_ds=kw["train_ds"], val_ds=kw.get("val_ds"), splits=splits)
        return {"test_probs": np.linspace(0, 1, len(splits["test"]))}

    monkeypatch.setattr(recipes, "run_detector", fake_run)
    rows = read_index(demo_index)
    splits = {s: [dict(r, video_id=ids[k % 3].name) if s == "train" else r
                  for k, r in enumerate(x for x in rows if x["split"] == s)] for s in ("train", "val", "test")}
    res = recipes.selfblend_only(course, splits, quick_size=64)
    ds = seen["train_ds"]
    assert isinstance(ds, DemoViews) and ds.methods == ("original", "selfblend")
    assert ds.views == recipes.NB02["sb_only_views"] and len(ds) == 3 * ds.views * 2
    assert {ds.sample(i)[3] for i in range(len(ds))} == {"original", "selfblend"}
    assert all(int(r["label"]) == 0 for r in seen["splits"]["train"])
    assert {r["method"] for r in seen["splits"]["val"]} == {"original", "selfblend"}
    assert set(res["by_family"]) == {r["method"] for r in splits["test"] if r["label"] == 1}
    from dfcourse import selfblend

    monkeypatch.setattr(selfblend, "real_landmarks",
                        lambda rows, size, **kw: np.tile(CANONICAL_LANDMARKS * size, (len(rows), 1, 1)))
    recipes.selfblend_only(course, splits, quick_size=64, sb_only_views=0)
    assert isinstance(seen["train_ds"], SelfBlendDataset)
    assert seen["val_ds"] is None  # the index's own self-blends validate
    # FF++: no pre-made self-blends; validation is each val real and a fresh self-blend of it, never a forgery family
    no_sb = {**splits, "val": [r for r in splits["val"] if r["method"] in ("original", "swap")]}
    recipes.selfblend_only(course, no_sb, quick_size=64, sb_only_views=0)
    val_ds, val_rows = seen["val_ds"], seen["splits"]["val"]
    assert isinstance(val_ds, SelfBlendDataset) and len(val_ds) == len(val_rows)
    assert [r["label"] for r in val_rows] == [0, 1] * (len(val_rows) // 2)
    assert {r["method"] for r in val_rows} == {"original", "selfblend"}
    assert [float(val_ds[i][1]) for i in range(4)] == [0, 1, 0, 1]
