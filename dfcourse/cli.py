"""Command line: ``python -m dfcourse {prepare,demo-data,...} --help``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import predict
from .bundle import student_bundle
from .course import project_root, resolve_device
from .demo import build_demo, build_ffpp_mini
from .ffpp import prepare_ffpp, prepare_folder
from .grading import course_notebooks, grade, student_edition
from .io import BadInputError
from .net import setup_offline
from .sandbox import Limits
from .shards import grade_workers, merge, parse_shard
from .runner import run_course


def whole_number(minimum: int):
    """An argparse type: an int >= ``minimum``, else argparse's usual error naming the argument."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = f"whole number >= {minimum}"
    return parse


def _prepare(args) -> int:
    if bool(args.ffpp) == bool(args.folder):
        print("prepare: give exactly one of --ffpp ROOT or --folder ROOT", file=sys.stderr)
        return 2
    if args.ffpp:
        kw = {"methods": args.methods.split(",")} if args.methods is not None else {}
        index = prepare_ffpp(args.ffpp, args.out, num_frames=args.frames, size=args.size,
                             compression=args.compression, splits_dir=args.splits,
                             device=args.device, workers=args.workers,
                             reuse_tracks=not args.no_reuse, **kw)
    else:
        index = prepare_folder(args.folder, args.out, size=args.size)
    print(f"index written: {index}")
    return 0


def _demo_data(args) -> int:
    index = build_demo(args.out, size=args.size, frames_per_id=args.frames, seed=args.seed,
                       faces_dir=args.faces)
    print(f"index written: {index}")
    if args.videos:
        root = build_ffpp_mini(args.videos, seed=args.seed)
        print(f"mini FF++ video tree written: {root}")
    return 0


def _predict(args) -> int:
    setup_offline()
    try:
        return predict.run(args.paths, args.checkpoint, args.json, args.heatmap, resolve_device(args.device), args.frames,
                   args.localize, args.localizer)
    except (FileNotFoundError, ValueError) as e:  # missing or wrong checkpoint
        print(f"error: {e}", file=sys.stderr)
        return 1


def _course(args) -> int:
    results = run_course(project_root(), args.notebooks or None, timeout=args.timeout)
    return 0 if all(r["status"] == "pass" for r in results) else 1


def _student(args) -> int:
    notebooks = args.notebooks or course_notebooks()
    if args.bundle:
        written = student_bundle(notebooks, args.out)
        print(f"student bundle: {len(written)} file(s) in {args.out}/ (notebooks/ without solutions or hidden tests, "
              f"package/ with the dfcourse wheel, README.md, Makefile); zip it or push it to a repository of its own")
        return 0
    written = student_edition(notebooks, args.out)
    print(f"student edition: {len(written)} notebook(s) in {args.out}/ (solutions and hidden tests removed); "
          f"students check their work with `nbgrader validate {args.out}/NN_name.ipynb` or JupyterLab's Validate")
    return 0


def _grade(args) -> int:
    if args.merge:
        rows = merge(args.merge, args.out)
        print(f"grades: {Path(args.out) / 'grades.csv'} ({len(rows)} rows from {len(args.merge)} slices); "
              f"feedback: {Path(args.out) / 'feedback'}/<student>/; gradebook: {Path(args.out) / 'nbgrader'}/")
        return 0
    if not args.submissions:
        print("grade: name the submissions folder DIR (DIR/<student>/<notebook>.ipynb), or --merge DIR...",
              file=sys.stderr)
        return 2
    if not Path(args.submissions).is_dir():
        print(f"grade: {args.submissions} is not a folder of DIR/<student>/<notebook>.ipynb", file=sys.stderr)
        return 2
    notebooks = args.notebooks or course_notebooks()
    options = dict(timeout=args.timeout, share_data=not args.no_shared_data, sandbox=not args.unsafe_no_sandbox,
                   limits=Limits(memory_gb=args.memory_gb, cpu_s=args.cpu_s))
    if args.workers > 1:
        if args.shard:
            print("grade: give --workers or --shard, not both", file=sys.stderr)
            return 2
        rows = grade_workers(args.submissions, args.out, notebooks, args.workers, **options)
    else:
        rows = grade(args.submissions, args.out, notebooks, shard=parse_shard(args.shard) if args.shard else (1, 1),
                     **options)
    print(f"grades: {Path(args.out) / 'grades.csv'} ({len(rows)} rows); "
          f"feedback: {Path(args.out) / 'feedback'}/<student>/")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dfcourse", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    q = sub.add_parser("prepare", help="videos or images -> face crops + index.csv",
                       description="Detect faces (MTCNN), crop them, and write OUT/index.csv.")
    q.add_argument("--ffpp", metavar="ROOT", help="FaceForensics++ root (original_sequences/, ...)")
    q.add_argument("--folder", metavar="ROOT", help="plain dataset ROOT/<split>/{real,fake}/*.jpg")
    q.add_argument("--out", required=True, metavar="DIR")
    q.add_argument("--frames", type=whole_number(1), default=32, help="frames sampled per video (default 32)")
    q.add_argument("--size", type=whole_number(8), default=224, help="crop side in pixels (default 224)")
    q.add_argument("--compression", default="c23", choices=["c0", "c23", "c40"])
    q.add_argument("--splits", metavar="DIR", help="folder with FF++'s official train/val/test.json")
    q.add_argument("--methods", help="comma-separated FF++ methods, any case (default: all five: "
                   "Deepfakes,Face2Face,FaceSwap,NeuralTextures,FaceShifter)")
    q.add_argument("--device", default="cpu", help="device for MTCNN (cpu, cuda)")
    q.add_argument("--workers", type=whole_number(0), default=None, metavar="N",
                   help="processes that decode and crop videos (default: one per core; 0: none)")
    q.add_argument("--no-reuse", action="store_true",
                   help="detect every fake afresh instead of reusing its original's face track")
    q.set_defaults(func=_prepare)

    d = sub.add_parser("demo-data", help="build the embedded synthetic-forgery dataset",
                       description="Real faces that ship with scikit-image and matplotlib (or --faces DIR) + synthetic forgeries with exact masks.")
    d.add_argument("--out", required=True, metavar="DIR")
    d.add_argument("--size", type=whole_number(16), default=128, help="crop side (default 128)")
    d.add_argument("--frames", type=whole_number(1), default=3, help="views per identity (default 3)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--faces", metavar="DIR", help="use this folder of real face photos instead")
    d.add_argument("--videos", metavar="DIR", help="also write a mini FF++ tree of mp4 clips here")
    d.set_defaults(func=_demo_data)

    r = sub.add_parser("predict", help="detect faces and classify them REAL/FAKE",
                       description="Every face in each image, folder or video is detected (MTCNN) and "
                       "classified; videos also get a video-level score (mean over frames).")
    r.add_argument("paths", nargs="+", metavar="PATH", help="image, folder or video")
    r.add_argument("--checkpoint", help="detector checkpoint (default: the one notebook 02 saved, "
                   "runs/checkpoints/detector_latest.pt)")
    r.add_argument("--json", action="store_true", help="print JSON instead of lines")
    r.add_argument("--heatmap", metavar="DIR", help="write a Grad-CAM overlay per face here (for a video, "
                   "of its most suspicious frame)")
    r.add_argument("--frames", type=whole_number(1), default=16, help="frames sampled per video (default 16)")
    r.add_argument("--localize", action="store_true", help="also predict a manipulation map per face "
                   "(the notebook-04 localizer); with --heatmap its overlay is written too")
    r.add_argument("--localizer", help="localizer checkpoint (default: runs/checkpoints/localizer_latest.pt); "
                   "given alone, it implies --localize")
    r.add_argument("--device", default="auto")
    r.set_defaults(func=_predict)

    c = sub.add_parser("course", help="execute every notebook headless and print a grading report",
                       description="Runs notebooks/NN_*.ipynb in order with nbclient (the engine of "
                       "`jupyter nbconvert --execute`), saves executed copies to runs/executed/, "
                       "and writes runs/report.md.")
    c.add_argument("notebooks", nargs="*", help="notebooks to run (default: all, in order)")
    c.add_argument("--timeout", type=int, default=900, help="per-cell timeout in seconds")
    c.set_defaults(func=_course)

    s = sub.add_parser("student", help="write the student edition (nbgrader generate_assignment)",
                       description="Solutions replaced, hidden tests removed, cells locked and checksummed; "
                       "nbgrader works in a throwaway course folder.")
    s.add_argument("notebooks", nargs="*", help="instructor notebooks (default: notebooks/NN_*.ipynb)")
    s.add_argument("--out", default="student", help="where the student edition goes (default student/); only "
                   "files an earlier `student` wrote there are replaced")
    s.add_argument("--bundle", action="store_true", help="write what students need besides the notebooks: "
                   "OUT/notebooks/, OUT/package/ (the dfcourse wheel), a README and a Makefile")
    s.set_defaults(func=_student)

    g = sub.add_parser("grade", help="autograde DIR/<student>/<notebook>.ipynb into a grades CSV",
                       description="nbgrader autograde, each student in a fresh course home (quick mode, "
                       "CPU, offline; the demo data shared read-only), each kernel in a bubblewrap sandbox "
                       "that sees only the Python environment, the demo data and that student's own files; writes OUT/grades.csv and "
                       "OUT/feedback/<student>/*.html. Manually graded answers stay for nbgrader's formgrader "
                       "(its course folder is OUT/nbgrader).")
    g.add_argument("submissions", metavar="DIR", nargs="?", help="DIR/<student>/<notebook>.ipynb")
    g.add_argument("--notebooks", nargs="+", help="instructor notebooks (default: notebooks/NN_*.ipynb)")
    g.add_argument("--out", default="grades", help="output folder (default grades/)")
    g.add_argument("--timeout", type=whole_number(1), default=600, help="per-cell timeout in seconds (default 600)")
    g.add_argument("--no-shared-data", action="store_true",
                   help="let every student's notebooks build their own demo data (slower)")
    g.add_argument("--memory-gb", type=float, default=Limits.memory_gb,
                   help=f"address space per kernel in GiB (default {Limits.memory_gb:g})")
    g.add_argument("--cpu-s", type=whole_number(1), default=Limits.cpu_s,
                   help=f"CPU seconds per kernel process (default {Limits.cpu_s})")
    g.add_argument("--unsafe-no-sandbox", action="store_true",
                   help="run the students' code as yourself, with your files (only where bwrap cannot run, "
                   "for submissions you trust); the CSV's mode column says so on every row")
    g.add_argument("--workers", type=whole_number(1), default=1, metavar="N",
                   help="grade N students at once (each worker its own nbgrader folder and gradebook, merged at the end)")
    g.add_argument("--shard", metavar="i/N", help="grade only the i-th of N slices of the class (one job of a "
                   "cluster array); combine the slices' --out folders with --merge")
    g.add_argument("--merge", nargs="+", metavar="DIR", help="combine the --out folders of --shard runs into --out")
    g.set_defaults(func=_grade)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BadInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # the file system refused: disk full, permissions, a path too long
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}. Check that the path exists, is writable "
              "and has free space, then re-run (finished work is kept).", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; nothing half-written is left. Re-run the same command "
              "(prepare skips the videos it already finished).", file=sys.stderr)
        return 130
