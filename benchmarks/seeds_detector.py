"""Notebook 02's Meso-4 recipe over seeds: how much of a from-scratch result is the draw?
Each run calls :func:`dfcourse.recipes.meso4_detector` exactly as notebook 02 does (quick mode,
built-in demo data, random init, CPU, a render worker), with one setting changed, and prints
frame-level val and test AUC (the epoch chosen on validation loss, test scored once).

    python benchmarks/seeds_detector.py [--seeds 0,1,2] [--runs "hp:0;hp:2;plain:6"]
                                        [--csv benchmarks/results/seeds_detector.csv]

A run is ``INPUT:VIEWS``: ``hp`` (Meso-4 with its high-pass input, ``HIGH_PASS = True``) or
``plain`` (the published net), and ``DEMO_VIEWS`` (0: the index's crops + online self-blends,
notebook 02's default). Each seed is notebook 02's ``SEED``: it draws the init, the order, the
self-blends and the views. Runs use a temporary course folder with its own copy of the demo data.
"""
import argparse
import csv
import datetime
import os
import platform
import tempfile
import time
from pathlib import Path


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--runs", default="hp:0;hp:2;plain:6")
    p.add_argument("--csv", default="")
    args = p.parse_args()
    os.environ.setdefault("DFCOURSE_HOME", tempfile.mkdtemp(prefix="seeds-"))
    from dfcourse import course as dc, recipes
    from dfcourse.index import read_index

    rows = []
    for run in [r.strip() for r in args.runs.split(";") if r.strip()]:
        kind, views = run.split(":")
        for seed in [int(s) for s in args.seeds.split(",")]:
            course = dc.start("02_resnet_baseline", "", True, seed, "cpu")
            index = dc.ensure_index(course)
            splits = {s: read_index(index, split=s) for s in ("train", "val", "test")}
            t0 = time.time()
            r = recipes.meso4_detector(course, splits, fresh=True, demo_views=int(views), high_pass=kind == "hp")
            row = {"name": r["name"], "high_pass": kind == "hp", "demo_views": int(views), "seed": seed,
                   "best": r["best_epoch"], "val": f"{r['val']['frame']['auc']:.3f}",
                   "test": f"{r['test']['frame']['auc']:.3f}", "seconds": f"{time.time() - t0:.0f}",
                   "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
                   "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
            rows.append(row)
            print(f"## {row['name']} seed {seed}: val {row['val']} test {row['test']} ({row['seconds']} s)", flush=True)
    print("\nrun | seed | best ep | val AUC | test AUC | seconds   (frame level, quick mode, demo data)")
    for r in rows:
        print(f"{r['name']:<28} | {r['seed']} | {r['best']:>2} | {r['val']} | {r['test']} | {r['seconds']}")
    if args.csv:
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)


if __name__ == "__main__":
    main()
