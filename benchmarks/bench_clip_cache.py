"""CLIP head training: one epoch re-encoding every image vs one epoch on cached features,
side by side in one run, on the same demo faces (goal: cached >= 20x faster).

    python benchmarks/bench_clip_cache.py [--n 128] [--model ViT-B-32] [--device auto]
"""
import argparse
import tempfile
import time

import torch
from torch.utils.data import TensorDataset


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=128)
    p.add_argument("--model", default="ViT-B-32")
    p.add_argument("--device", default="auto")
    args = p.parse_args()

    from dfcourse import clip_peft as cp
    from dfcourse import course as dc
    from dfcourse.datasets import FaceDataset
    from dfcourse.index import read_index
    from dfcourse.train import TrainConfig, fit

    device = dc.resolve_device(args.device)
    course = dc.Course("bench", True, "benchmark", device, 0, "", dc.setup_offline(), dc.project_root())
    rows = read_index(dc.ensure_demo(course), split="train")[: args.n]
    clip, tok, weights = cp.load_clip(args.model, "openai")
    text = cp.text_embeddings(clip, tok, device=device)
    cfg = TrainConfig(num_epochs=1, batch_size=32, lr=1e-3, patience=99, device=device)
    y = torch.tensor([float(r["label"]) for r in rows])
    with tempfile.TemporaryDirectory() as tmp:
        net = cp.ClipDetector(clip, cp.ClipHead("adapter+prompt", text.shape[1], text)).to(device)
        ds = FaceDataset(rows, net.input_size)
        t0 = time.perf_counter()
        fit(net, ds, ds, cfg, f"{tmp}/uncached")
        t_uncached = time.perf_counter() - t0

        cache = cp.make_cache(tmp, net, args.model)
        t0 = time.perf_counter()
        feats = cp.encode_rows(net, rows, cache, device=device)
        t_fill = time.perf_counter() - t0
        head = cp.ClipHead("adapter+prompt", text.shape[1], text)
        fds = TensorDataset(feats, y, torch.arange(len(y)))
        t0 = time.perf_counter()
        fit(head, fds, fds, TrainConfig(**{**cfg.__dict__, "device": "cpu"}), f"{tmp}/cached", loss_fn=cp.head_loss)
        t_cached = time.perf_counter() - t0
    print(f"{args.model} ({weights.note}), {len(rows)} faces, device={device}; one epoch = train pass + val pass")
    print(f"  epoch re-encoding every image : {t_uncached:8.2f} s")
    print(f"  filling the cache (once)      : {t_fill:8.2f} s")
    print(f"  epoch on cached features      : {t_cached:8.3f} s")
    print(f"  ratio re-encoding / cached    : {t_uncached / t_cached:8.1f}x")


if __name__ == "__main__":
    main()
