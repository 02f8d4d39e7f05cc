"""MTCNN throughput: batched vs one image at a time, on the same frames, in one run.

    python benchmarks/bench_mtcnn.py [--frames 32] [--size 256] [--device cpu]

Prints images/s for both and their ratio. The frames are the demo video clips'
frames (astronaut, Grace Hopper, ...), so nothing is downloaded.
"""
import argparse
import time


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    import tempfile

    from dfcourse.demo import build_ffpp_mini
    from dfcourse.faces import FaceDetector
    from dfcourse.video import read_frames

    with tempfile.TemporaryDirectory() as tmp:
        root = build_ffpp_mini(tmp, num_frames=args.frames, frame_size=args.size)
        videos = sorted((root / "original_sequences/youtube/c23/videos").glob("*.mp4"))
        frames = [f for v in videos for _, f in read_frames(v, args.frames)][: args.frames]
    det = FaceDetector(device=args.device, batch_size=len(frames))
    det.detect(frames[:2])  # warm-up

    def best(fn):
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    t_single = best(lambda: [det.detect([f]) for f in frames])
    t_batch = best(lambda: det.detect(frames))
    n = len(frames)
    print(f"MTCNN on {n} frames of {args.size}x{args.size}, device={args.device}, best of {args.repeats}")
    print(f"  per-image : {n / t_single:8.1f} images/s")
    print(f"  batched   : {n / t_batch:8.1f} images/s")
    print(f"  ratio batched/per-image: {t_single / t_batch:.2f}x")
    same = all(len(a) == len(b) for a, b in zip(det.detect(frames), [det.detect([f])[0] for f in frames]))
    print(f"  same number of faces per frame: {same}")


if __name__ == "__main__":
    main()
