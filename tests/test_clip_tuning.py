"""CoOp trains only its context vectors; LoRA leaves the base weights alone, starts as the
identity and merges back into an equivalent plain model."""
import copy

import pytest
import torch

from dfcourse import clip_peft as cp
from dfcourse.clip_tuning import CoOpHead, add_lora, merge_lora
from dfcourse.models import count_params

MODEL = "ViT-S-32"


@pytest.fixture(scope="module")
def clip_and_tokenizer():
    clip, tok, _ = cp.load_clip(MODEL, pretrained="")
    return clip, tok


def test_coop_context_gets_gradients_and_the_text_encoder_none(clip_and_tokenizer):
    clip, tok = clip_and_tokenizer
    head = CoOpHead(clip, tok, n_ctx=4)
    assert count_params(head)[0] == 4 * clip.token_embedding.weight.shape[1]  # only the context trains
    assert all(not p.requires_grad for p in clip.parameters())
    f = torch.nn.functional.normalize(torch.randn(6, clip.text_projection.shape[1]), dim=-1)
    loss = head(f).sum()
    loss.backward()
    assert head.prompts.ctx.grad is not None and head.prompts.ctx.grad.abs().sum() > 0
    assert all(p.grad is None for p in clip.parameters())
    before = head(f).detach()
    with torch.no_grad():
        head.prompts.ctx.add_(0.5)  # other context vectors: other text features, other logits
    assert not torch.allclose(before, head(f))
    assert "_clip" not in dict(head.named_modules()) and len(head.state_dict()) == 5  # CLIP is not saved


def test_lora_starts_as_identity_trains_only_lora_and_merges_back(clip_and_tokenizer):
    clip, _ = clip_and_tokenizer
    visual = copy.deepcopy(clip.visual).eval()
    base = {k: v.clone() for k, v in visual.state_dict().items()}
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        ref = visual(x)
    params = add_lora(visual, r=2)
    trainable = [p for p in visual.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == {id(p) for p in params} and len(params) == 2 * 4 * 12
    with torch.no_grad():
        assert torch.allclose(visual(x), ref, atol=1e-5)  # B = 0: CLIP itself
    opt = torch.optim.SGD(params, lr=0.5)
    for _ in range(2):
        opt.zero_grad()
        visual(x).pow(2).sum().backward()
        opt.step()
    state = visual.state_dict()
    originals = {k.replace("parametrizations.", "").replace(".original", ""): v for k, v in state.items()
                 if k.endswith(".original")}
    assert originals and all(torch.equal(v, base[k]) for k, v in originals.items())  # base weights unchanged
    with torch.no_grad():
        tuned = visual(x)
    assert not torch.allclose(tuned, ref, atol=1e-4)
    merge_lora(visual)
    assert set(visual.state_dict()) == set(base)  # a plain tower again
    with torch.no_grad():
        assert torch.allclose(visual(x), tuned, atol=1e-4)


def test_lora_and_coop_recipes_on_a_quick_subset(clip_and_tokenizer, demo_index, tmp_path):
    from types import SimpleNamespace

    from dfcourse import recipes
    from dfcourse.index import read_index

    clip, tok = clip_and_tokenizer
    course = SimpleNamespace(quick=True, seed=0, device="cpu", runs=tmp_path)
    rows = {s: read_index(demo_index, split=s) for s in ("train", "val", "test")}
    data = {"train": rows["train"], "val": rows["val"], "test": rows["test"], "cross": rows["test"][::-1]}
    sets = recipes.lora_sets(course, data, quick_lora_per_class=2, quick_lora_eval=5)
    assert [len(sets[k]) for k in ("train", "val", "test", "cross")] == [4, 4, 5, 5]
    assert sorted(r["label"] for r in sets["train"]) == [0, 0, 1, 1]  # balanced
    text = cp.text_embeddings(clip, tok)
    before = {k: v.clone() for k, v in clip.visual.state_dict().items()}
    net, run, probs = recipes.train_lora(course, clip, text, sets, lora_rank=2, quick_lora_epochs=1)
    assert all(torch.equal(v, clip.visual.state_dict()[k]) for k, v in before.items())  # clip untouched
    assert set(probs) == {"val", "test", "cross"} and len(probs["test"]) == 5 and run["run_dir"].is_dir()
    trainable, total = count_params(net)
    assert trainable < 0.05 * total
    feats = {k: torch.nn.functional.normalize(torch.randn(4, text.shape[1]), dim=-1) for k in ("train", "val")}
    labels = {k: torch.tensor([0.0, 1.0, 0.0, 1.0]) for k in ("train", "val")}
    head, run = recipes.train_coop(course, clip, tok, feats, labels, head_epochs=2, coop_context=2)
    assert head.prompts.ctx.shape[0] == 2 and len(run["history"]) >= 1
