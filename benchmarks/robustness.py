"""The course's default detector and localizer under benign changes, on the demo test split.

Loads the checkpoints notebooks 02 and 04 saved (``make course``), or trains them with the
same recipes when none fits (as notebooks 04 and 05 do when run alone), then prints, side by
side: frame-level AUC of the detector and the localizer's pixel AUC, IoU and false-positive
area on real faces, for every perturbation type at every level (DeeperForensics-1.0's table
plus JPEG, resampling and H.264, :mod:`dfcourse.perturb`), and the course's bars, cell by
cell, at level 2 and the everyday extras: detector AUC >= 0.85 x its clean AUC; localizer FP
area on real faces <= 0.05. Also ``predict``-style localization of a real photo (skimage's
astronaut, matplotlib's Grace Hopper) blurred by sigma 0.7 px: the share of the face flagged.

    python benchmarks/robustness.py [--csv benchmarks/results/robustness.csv] [--full-suite]

Quick mode (the demo data) unless DATA_ROOT is set. Every number is frame level, test split.
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path


from dfcourse import checkpoints, course as dc, perturb, recipes, robustness
from dfcourse.index import format_table, read_index
from dfcourse.runs import rows_fingerprint


def photo_fp(localizer, size: int, sigma: float = 0.7) -> list[str]:
    """Share of each built-in real photo's face the localizer flags (> 0.5), clean and blurred."""
    import matplotlib.cbook
    from skimage import data

    from dfcourse.faces import FaceDetector, crop, square_box
    from dfcourse.io import read_image
    from dfcourse.localization import localize

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        photos = {"astronaut": data.astronaut(), "grace_hopper": read_image(f.name)}
    det, lines = FaceDetector(), []
    for name, img in photos.items():
        face = det.detect_one(img)[0]
        face_crop = crop(img, square_box(face.box), 128)
        for label, im in (("clean", face_crop), (f"blur sigma {sigma}", perturb.blur_sigma(face_crop, sigma))):
            out = localize(localizer, im, size)
            lines.append(f"{name:<13} {label:<15} p(fake) {out['prob_fake']:.3f}, "
                         f"face flagged {(out['map'] > 0.5).mean():.3f}")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, help="append every cell's numbers to this CSV")
    ap.add_argument("--full-suite", action="store_true", help="every level of every kind (default: the bar cells)")
    args = ap.parse_args(argv)
    t0 = time.time()
    course = dc.start("benchmarks_robustness", "", True, 0, "auto")
    index_path = dc.ensure_index(course)
    splits = {s: read_index(index_path, split=s) for s in ("train", "val", "test")}
    data_id = rows_fingerprint(read_index(index_path))
    det = checkpoints.load_or_train(course, "detector", lambda: recipes.baseline_detector(course, splits), data_id)
    loc = checkpoints.load_or_train(course, "localizer", lambda: recipes.localizer(course, splits), data_id)
    cells = perturb.cells() if args.full_suite else robustness.bar_cells(2)
    test = splits["test"]
    det_rows = robustness.detector_suite(det, test, det.meta["size"], cells, device=course.device)
    loc_rows = robustness.localizer_suite(loc, test, loc.meta["size"], cells, device=course.device)
    print(f"\ndemo data (engine v{_engine()}), quick mode, test split: {sum(r['label'] == 0 for r in test)} real, "
          f"{sum(r['label'] == 1 for r in test)} fake faces; detector {det.meta.get('name')} "
          f"({det.weights.label}), localizer {loc.meta.get('name')} ({loc.weights.label})")
    header = ["change", "detector AUC", "/ clean", "loc pixel AUC", "loc IoU", "loc FP area (reals)", "loc image AUC"]
    clean = det_rows[0]["auc"]
    rows = [[d["cell"], f"{d['auc']:.3f}", f"{d['auc'] / clean:.2f}", f"{lr['pixel_auc']:.3f}", f"{lr['iou']:.3f}",
             f"{lr['fp_area_real']:.3f}", f"{lr['image_auc']:.3f}"] for d, lr in zip(det_rows, loc_rows)]
    print(format_table(header, rows))
    bars = robustness.check_bars([r for r in det_rows if r["level"] in (0, 2)],
                                 [r for r in loc_rows if r["level"] in (0, 2)])
    print("\nbars (level 2 and the everyday extras):")
    print("\n".join(line for line, _ in bars))
    print(f"{sum(ok for _, ok in bars)} of {len(bars)} cells met")
    print("\npredict --localize on real photos (not demo data):")
    print("\n".join(photo_fp(loc, loc.meta["size"])))
    if args.csv:
        new = not args.csv.is_file()
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with open(args.csv, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["when", "engine", "detector", "localizer", "cell", "det_auc", "loc_pixel_auc", "loc_iou",
                            "loc_fp_area_real"])
            when = time.strftime("%Y-%m-%d %H:%M")
            for d, lr in zip(det_rows, loc_rows):
                w.writerow([when, _engine(), det.meta.get("name"), loc.meta.get("name"), d["cell"], f"{d['auc']:.4f}",
                            f"{lr['pixel_auc']:.4f}", f"{lr['iou']:.4f}", f"{lr['fp_area_real']:.4f}"])
    print(f"\n{time.time() - t0:.0f} s")
    return 0


def _engine() -> int:
    from dfcourse.demo import DEMO_VERSION

    return DEMO_VERSION


if __name__ == "__main__":
    sys.exit(main())
