import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from dfcourse import clip_peft as cp
from dfcourse.cam import compute_cams
from dfcourse.datasets import FaceDataset
from dfcourse.index import read_index
from dfcourse.metrics import evaluate
from dfcourse.models import count_params
from dfcourse.train import TrainConfig, fit

MODEL = "ViT-S-32"  # same architecture family as ViT-B/32 (patch 32, 224 px), smaller: fast tests


@pytest.fixture(scope="module")
def clip_parts():
    torch.manual_seed(0)
    clip, tok, weights = cp.load_clip(MODEL, pretrained="")
    assert not weights.loaded and "random init" in weights.note
    return clip, tok, cp.text_embeddings(clip, tok)


@pytest.fixture(scope="module")
def rows(demo_index):
    return read_index(demo_index, split="train")[:12]


def test_adapter_is_identity_at_init_and_param_count():
    a = cp.Adapter(512, 64)
    f = torch.randn(3, 512)
    assert torch.equal(a(f), f)
    assert sum(p.numel() for p in a.parameters()) == 512 * 64 + 64 + 64 * 512 + 512


def test_prompt_fusion_logits_hand_checked():
    text = torch.nn.functional.normalize(torch.tensor([[1.0, 0, 0], [0.6, 0.8, 0]]), dim=-1)
    head = cp.ClipHead("adapter+prompt", 3, text, hidden=4)
    f = torch.tensor([[0.6, 0.8, 0.0], [1.0, 0.0, 0.0]])  # = fake prompt, = real prompt
    logits = head(f)[:, 0]
    # cos(fake, real) = 0.6: logit = 100 * (1 - 0.6) = 40 for the first, -40 for the second
    assert torch.allclose(logits, torch.tensor([40.0, -40.0]), atol=1e-3)
    zs = cp.ClipHead("zeroshot", 3, text)
    assert sum(p.numel() for p in zs.parameters() if p.requires_grad) == 0


def test_detector_shapes_and_trainable_fraction(clip_parts):
    clip, _, text = clip_parts
    net = cp.ClipDetector(clip, cp.ClipHead("adapter+prompt", text.shape[1], text))
    x = torch.rand(2, 3, 224, 224)
    assert net.forward_features(x).shape == (2, text.shape[1]) and net(x).shape == (2, 1)
    trainable, total = count_params(net)
    assert trainable == count_params(net.head)[0] and trainable < 0.01 * total


def test_feature_cache_hit_miss_and_invalidation(clip_parts, rows, tmp_path):
    clip, _, text = clip_parts
    net = cp.ClipDetector(clip, cp.ClipHead("linear", text.shape[1], text))
    cache = cp.make_cache(tmp_path, net, MODEL)
    f1 = cp.encode_rows(net, rows[:6], cache)
    assert (cache.hits, cache.misses) == (0, 6)
    again = cp.make_cache(tmp_path, net, MODEL)  # re-read from disk
    f2 = cp.encode_rows(net, rows[:8], again)
    assert (again.hits, again.misses) == (6, 2) and torch.allclose(f1, f2[:6])
    assert torch.allclose(f2, cp.encode_rows(net, rows[:8], None), atol=1e-5)  # cached == fresh
    other_model = cp.FeatureCache(tmp_path, "ViT-B-32", cp.weights_fingerprint(clip), {"size": 224})
    other_prep = cp.FeatureCache(tmp_path, MODEL, cp.weights_fingerprint(clip), {"size": 192})
    assert len({cache.path, other_model.path, other_prep.path}) == 3
    clip2, _, _ = cp.load_clip(MODEL, pretrained="")  # the same seeded random init ...
    assert cp.weights_fingerprint(clip2) == cp.weights_fingerprint(clip)
    with torch.no_grad():
        clip2.visual.conv1.weight.add_(0.01)  # ... and other weights: another key
    assert cp.make_cache(tmp_path, cp.ClipDetector(clip2, net.head), MODEL).path != cache.path
    changed = dict(rows[0], path=str(tmp_path / "copy.png"))
    from PIL import Image
    img = np.asarray(Image.open(rows[0]["path"])).copy()
    img[0, 0] ^= 255
    Image.fromarray(img).save(changed["path"])
    third = cp.make_cache(tmp_path, net, MODEL)
    cp.encode_rows(net, [changed], third)
    assert third.misses == 1  # new content -> new key


def test_cached_and_uncached_training_give_the_same_metrics(clip_parts, demo_index, tmp_path):
    clip, _, text = clip_parts
    train = read_index(demo_index, split="train", methods=["swap"])[:16]
    val = read_index(demo_index, split="val", methods=["swap"])[:12]
    cfg = TrainConfig(num_epochs=3, batch_size=8, lr=1e-2, schedule="cosine", grad_clip=1.0, seed=0)

    torch.manual_seed(0)
    head = cp.ClipHead("adapter+prompt", text.shape[1], text)
    net = cp.ClipDetector(clip, head)
    ftr, fval = cp.encode_rows(net, train), cp.encode_rows(net, val)
    ytr, yval = (torch.tensor([float(r["label"]) for r in rs]) for rs in (train, val))
    fit(head, TensorDataset(ftr, ytr, torch.arange(len(ytr))), TensorDataset(fval, yval, torch.arange(len(yval))),
        cfg, tmp_path / "cached", loss_fn=cp.head_loss)
    cached = evaluate(val, cp.head_probs(head, fval))

    torch.manual_seed(0)
    net2 = cp.ClipDetector(clip, cp.ClipHead("adapter+prompt", text.shape[1], text))
    fit(net2, FaceDataset(train, 224), FaceDataset(val, 224), cfg, tmp_path / "uncached")
    uncached = evaluate(val, cp.head_probs(net2.head, fval))
    for k in ("auc", "eer", "acc", "f1"):
        assert cached["frame"][k] == pytest.approx(uncached["frame"][k], abs=1e-6)
    assert not torch.equal(head.adapter.up.weight, torch.zeros_like(head.adapter.up.weight))  # it trained


def test_gradcam_on_clip_is_a_non_constant_map(clip_parts):
    clip, _, text = clip_parts
    net = cp.ClipDetector(clip, cp.ClipHead("adapter+prompt", text.shape[1], text))
    assert net.cam_target is clip.visual.transformer.resblocks[-1].ln_1
    maps = compute_cams(net, torch.rand(2, 3, 224, 224), "gradcam")
    assert maps.shape == (2, 224, 224) and maps.std() > 0
    assert all(not p.requires_grad for p in clip.parameters())


def test_clip_weights_from_a_weights_folder(tmp_path, monkeypatch):
    torch.manual_seed(3)
    ref, _, _ = cp.load_clip(MODEL, pretrained="")
    torch.save(ref.state_dict(), tmp_path / f"{MODEL}-openai.bin")
    monkeypatch.setenv("DFCOURSE_WEIGHTS_DIR", str(tmp_path))
    model, _, weights = cp.load_clip(MODEL, "openai")
    assert weights.loaded and weights.source == str(tmp_path / f"{MODEL}-openai.bin")
    assert cp.uses_quick_gelu(model)  # OpenAI weights: the QuickGELU build, also from a local file
    assert torch.equal(model.visual.conv1.weight, ref.visual.conv1.weight)


def test_encode_images_keyed_by_pixels(clip_parts, rows, tmp_path):
    """Faces in memory (fresh self-blends) encode like the same face read from a file, are
    cached under their pixels, and one changed pixel is a new key."""
    from PIL import Image

    clip, _, text = clip_parts
    net = cp.ClipDetector(clip, cp.ClipHead("linear", text.shape[1], text))
    imgs = [np.asarray(Image.open(r["path"]).convert("RGB")) for r in rows[:3]]
    cache = cp.make_cache(tmp_path, net, MODEL)
    f = cp.encode_images(net, imgs, cache)
    assert torch.allclose(f, cp.encode_rows(net, rows[:3], None), atol=1e-5)
    assert (cache.hits, cache.misses) == (0, 3)
    changed = imgs[0].copy()
    changed[0, 0] ^= 255
    again = cp.make_cache(tmp_path, net, MODEL)
    cp.encode_images(net, imgs + [changed], again)
    assert (again.hits, again.misses) == (3, 1)


def test_clip_selfblend_only_never_trains_or_selects_on_index_fakes(clip_parts, demo_index, tmp_path):
    """Notebook 03's reals + self-blends-only protocol: training and validation hold only real
    faces and self-blends of them (balanced), and every test family is scored."""
    from dfcourse import course as dc, recipes

    clip, tok, text = clip_parts
    course = dc.Course("t", True, "test", "cpu", 0, "", True, tmp_path)
    data = recipes.cross_manipulation_data(course, demo_index, "swap", "rerender", 6)
    net = cp.ClipDetector(clip, cp.ClipHead("adapter+prompt", text.shape[1], text))
    res = recipes.clip_selfblend_only(course, demo_index, net, text, data, self_blends=2, clip_model=MODEL,
                                      head_epochs=2)
    n_real = sum(r["label"] == 0 for r in data["train"])
    assert res["n_real"] == n_real and res["n_blend"] == 2 * n_real
    assert res["run"]["history"] and 0 <= res["val_auc"] <= 1
    test_fakes = {r["method"] for r in read_index(demo_index, split="test") if r["label"] == 1}
    assert set(res["by_family"]) == test_fakes == {"selfblend", "swap", "rerender"}
    again = recipes.clip_selfblend_only(course, demo_index, net, text, data, self_blends=2, clip_model=MODEL,
                                        head_epochs=2)
    assert again["by_family"] == res["by_family"]  # the same blends and features: the finished run is reloaded
