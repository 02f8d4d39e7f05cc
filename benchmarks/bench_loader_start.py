"""What starting DataLoader workers costs per epoch: fork vs forkserver (the course's choice,
dfcourse/workers.py loader_context) vs spawn.

    python benchmarks/bench_loader_start.py [--epochs 4] [--identities 30]

One worker renders online demo views (DemoViews, 96 px, as notebooks 02/04 do on a CPU); a new
DataLoader per epoch, as dfcourse.train.fit makes one. Each context runs in a fresh process.
Prints seconds to the first batch and for the whole epoch, side by side.
"""
import argparse
import json
import multiprocessing
import subprocess
import sys
import time


def one(context: str, epochs: int, identities: int) -> list:
    import cv2
    import numpy as np
    import torch
    from torch.utils.data import DataLoader

    from dfcourse.demo import CANONICAL_LANDMARKS, DemoViews, Identity
    from dfcourse.workers import init_loader_worker, loader_context

    rng = np.random.default_rng(0)
    idents = []
    for k in range(identities):
        img = cv2.GaussianBlur(rng.uniform(0, 255, (192, 192, 3)).astype(np.float32), (0, 0), 12).astype(np.uint8)
        idents.append(Identity(f"id{k}", img, CANONICAL_LANDMARKS * 96 + 48, np.array([38, 38, 154, 154])))
    ds = DemoViews(idents, 96, views=2, seed=0)
    ctx = loader_context() if context == "forkserver" else multiprocessing.get_context(context)
    x = torch.randn(256, 256)
    for _ in range(3):  # the training process has run torch's threads, as fit() has
        x @ x
    out = []
    for epoch in range(epochs):
        ds.epoch = epoch
        t = time.perf_counter()
        it = iter(DataLoader(ds, batch_size=8, num_workers=1, multiprocessing_context=ctx,
                             worker_init_fn=init_loader_worker))
        next(it)
        first = time.perf_counter() - t
        for _ in it:
            pass
        out.append((first, time.perf_counter() - t))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--identities", type=int, default=30)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.epochs, args.identities)))
        return
    results = {}
    for context in ("fork", "forkserver", "spawn"):
        out = subprocess.run([sys.executable, __file__, "--one", context, "--epochs", str(args.epochs),
                              "--identities", str(args.identities)], capture_output=True, text=True, check=True)
        results[context] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"one worker, DemoViews of {args.identities} identities at 96 px, a new DataLoader per epoch; "
          "seconds: first batch / whole epoch")
    print("epoch  " + "  ".join(f"{c:>16s}" for c in results))
    for e in range(args.epochs):
        print(f"{e:5d}  " + "  ".join(f"{results[c][e][0]:6.2f} / {results[c][e][1]:6.2f}" for c in results))


if __name__ == "__main__":
    main()
