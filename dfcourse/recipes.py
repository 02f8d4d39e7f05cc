"""The recipes of the models later notebooks reuse: notebook 02's detector, 03's CLIP head
and 04's localizer. Their defaults *are* those notebooks' parameters (a test compares each
with the notebook's ``parameters`` cell), the notebooks call them, and a later notebook
run alone trains through the same function (:func:`dfcourse.checkpoints.load_or_train`).
Same settings, same data: the same run identity, so a run notebook 02 already finished
is reloaded from its folder rather than trained twice.
Used in notebooks 02, 03, 04 and 05.
"""
from __future__ import annotations

import copy
import re

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch.utils.data import TensorDataset

from . import clip_peft as cp
from .clip_tuning import CoOpHead, add_lora
from .course import landmark_cache
from .datasets import FaceDataset, augment_ops
from .demo import IDENTITIES_FILE, DemoViews, demo_identities
from .experiments import balance, run_detector
from .index import read_index
from .localization import LocalizationDataset, make_loss
from .registry import create_model, model_spec
from .robustness import THRESHOLD_RULE, choose, shifted_sets
from .selfblend import EpochConcat, SelfBlendDataset, auc_by_family, real_landmarks, training_set
from .train import TrainConfig, fit, predict_probs

# The parameters cells of notebooks 02, 03 and 04 (names lower-cased).
NB02 = dict(pretrained=True, size=224, num_epochs=10, batch_size=32, lr_full=1e-4, patience=3,
            quick_size=96, quick_epochs=2, quick_max_per_class=100, lr_scratch=1e-3, scratch_epochs=20,
            quick_scratch_epochs=10, scratch_batch_size=8, scratch_schedule="cosine", high_pass=True, self_blend=True,
            demo_views=0, sb_only_views=1, augment="robust", held_out="auto", lr_head=1e-3)
NB03 = dict(clip_model="ViT-B-32", clip_pretrained="openai", train_method="auto", cross_method="auto",
            adapter_hidden=64, head_epochs=50, head_lr=1e-3, batch_size=64, patience=8, quick_max_per_class=50,
            quick_eval_per_class=32,
            coop_context=4, lora_rank=4, lora_epochs=5, lora_lr=5e-4, quick_lora_per_class=16, quick_lora_epochs=1,
            quick_lora_eval=32, self_blends=1)
NB04 = dict(pretrained=True, encoder="meso4", high_pass=True, target="residual", residual_threshold=0.05, residual_blur=1.0,
            map_weight=1.0, real_weight=0.0, self_blend=False, demo_views=2, augment="robust", size=224, num_epochs=10,
            lr=1e-4,
            batch_size=32, patience=3, quick_size=96, quick_epochs=4, quick_max_per_class=225, scratch_epochs=20,
            quick_scratch_epochs=10, scratch_batch_size=8)


def _params(defaults: dict, given: dict) -> dict:
    unknown = set(given) - set(defaults)
    if unknown:
        raise TypeError(f"unknown parameters {sorted(unknown)}; known: {sorted(defaults)}")
    return {**defaults, **given}


# ------------------------------------------------------------------ notebook 02
def scratch_config(course, **params) -> TrainConfig:
    """The from-scratch training of notebook 02 (Meso-4 rows): lr ``LR_SCRATCH`` with the
    ``SCRATCH_SCHEDULE`` decay, batches of ``SCRATCH_BATCH_SIZE``, no early stop within
    ``SCRATCH_EPOCHS`` (a random-init net's val loss is noisy before it learns). Its training
    sets render online (views, self-blends): on a CPU one DataLoader worker renders beside the
    train step, which runs one torch thread fewer (:func:`dfcourse.train.threads_beside_workers`)."""
    p = _params(NB02, params)
    return _from_scratch(course, p["quick_scratch_epochs"] if course.quick else p["scratch_epochs"],
                         p["scratch_batch_size"], p["lr_scratch"], p["scratch_schedule"])


def _from_scratch(course, num_epochs: int, batch_size: int, lr: float, schedule: str) -> TrainConfig:
    """No early stop; on a CPU one worker renders the online training set beside the train step."""
    cpu = not str(course.device).startswith("cuda")
    return TrainConfig(num_epochs=num_epochs, batch_size=batch_size, lr=lr, schedule=schedule, patience=num_epochs,
                       seed=course.seed, device=course.device, num_workers=1 if cpu else -1)


def fixed_blends(course, reals, size: int, seed: int):
    """One self-blend of each real face, the same on every call (no view jitter, no
    augmentation): items ``2k`` real ``k``, ``2k + 1`` its blend; ``.epoch`` draws another set."""
    lm = real_landmarks(reals, size, cache=landmark_cache(course), device=course.device)
    return SelfBlendDataset(reals, lm, size, seed=seed, views=False, augment_ops=(), masks=False)


def demo_views(course, train_rows, input_size: int, **params):
    """Online views of the training identities (:class:`dfcourse.demo.DemoViews`, ``DEMO_VIEWS``
    fresh frames of each identity per epoch, half of them forged) when ``train_rows`` are the
    built-in demo data's training split; ``None`` for any other data or ``DEMO_VIEWS = 0``."""
    p = _params(NB02, params)
    idents = builtin_demo_identities(course, train_rows) if p["demo_views"] else None
    return None if idents is None else DemoViews(idents, input_size, views=p["demo_views"], seed=course.seed,
                                                 augment_ops=augment_ops(p["augment"]))


def builtin_demo_identities(course, train_rows):
    """The demo identities behind ``train_rows`` when they are the built-in demo data's
    training split (so fresh views of them can be rendered); ``None`` for any other data."""
    names = {r["video_id"] for r in train_rows}
    builtin = {"astronaut", "cameraman", "gracehopper"}
    if not names or not all(n in builtin or re.fullmatch(r"lfw\d{3}", n) for n in names):
        return None
    cache = course.data / "demo" / IDENTITIES_FILE
    if not cache.is_file():
        cache = course.data / "landmarks" / "demo_identities.json"
    idents = demo_identities("train", seed=0, cache=cache, device=course.device)
    if {i.name for i in idents} != names:  # another split of the same photos: not the course's demo index
        return None
    return idents


def meso4_options(**params) -> dict:
    """Meso-4's build options: with the high-pass input (:class:`dfcourse.models.HighPass`) or,
    with ``HIGH_PASS = False``, without it (the published net)."""
    return {"highpass": _params(NB02, params)["high_pass"]}


def meso4_label(**params) -> str:
    """``meso4``, or ``meso4-plain`` without the high-pass input: the start of the run's name."""
    return model_spec("meso4").label(meso4_options(**params))


def meso4_detector(course, splits, fresh: bool = False, **params) -> dict:
    """Notebook 02's Meso-4 row, from random init. On the built-in demo data with
    ``DEMO_VIEWS`` (``meso4-scratch+views``): fresh online views of every training identity
    each epoch (:func:`demo_views`), real and forged. Otherwise (``meso4-scratch+SB``): *all*
    training rows (``splits["train"]`` unbalanced: a fake-class weight balances them) plus,
    with ``SELF_BLEND``, a fresh online self-blend of every real training face each epoch.
    Returns :func:`dfcourse.experiments.run_detector`'s result."""
    p = _params(NB02, params)
    size = p["quick_size"] if course.quick else p["size"]
    cfg = scratch_config(course, **params)
    ops = augment_ops(p["augment"])
    views = demo_views(course, splits["train"], size, **params)
    if views is not None:
        train_ds, pos_weight = views, views.pos_weight  # one real view per forged one: 1.0
    elif p["self_blend"]:
        train_ds, pos_weight = training_set(splits["train"], size, course.seed, with_fakes=True, augment_ops=ops,
                                            landmark_cache=landmark_cache(course), device=course.device)
    else:
        train_ds = FaceDataset(splits["train"], size, train=True, seed=course.seed, augment_ops=ops)
        n_real = sum(int(r["label"]) == 0 for r in splits["train"])
        pos_weight = n_real / (len(splits["train"]) - n_real)
    cfg.pos_weight = pos_weight
    name = f"{meso4_label(**params)}-scratch" + ("+views" if views is not None else "+SB" if p["self_blend"] else "")
    torch.manual_seed(course.seed)
    return run_detector(name, "meso4", "full", splits, cfg, size, course.runs / "02_resnet_baseline" / name,
                        pretrained=False, figures_dir=course.figures, figure_prefix=f"02_resnet_baseline_{name}_",
                        fresh=fresh, train_ds=train_ds, options=meso4_options(**params))


def selfblend_only(course, splits, fresh: bool = False, **params) -> dict:
    """The "reals + self-blends only" protocol of notebook 02: Meso-4 from random init on
    real training faces and fresh online self-blends of them (the index's fakes are never
    seen), validated on val reals vs self-blends (the index's own, else a fresh self-blend of each
    val real: no forgery family of the index takes part in selection), tested on every test fake.
    On the built-in demo data it trains on ``SB_ONLY_VIEWS`` rounds of fresh frames of each
    training identity per epoch, one real and one self-blended by the demo engine per round
    (:class:`dfcourse.demo.DemoViews`, as the Meso-4 row's views); on other data on the real
    training faces and a fresh self-blend of each in a random region.
    Returns :func:`dfcourse.experiments.run_detector`'s result plus ``by_family``: frame-level
    test AUC of each forgery family against all test reals."""
    p = _params(NB02, params)
    size = p["quick_size"] if course.quick else p["size"]
    reals = [r for r in splits["train"] if int(r["label"]) == 0]
    sb_val, val_ds = [r for r in splits["val"] if r["method"] in ("original", "selfblend")], None
    if len({int(r["label"]) for r in sb_val}) < 2:  # no pre-made self-blends (FF++): the val reals, each self-blended
        val_reals = [r for r in splits["val"] if int(r["label"]) == 0]
        val_ds = fixed_blends(course, val_reals, size, course.seed + 1)
        sb_val = [dict(r, **({"label": 1, "method": "selfblend"} if fake else {})) for r in val_reals for fake in (0, 1)]
    idents = builtin_demo_identities(course, splits["train"]) if p["sb_only_views"] else None
    if idents is not None:
        train_ds = DemoViews(idents, size, views=p["sb_only_views"], methods=("original", "selfblend"),
                             seed=course.seed, augment_ops=augment_ops(p["augment"]))
    else:
        train_ds, _ = training_set(reals, size, course.seed, with_fakes=False, augment_ops=augment_ops(p["augment"]),
                                   landmark_cache=landmark_cache(course), device=course.device)
    torch.manual_seed(course.seed)
    name = f"{meso4_label(**params)}-SB-only"
    res = run_detector(name, "meso4", "full", {"train": reals, "val": sb_val, "test": splits["test"]},
                       scratch_config(course, **params), size, course.runs / "02_resnet_baseline" / name,
                       pretrained=False, fresh=fresh, train_ds=train_ds, val_ds=val_ds,
                       options=meso4_options(**params))
    res["by_family"] = auc_by_family(splits["test"], res["test_probs"])
    return res


def held_out_family(methods, held_out: str = "auto") -> str | None:
    """The forgery family kept out of training and used by the shifted validation:
    ``auto`` is ``rerender`` on the demo data and ``NeuralTextures`` on FF++ (each the family
    least like the others); ``none`` keeps every family in training."""
    methods = set(methods) - {"original"}
    if held_out == "none":
        return None
    if held_out == "auto":
        held_out = "NeuralTextures" if "NeuralTextures" in methods else "rerender" if "rerender" in methods else None
        return held_out if held_out and len(methods) > 1 else None
    if held_out not in methods:
        raise ValueError(f"HELD_OUT = {held_out!r} is not a forgery family of the index; it has {sorted(methods)}")
    return held_out


def without_family(splits, family):
    """``splits`` with ``family``'s fakes removed from train and val (test keeps every family)."""
    if family is None:
        return dict(splits)
    return {s: rows if s == "test" else [r for r in rows if r["method"] != family] for s, rows in splits.items()}


def transfer_rows(course, splits, fresh: bool = False, **params) -> list[dict]:
    """Notebook 02's transfer-learning rows: ResNet18 frozen and fully fine-tuned (plus
    InceptionResnetV1 in full mode) on the balanced training split (capped per class in quick
    mode); each a :func:`dfcourse.experiments.run_detector` result."""
    p = _params(NB02, params)
    size = p["quick_size"] if course.quick else p["size"]
    splits = {**splits, "train": balance(splits["train"], course.seed,
                                         p["quick_max_per_class"] if course.quick else None)}
    experiments = [("resnet18-frozen", "resnet18", "frozen", p["lr_head"]), ("resnet18-full", "resnet18", "full", p["lr_full"])]
    if not course.quick:  # InceptionResnetV1 (23 M parameters) costs the most per face: full mode only
        experiments += [("inception-frozen", "inception", "frozen", p["lr_head"]),
                        ("inception-full", "inception", "full", p["lr_full"])]
    out = []
    for name, arch, regime, lr in experiments:
        cfg = TrainConfig(num_epochs=p["quick_epochs"] if course.quick else p["num_epochs"], batch_size=p["batch_size"],
                          lr=lr, patience=p["patience"], seed=course.seed, device=course.device)
        torch.manual_seed(course.seed)
        out.append(run_detector(name, arch, regime, splits, cfg, size, course.runs / "02_resnet_baseline" / name,
                                pretrained=p["pretrained"], figures_dir=course.figures,
                                figure_prefix=f"02_resnet_baseline_{name}_", fresh=fresh,
                                augment_ops=augment_ops(p["augment"])))
    return out


def baseline_detector(course, splits, **params):
    """The detector notebook 02 chooses, for notebooks 04 and 05 run alone: every row of
    notebook 02 (:func:`transfer_rows`, :func:`meso4_detector`, :func:`selfblend_only`) trained
    without the held-out family, and the one with the highest *shifted* validation AUC
    (:func:`dfcourse.robustness.shifted_sets`) kept. ``splits`` are the index's splits.
    Returns ``(net, meta)``."""
    p = _params(NB02, params)
    family = held_out_family({r["method"] for rows in splits.values() for r in rows}, p["held_out"])
    train_splits = without_family(splits, family)
    results = transfer_rows(course, train_splits, **params)
    results += [meso4_detector(course, train_splits, **params), selfblend_only(course, train_splits, **params)]
    sets = shifted_sets(splits, family, seed=course.seed)
    picks = choose(results, sets, course.device)
    best = picks["shifted"]
    return best["net"], detector_meta(best)


def detector_meta(result) -> dict:
    """What the registry keeps about a notebook-02 result."""
    meta = {"name": result["name"], "size": result["size"], "run_dir": str(result["run_dir"]),
            "val_auc": result["val"]["frame"]["auc"]}
    if "shifted_val_auc" in result:
        meta.update(shifted_val_auc=result["shifted_val_auc"], threshold=result["threshold"],
                    threshold_rule=THRESHOLD_RULE)
    return meta


# ------------------------------------------------------------------ notebook 03
def resolve_methods(methods, train_method: str = "auto", cross_method: str = "auto") -> tuple[str, str]:
    """``auto``: FaceSwap / NeuralTextures on FF++, swap / rerender on the demo data."""
    ffpp = "FaceSwap" in methods
    train = train_method if train_method != "auto" else ("FaceSwap" if ffpp else "swap")
    cross = cross_method if cross_method != "auto" else ("NeuralTextures" if ffpp else "rerender")
    missing = {train, cross} - set(methods)
    if missing:
        raise ValueError(f"method(s) {sorted(missing)} not in the index; it has {sorted(methods)}")
    return train, cross


def cross_manipulation_data(course, index_path, train_method: str, cross_method: str, max_per_class=None,
                            eval_per_class=None) -> dict:
    """Notebook 03's sets: train/val on originals + ``train_method`` (train balanced and
    capped at ``max_per_class``), test in-domain, and ``cross`` = test on the unseen
    ``cross_method``. ``eval_per_class`` (quick mode) caps val, test and cross too, balanced."""
    def pick(split, method, per_class=None):
        return balance(read_index(index_path, split=split, methods=[method]), course.seed, per_class)

    if eval_per_class is None:
        return {"train": pick("train", train_method, max_per_class), "val": pick("val", train_method),
                "test": read_index(index_path, split="test", methods=[train_method]),
                "cross": read_index(index_path, split="test", methods=[cross_method])}
    return {"train": pick("train", train_method, max_per_class), "val": pick("val", train_method, eval_per_class),
            "test": pick("test", train_method, eval_per_class), "cross": pick("test", cross_method, eval_per_class)}


def head_config(course, **params) -> TrainConfig:
    p = _params(NB03, params)
    return TrainConfig(num_epochs=p["head_epochs"], batch_size=p["batch_size"], lr=p["head_lr"], schedule="cosine",
                       grad_clip=1.0, patience=p["patience"], seed=course.seed, device="cpu", log_every=10)


def train_head(course, kind: str, text, feats: dict, labels: dict, fresh: bool = False, **params):
    """One CLIP head on cached features (nothing trains for ``zeroshot``). Returns
    ``(head, fit result or None)``."""
    p = _params(NB03, params)
    torch.manual_seed(course.seed)
    head = cp.ClipHead(kind, text.shape[1], text, p["adapter_hidden"])
    if kind == "zeroshot":
        return head, None
    ds = {k: TensorDataset(feats[k], labels[k], torch.arange(len(labels[k]))) for k in ("train", "val")}
    run = fit(head, ds["train"], ds["val"], head_config(course, **params), course.runs / "03_clip_peft" / kind,
              loss_fn=cp.head_loss, name=f"CLIP {kind}", fresh=fresh)
    return head, run


def train_coop(course, clip, tokenizer, feats: dict, labels: dict, fresh: bool = False, **params):
    """CoOp: learned prompt context on the cached features. Returns ``(head, fit result)``."""
    p = _params(NB03, params)
    torch.manual_seed(course.seed)
    head = CoOpHead(clip, tokenizer, n_ctx=p["coop_context"])
    ds = {k: TensorDataset(feats[k], labels[k], torch.arange(len(labels[k]))) for k in ("train", "val")}
    cfg = TrainConfig(**{**vars(head_config(course, **params)), "device": course.device})
    run = fit(head, ds["train"], ds["val"], cfg, course.runs / "03_clip_peft" / "coop", loss_fn=cp.head_loss,
              name="CLIP CoOp", fresh=fresh)
    return head, run


def lora_sets(course, data: dict, **params) -> dict:
    """The sets LoRA trains and is scored on: all of ``data`` in full mode; in quick mode a
    balanced subset for train and val and a seeded subset of each test set (it re-runs
    the ViT for every face, every epoch)."""
    p = _params(NB03, params)
    if not course.quick:
        return dict(data)
    rng = np.random.default_rng(course.seed)
    n = p["quick_lora_eval"]
    pick = {k: sorted(rng.choice(len(v), min(n, len(v)), replace=False)) for k, v in data.items()}
    return {"train": balance(data["train"], course.seed, p["quick_lora_per_class"]),
            "val": balance(data["val"], course.seed, p["quick_lora_per_class"]),
            **{k: [data[k][i] for i in pick[k]] for k in ("test", "cross")}}


def train_lora(course, clip, text, sets: dict, fresh: bool = False, **params):
    """LoRA on CLIP's vision tower plus a linear head, end to end on images (no feature
    cache). Returns ``(net, fit result, probs per set)``; ``clip`` itself is not changed."""
    p = _params(NB03, params)
    torch.manual_seed(course.seed)
    net = cp.ClipDetector(copy.deepcopy(clip), cp.ClipHead("linear", text.shape[1], text, p["adapter_hidden"]))
    add_lora(net.clip.visual, r=p["lora_rank"])
    net.regime = "lora"  # gradients flow through the image encoder (into the LoRA matrices only)
    size = net.input_size
    cfg = TrainConfig(num_epochs=p["quick_lora_epochs"] if course.quick else p["lora_epochs"], batch_size=16,
                      lr=p["lora_lr"], patience=p["patience"], seed=course.seed, device=course.device)
    run = fit(net, FaceDataset(sets["train"], size), FaceDataset(sets["val"], size), cfg,
              course.runs / "03_clip_peft" / "lora", name="CLIP LoRA", fresh=fresh)
    probs = {k: predict_probs(net, FaceDataset(v, size), 32, course.device) for k, v in sets.items() if k != "train"}
    return net, run, probs


def encode_sets(course, net, data: dict, model_name: str, batch_size: int = 64):
    """Cached CLIP features and labels for each set of ``data``; returns ``(feats, labels, cache)``."""
    cache = cp.make_cache(course.data / "feature_cache", net, model_name)
    feats = {k: cp.encode_rows(net, v, cache, batch_size, course.device) for k, v in data.items()}
    labels = {k: torch.tensor([float(r["label"]) for r in v]) for k, v in data.items()}
    return feats, labels, cache


def clip_head(course, index_path, clip, tokenizer, kind: str = "adapter+prompt", **params):
    """Notebook 03's head of ``kind`` on its cross-manipulation split. Returns ``(head, meta)``."""
    p = _params(NB03, params)
    methods = {r["method"] for r in read_index(index_path)} - {"original"}
    train_method, cross_method = resolve_methods(methods, p["train_method"], p["cross_method"])
    data = cross_manipulation_data(course, index_path, train_method, cross_method,
                                   p["quick_max_per_class"] if course.quick else None,
                                   p["quick_eval_per_class"] if course.quick else None)
    text = cp.text_embeddings(clip, tokenizer, cp.PROMPTS, course.device)
    net = cp.ClipDetector(clip, cp.ClipHead(kind, text.shape[1], text, p["adapter_hidden"])).to(course.device)
    feats, labels, _ = encode_sets(course, net, {k: data[k] for k in ("train", "val")}, p["clip_model"],
                                   p["batch_size"])
    head, run = train_head(course, kind, text, feats, labels, **params)
    return head, {"name": f"CLIP {kind}", "clip": cp.weights_fingerprint(clip), "model": p["clip_model"],
                  "train_method": train_method, "run_dir": str(run["run_dir"]) if run else ""}


def clip_selfblend_only(course, index_path, net, text, data: dict, fresh: bool = False, **params) -> dict:
    """Notebook 03's "reals + self-blends only" protocol on frozen CLIP features: an
    ``adapter+prompt`` head trained on the real training faces of ``data`` and ``SELF_BLENDS``
    fresh self-blends of each (a random region, :class:`dfcourse.selfblend.SelfBlendDataset`),
    each encoded once and cached; selected on the validation reals vs a self-blend of each,
    so no forgery family of the index takes part in training or selection; tested on every
    family of the test split against all test reals. Returns a dict: ``head``, ``run``,
    ``val_auc``, ``n_real``, ``n_blend``, ``test_rows``, ``test_feats``, ``by_family``."""
    p = _params(NB03, params)
    cache = cp.make_cache(course.data / "feature_cache", net, p["clip_model"])

    def reals_and_blends(rows, seed: int, blends: int) -> TensorDataset:
        reals = [r for r in rows if int(r["label"]) == 0]
        sb = fixed_blends(course, reals, net.input_size, seed)
        fakes = []
        for epoch in range(blends):  # epoch e of the online dataset: a new blend of every real
            sb.epoch = epoch
            fakes += [sb.sample(2 * k + 1)[0] for k in range(len(reals))]
        real_f = cp.encode_rows(net, reals, cache, p["batch_size"], course.device).repeat(blends, 1)
        fake_f = cp.encode_images(net, fakes, cache, p["batch_size"], course.device)
        y = torch.cat([torch.zeros(len(real_f)), torch.ones(len(fake_f))])  # each real once per blend: balanced
        return TensorDataset(torch.cat([real_f, fake_f]), y, torch.arange(len(y)))

    train = reals_and_blends(data["train"], course.seed, p["self_blends"])
    val = reals_and_blends(data["val"], course.seed + 1, 1)
    kind = "adapter+prompt"
    torch.manual_seed(course.seed)
    head = cp.ClipHead(kind, text.shape[1], text, p["adapter_hidden"])
    run = fit(head, train, val, head_config(course, **params), course.runs / "03_clip_peft" / "sb-only",
              loss_fn=cp.head_loss, name=f"CLIP {kind}, reals + self-blends only", fresh=fresh)
    test_rows = read_index(index_path, split="test")
    test_feats = cp.encode_rows(net, test_rows, cache, p["batch_size"], course.device)
    val_y = val.tensors[1].numpy()
    return {"head": head, "run": run, "kind": kind, "n_real": int((train.tensors[1] == 0).sum()) // p["self_blends"],
            "n_blend": int(train.tensors[1].sum()),
            "val_auc": float(roc_auc_score(val_y, cp.head_probs(head, val.tensors[0]))),
            "test_rows": test_rows, "test_feats": test_feats,
            "by_family": auc_by_family(test_rows, cp.head_probs(head, test_feats))}


# ------------------------------------------------------------------ notebook 04
def build_localizer(encoder: str, pretrained: bool = True, high_pass: bool = True):
    """The localizer on a registered encoder (:mod:`dfcourse.registry`, task ``localizer``): the
    ``resnet18`` one (ImageNet weights when ``pretrained`` and found), the ``meso4`` one (random
    init, trained from scratch; its encoder sees the high-pass residual unless ``high_pass`` is
    False) or the ``clip`` one (frozen CLIP, notebook 03's weights)."""
    options = {"highpass": high_pass} if "highpass" in model_spec(encoder, "localizer").options else {}
    return create_model(encoder, "localizer", pretrained, options=options)


def localizer_datasets(splits, input_size: int, seed: int, landmark_cache=None, device="cpu", course=None,
                       **params) -> dict:
    """Notebook 04's datasets. With ``self_blend``, the training set also returns, each
    epoch, every real training face freshly self-blended in a random region (one eye, the
    mouth, a cheek, half the face or the whole hull) with its exact mask: the manipulated
    region varies in place, size and shape, so the map cannot be learned from position.
    An encoder trained from scratch (``meso4``: the registry's ``from_scratch``) on the built-in
    demo data (``course`` given, ``DEMO_VIEWS`` > 0) trains instead on ``DEMO_VIEWS`` fresh views of every training identity per epoch, half of
    them forged, with the same residual target (:class:`dfcourse.demo.DemoViews`)."""
    p = _params(NB04, params)
    ops = augment_ops(p["augment"])
    out = {s: LocalizationDataset(rows, input_size, p["target"], p["residual_threshold"], p["residual_blur"],
                                  train=(s == "train"), seed=seed, augment_ops=ops) for s, rows in splits.items()}
    if "train" in out:
        out["train_index"] = out["train"]  # the index's own training faces (priors are fitted on these)
    idents = (builtin_demo_identities(course, splits["train"])
              if model_spec(p["encoder"], "localizer").from_scratch and course is not None and p["demo_views"]
              and "train" in splits else None)
    if idents is not None:
        out["train"] = DemoViews(idents, input_size, views=p["demo_views"], seed=seed, masks=True, target=p["target"],
                                 residual_threshold=p["residual_threshold"], residual_blur=p["residual_blur"],
                                 augment_ops=ops)
    elif p["self_blend"] and "train" in out:
        reals = [r for r in splits["train"] if int(r["label"]) == 0]
        lm = real_landmarks(reals, input_size, cache=landmark_cache, device=device)
        out["train"] = EpochConcat([out["train"], SelfBlendDataset(reals, lm, input_size, seed=seed, augment_ops=ops)])
    return out


def train_localizer(course, net, datasets, fresh: bool = False, **params):
    """Notebook 04's training of a localizer ``net`` (lr ``LR`` when its encoder is
    pretrained, 1e-3 from random init; ``real_weight`` adds the real-face area penalty of
    :func:`dfcourse.localization.make_loss`). The from-scratch ``meso4`` localizer trains like
    notebook 02's Meso-4: ``SCRATCH_EPOCHS`` without early stop, batches of
    ``SCRATCH_BATCH_SIZE``, a cosine lr, a render worker on a CPU. Returns the fit result."""
    p = _params(NB04, params)
    if model_spec(net.arch, "localizer").from_scratch:
        cfg = _from_scratch(course, p["quick_scratch_epochs"] if course.quick else p["scratch_epochs"],
                            p["scratch_batch_size"], 1e-3, "cosine")
    else:
        cfg = TrainConfig(num_epochs=p["quick_epochs"] if course.quick else p["num_epochs"], batch_size=p["batch_size"],
                          lr=p["lr"] if net.pretrained else 1e-3, patience=p["patience"], seed=course.seed,
                          device=course.device)
    return fit(net, datasets["train"], datasets["val"], cfg, course.runs / "04_residual_localization" / net.arch,
               loss_fn=make_loss(p["map_weight"], p["real_weight"]), name=f"{net.arch}-localizer", fresh=fresh)


def localizer(course, splits, **params):
    """Notebook 04's localizer (``ENCODER``: ``resnet18`` or ``meso4``). Returns ``(net, meta)``
    for the registry."""
    p = _params(NB04, params)
    size = p["quick_size"] if course.quick else p["size"]
    splits = {"train": balance(splits["train"], course.seed, p["quick_max_per_class"] if course.quick else None),
              "val": splits["val"]}
    encoder = p["encoder"]
    torch.manual_seed(course.seed)
    net = build_localizer(encoder, p["pretrained"], p["high_pass"])
    datasets = localizer_datasets(splits, size, course.seed, landmark_cache=landmark_cache(course),
                                  device=course.device, course=course, **params)
    run = train_localizer(course, net, datasets, **params)
    return net, {"name": f"{encoder}-localizer", "size": size, "target": p["target"], "run_dir": str(run["run_dir"])}
