"""prepare --ffpp throughput: today's way vs face tracks reused + worker processes, in one run.

    python benchmarks/bench_prepare.py [--frames 16] [--methods 4] [--workers N[,N...]] [--repeats 1]

Writes a miniature FF++ tree (6 originals of 256x256 px, ``--frames`` frames each, and one
fake per original per method, so ``--methods 4`` gives 4 manipulations per original like
FF++ c23 without FaceShifter), then prepares it these ways, each into a fresh folder:

- ``today``: every video detected with MTCNN, one process (``workers=0, reuse_tracks=False``),
  torch on its default threads (as before this change);
- ``today, 1 thread``: the same with ``torch.set_num_threads(1)``: a stricter baseline where
  other jobs load the machine (multi-threaded MTCNN then loses much more than it gains);
- ``reuse``: each original's face track reused by its fakes, one process;
- ``reuse+N workers``: the same with N decode/crop worker processes (default: one per core;
  ``--workers 1,2`` runs both).

Prints frames/s of each (wall time of the whole ``prepare_ffpp`` call, pool start-up
included), the ratio to ``today`` and to ``today, 1 thread`` (``ratio 1t``), CPU seconds
(this process and its workers: the work done, steadier than wall time on a shared
machine) and their ratio to ``today, 1 thread``, MTCNN frame counts, O-Net checks, and whether each index agrees with ``today``'s: identical rows in
every column but ``box``, and boxes within the tolerance printed (IoU of the square crop
boxes). The ways run interleaved (``--repeats``), so a busy spell hits each alike.
"""
import argparse
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

# The original's box (reused) vs the box MTCNN finds on the fake itself: on swaps the
# donor's face shape moves MTCNN's box; on this tree the lowest IoU seen was 0.667 (a
# FaceSwap fake, 1 row of 480 at --frames 16), the mean 0.93.
BOX_IOU_TOL = 0.65


def _rows(index):
    from dfcourse.index import read_index

    root = Path(index).parent
    out = []
    for r in read_index(index):
        for c in ("path", "mask_path", "source_path"):
            r[c] = str(Path(r[c]).relative_to(root)) if r[c] else ""
        out.append(r)
    return out


def compare(a_index, b_index):
    """(same rows but for box, min box IoU, mean box IoU, rows below BOX_IOU_TOL)."""
    from dfcourse.faces import box_iou as iou

    a, b = _rows(a_index), _rows(b_index)
    key = lambda r: {k: v for k, v in r.items() if k != "box"}  # noqa: E731
    same = len(a) == len(b) and all(key(x) == key(y) for x, y in zip(a, b))
    ious = [iou([float(v) for v in x["box"].split()], [float(v) for v in y["box"].split()])
            for x, y in zip(a, b)]
    return same, min(ious), statistics.mean(ious), sum(i < BOX_IOU_TOL for i in ious)


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (the worker processes)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main():
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=16, help="frames per video (written and sampled)")
    p.add_argument("--methods", type=int, default=4, help="manipulations per original (1-5)")
    p.add_argument("--workers", default=None, help="worker counts, comma-separated (default: one per core)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()

    from dfcourse.demo import FFPP_FORGERIES, build_ffpp_mini
    from dfcourse.ffpp import prepare_ffpp
    from dfcourse.tracks import FaceCheck
    from dfcourse.workers import default_workers

    counts = [int(n) for n in args.workers.split(",")] if args.workers else [default_workers()]
    methods = list(FFPP_FORGERIES)[: args.methods]
    ways = {"today": dict(workers=0, reuse_tracks=False), "today, 1 thread": dict(workers=0, reuse_tracks=False),
            "reuse": dict(workers=0, reuse_tracks=True),
            **{f"reuse+{n} workers": dict(workers=n, reuse_tracks=True) for n in counts}}
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = build_ffpp_mini(tmp / "ffpp", num_frames=args.frames, methods=methods, device=args.device)
        FaceCheck()  # imports done before any timing (building the tree ran MTCNN already)
        runs = {w: [] for w in ways}
        for rep in range(args.repeats):  # interleaved, so a busy spell hits every way alike
            for way, kw in ways.items():
                out = tmp / f"{way}{rep}".replace(" ", "_").replace(",", "")
                torch.set_num_threads(1 if way == "today, 1 thread" else threads)
                t0, c0 = time.perf_counter(), _cpu()
                index = prepare_ffpp(root, out, num_frames=args.frames, size=224, device=args.device, **kw)
                sec, cpu = time.perf_counter() - t0, _cpu() - c0
                torch.set_num_threads(threads)
                stats = json.loads((out / "prepare_stats.json").read_text())
                runs[way].append(dict(stats, wall=sec, cpu=cpu, index=index))
        n_orig = 6
        print(f"\nprepare on a mini FF++ tree: {n_orig} originals + {n_orig * len(methods)} fakes "
              f"({', '.join(methods)}), {args.frames} frames of 256x256 each, crops 224 px, "
              f"device={args.device}, {default_workers()} cores, torch threads {threads}; best of {args.repeats}")
        print(f"{'way':<17}{'workers':>8}{'frames':>8}{'wall s':>9}{'frames/s':>10}{'ratio':>7}{'ratio 1t':>9}"
              f"{'CPU s':>8}{'CPU ratio 1t':>13}{'MTCNN frames':>14}{'O-Net checks':>14}{'re-detected':>13}")
        base = min(r["wall"] for r in runs["today"])
        base1 = min(r["wall"] for r in runs["today, 1 thread"])
        cpu1 = min(r["cpu"] for r in runs["today, 1 thread"])
        for way, rs in runs.items():
            r = min(rs, key=lambda r: r["wall"])
            print(f"{way:<17}{r['workers']:>8}{r['frames']:>8}{r['wall']:>9.1f}{r['frames'] / r['wall']:>10.2f}"
                  f"{base / r['wall']:>6.2f}x{base1 / r['wall']:>8.2f}x{r['cpu']:>8.1f}{cpu1 / r['cpu']:>12.2f}x"
                  f"{r['mtcnn_frames']:>14}{r['reused'] + r['check_failed']:>14}"
                  f"{r['check_failed']:>13}")
            if len(rs) > 1:
                print(f"{'':<17}all runs, frames/s: " + ", ".join(f"{x['frames'] / x['wall']:.2f}" for x in rs))
        ref = runs["today"][0]["index"]
        print(f"index vs today's (box tolerance: IoU of square crop boxes >= {BOX_IOU_TOL}):")
        for way in list(ways)[2:]:
            for r in runs[way]:
                same, lo, mean, bad = compare(ref, r["index"])
                print(f"  {way:<17} rows identical but box: {same}; box IoU min {lo:.3f}, mean {mean:.3f}; "
                      f"rows below tolerance: {bad}")
        a = Path(runs["reuse"][0]["index"]).read_bytes()
        same = all(Path(r["index"]).read_bytes() == a for way in list(ways)[3:] for r in runs[way])
        print(f"  index.csv byte-identical for 0 (reuse) and {counts} workers: {same}")


if __name__ == "__main__":
    main()
