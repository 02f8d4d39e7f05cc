"""Does online self-blending starve training? Samples/s, side by side in one run on the same
real faces: reading pre-made crops (``FaceDataset``, PNG decode + resize), online
self-blending (``SelfBlendDataset``: a new view, region mask, deformation, colour and
frequency mismatch per fake, decoded images cached), online demo views (``DemoViews``:
every item a new rendered frame with camera noise, half of them forged; notebook 02's
Meso-4 trains on these on the demo data), and the train step they feed
(forward + backward + AdamW, random init) for comparison. Goal: blending >= train step.

    python benchmarks/bench_selfblend.py [--sizes 96,224] [--n 256] [--arch resnet18,meso4]

Uses the demo data (built on first use); CPU, one process (num_workers=0).
"""
import argparse
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader


def rate(dataset, batch_size, epochs=2):
    """Items/s over ``epochs`` full passes (new epoch = new self-blends)."""
    t0, n = time.perf_counter(), 0
    for e in range(epochs):
        if hasattr(dataset, "epoch"):
            dataset.epoch = e + 1
        for batch in DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0):
            n += len(batch[0])
    return n / (time.perf_counter() - t0)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="96,224")
    p.add_argument("--n", type=int, default=256, help="real faces used")
    p.add_argument("--arch", default="resnet18,meso4")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--index", default="", help="index CSV (default: the course's demo data)")
    args = p.parse_args()

    from dfcourse import course as dc
    from dfcourse.datasets import FaceDataset
    from dfcourse.demo import IDENTITIES_FILE, DemoViews, demo_identities
    from dfcourse.index import read_index
    from dfcourse.models import build_detector
    from dfcourse.selfblend import SelfBlendDataset, real_landmarks

    dc.setup_offline()
    index = args.index or dc.ensure_demo(dc.Course("bench", True, "benchmark", "cpu", 0, "", True,
                                                   dc.project_root()))
    reals = [r for r in read_index(index) if r["label"] == 0][: args.n]
    print(f"{len(reals)} real demo faces, batch {args.batch_size}, CPU, {torch.get_num_threads()} threads, "
          "num_workers=0; samples/s (higher is better)")
    for size in [int(s) for s in args.sizes.split(",")]:
        lm = real_landmarks(reals, size, cache=Path(index).parent / "landmarks.json")
        crops = rate(FaceDataset(reals, size, train=True), args.batch_size)
        sb = SelfBlendDataset(reals, lm, size, masks=True)
        rate(sb, args.batch_size, epochs=1)  # decode once (the dataset caches decoded reals)
        blend = rate(sb, args.batch_size)
        idents = demo_identities("train", cache=Path(index).parent / IDENTITIES_FILE)
        views = rate(DemoViews(idents, size, views=2), args.batch_size)
        print(f"\n{size}px:")
        print(f"  pre-made crops (FaceDataset, course augmentation) : {crops:8.1f} samples/s")
        print(f"  online self-blending (reals + fresh fakes, masks)  : {blend:8.1f} samples/s")
        print(f"  online demo views (DemoViews, half forged)         : {views:8.1f} samples/s")
        for arch in args.arch.split(","):
            net = build_detector(arch, pretrained=False, verbose=False).train()
            opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
            x, y = torch.rand(args.batch_size, 3, size, size), torch.rand(args.batch_size).round()

            def step():
                loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x).squeeze(1), y)
                opt.zero_grad()
                loss.backward()
                opt.step()

            step()
            t0 = time.perf_counter()
            for _ in range(3):
                step()
            train = 3 * args.batch_size / (time.perf_counter() - t0)
            print(f"  train step {arch:<9}                            : {train:8.1f} samples/s   "
                  f"blending / train = {blend / train:.1f}x, views / train = {views / train:.1f}x")


if __name__ == "__main__":
    main()
