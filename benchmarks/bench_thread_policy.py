"""How OpenMP's wait policy changes training speed on a quiet and on a loaded CPU.

    python benchmarks/bench_thread_policy.py                 # quiet, then beside 2 busy processes
    python benchmarks/bench_thread_policy.py --hog 0 --steps 10

torch's CPU kernels run on GNU OpenMP threads (one per core). Between parallel regions those
threads spin, waiting for the next one: 300,000 spins by default, none with
``OMP_WAIT_POLICY=PASSIVE``, ``GOMP_SPINCOUNT`` of them if set. On a quiet machine spinning
costs little; when other processes want the cores (a CI machine running two jobs, a laptop
with a browser), a spinning thread burns the time slice another thread needs to finish its
share, and every barrier waits for the slowest. ``make`` and the tests set
``GOMP_SPINCOUNT=10000``, a short spin (about as fast as the default when quiet, faster under
load; ``PASSIVE`` is faster still under load but slower when quiet); this script measures
what each buys.

Each policy runs the same workload in a fresh process (the policy is read once, when OpenMP
starts): ``--steps`` training steps of Meso-4 (96 px, batch 8) and of ResNet18 (96 px, batch 8),
random init and data, the median of ``--repeats`` runs. Printed: seconds per policy, quiet and
beside ``--hog`` busy processes, with each time's ratio to the default policy's in the same
column.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

WORKLOAD = r"""
import time, torch
from dfcourse.models import build_detector
torch.manual_seed(0)
nets = [build_detector("meso4", pretrained=False), build_detector("resnet18", pretrained=False)]
x, y = torch.randn(8, 3, 96, 96), torch.randint(0, 2, (8,)).float()
start = time.perf_counter()
for net in nets:
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range({steps}):
        opt.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(net(x).reshape(-1), y).backward()
        opt.step()
print(time.perf_counter() - start)
"""

POLICIES = {
    "default (OpenMP spins)": {},
    "GOMP_SPINCOUNT=10000": {"GOMP_SPINCOUNT": "10000"},
    "GOMP_SPINCOUNT=100000": {"GOMP_SPINCOUNT": "100000"},
    "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "1 thread": {"OMP_NUM_THREADS": "1"},
}


def run_once(extra: dict, steps: int) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT")}
    env.update(extra)
    out = subprocess.run([sys.executable, "-c", WORKLOAD.format(steps=steps)], env=env, check=True,
                         capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def measure(steps: int, repeats: int) -> dict:
    return {name: statistics.median(run_once(extra, steps) for _ in range(repeats)) for name, extra in POLICIES.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30, help="training steps per network (default 30)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per policy and load; the median is printed")
    ap.add_argument("--hog", type=int, default=2, help="busy processes beside the loaded runs (0: quiet only)")
    args = ap.parse_args(argv)
    print(f"{os.cpu_count()} CPUs; {args.steps} training steps each of Meso-4 and ResNet18 (96 px, batch 8); "
          f"median of {args.repeats}", flush=True)
    columns = {"quiet": measure(args.steps, args.repeats)}
    if args.hog:
        hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.hog)]
        try:
            time.sleep(1)
            columns[f"beside {args.hog} busy processes"] = measure(args.steps, args.repeats)
        finally:
            for h in hogs:
                h.kill()
    base = next(iter(POLICIES))
    width = max(map(len, POLICIES))
    print(f"{'policy':<{width}}  " + "  ".join(f"{c:>30}" for c in columns))
    for name in POLICIES:
        cells = [f"{col[name]:7.2f} s ({col[name] / col[base]:4.2f}x)" for col in columns.values()]
        print(f"{name:<{width}}  " + "  ".join(f"{c:>30}" for c in cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
