"""Detector speed, measured side by side in one run on the same face crops:

1. inference images/s through the package path (``dfcourse.train.predict_probs``) vs a raw
   batched ``net(x)`` loop on the same tensors (goal: package >= 0.9x raw), plus the
   package path including PNG decoding from disk, for reference;
2. train-step images/s (forward + backward + AdamW step) at 112 and 224 px.

    python benchmarks/bench_detector.py [--arch resnet18] [--device auto] [--n 256]

Uses the demo data (built on first use) and random-init weights: speed does not depend on them.
"""
import argparse
import time

import torch


def best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--device", default="auto")
    p.add_argument("--n", type=int, default=256, help="face crops used")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    from torch.utils.data import TensorDataset

    from dfcourse import course as dc
    from dfcourse.datasets import FaceDataset
    from dfcourse.index import read_index
    from dfcourse.models import build_detector
    from dfcourse.train import predict_probs

    device = dc.resolve_device(args.device)
    course = dc.Course("bench", True, "benchmark", device, 0, "", dc.setup_offline(), dc.project_root())
    rows = read_index(dc.ensure_demo(course))[: args.n]
    net = build_detector(args.arch, pretrained=False, verbose=False).to(device).eval()
    cuda = device.startswith("cuda")
    print(f"{args.arch}, device={device}, {len(rows)} demo face crops, batch {args.batch_size}, "
          f"best of {args.repeats}{', AMP + channels_last' if cuda else ''}")

    for size in (112, 224):
        disk = FaceDataset(rows, size)
        x = torch.stack([disk[i][0] for i in range(len(disk))])
        mem = TensorDataset(x, torch.zeros(len(x)))

        @torch.no_grad()
        def raw():
            for i in range(0, len(x), args.batch_size):
                xb = x[i:i + args.batch_size].to(device)
                if cuda:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                with torch.autocast("cuda", dtype=torch.float16, enabled=cuda):
                    torch.sigmoid(net(xb).float()).cpu()

        if cuda:
            net.to(memory_format=torch.channels_last)
        raw()  # warm-up
        t_raw = best_of(raw, args.repeats)
        t_pkg = best_of(lambda: predict_probs(net, mem, args.batch_size, device), args.repeats)
        t_disk = best_of(lambda: predict_probs(net, disk, args.batch_size, device), 1)
        n = len(x)
        print(f"\ninference at {size}px:")
        print(f"  raw net(x) loop            : {n / t_raw:8.1f} images/s")
        print(f"  package predict_probs      : {n / t_pkg:8.1f} images/s   ratio package/raw = {t_raw / t_pkg:.2f}x")
        print(f"  package incl. PNG decoding : {n / t_disk:8.1f} images/s   (reference)")

    print("\ntrain step (forward + backward + AdamW), batch", args.batch_size)
    for size in (112, 224):
        net_t = build_detector(args.arch, pretrained=False, verbose=False).to(device).train()
        opt = torch.optim.AdamW(net_t.parameters(), lr=1e-4)
        scaler = torch.amp.GradScaler("cuda", enabled=cuda)
        xb = torch.rand(args.batch_size, 3, size, size, device=device)
        yb = torch.rand(args.batch_size, device=device).round()
        if cuda:
            net_t.to(memory_format=torch.channels_last)
            xb = xb.contiguous(memory_format=torch.channels_last)

        def step():
            with torch.autocast("cuda", dtype=torch.float16, enabled=cuda):
                loss = torch.nn.functional.binary_cross_entropy_with_logits(net_t(xb).squeeze(1).float(), yb)
            opt.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()

        step()
        t = best_of(step, args.repeats)
        print(f"  {size}px: {args.batch_size / t:8.1f} images/s")


if __name__ == "__main__":
    main()
