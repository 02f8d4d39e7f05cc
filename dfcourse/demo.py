"""The embedded demo dataset: real faces that ship inside installed
packages, and synthetic forgeries of them with exact masks (see ``synth.py``).

Real faces: skimage ``astronaut`` and ``camera``, matplotlib's ``grace_hopper.jpg``,
the 100 faces of skimage ``lfw_subset`` (25x25 grey, upscaled), or any folder of real
face photos. Also writes a miniature FaceForensics++ tree of short mp4 clips so the
video path of notebook 01 runs offline.
Used in notebooks/01_data_prep.ipynb; ``python -m dfcourse demo-data``.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from . import capture, synth
from .datasets import augment_with_map, to_tensor
from .faces import FaceDetector, square_box
from .index import split_groups, write_index
from .io import (IMAGE_EXTS, BadInputError, SkipLog, atomic_path, check_positive, list_files, make_out_dir,
                 read_image, remove_stale_temp, save_image, short_hash)
from .video import write_video

# The demo engine's version: a demo built by another version is rebuilt (course.ensure_demo)
# and online views of another version are other training data (DemoViews.identity).
# 2: every frame carries camera noise, and a swap's donor face is rendered at a generator's
#    resolution (before, a swap pasted one clean photo into another and left no trace).
# 3: the capture chain (:mod:`dfcourse.capture`) on every frame, real and forged alike: noise
#    of a strength from 0 to 5, defocus, the video's scale, JPEG/H.264; each forgery's colour,
#    resolution and noise cues at random strengths (in 2, "smooth = fake" separated the classes).
DEMO_VERSION = 3
VERSION_FILE = "demo_version.txt"
IDENTITIES_FILE = "identities.json"
CROP_LANDMARKS_FILE = "crop_landmarks.json"  # {real crop path: its 5 landmarks / crop size}, exact

# Where the five landmarks sit in a tightly cropped, aligned face (fraction of side).
CANONICAL_LANDMARKS = np.array([[0.32, 0.38], [0.68, 0.38], [0.50, 0.58],
                                [0.36, 0.78], [0.64, 0.78]], np.float32)


@dataclass
class Identity:
    """One real person: a full image, the face's landmarks and square crop box in it."""

    name: str
    image: np.ndarray
    landmarks: np.ndarray
    square: np.ndarray


def _grey_to_rgb(a) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype != np.uint8:
        a = (np.clip(a, 0, 1) * 255).round().astype(np.uint8)
    return np.stack([a] * 3, -1) if a.ndim == 2 else a


def _from_image(name, image, detector) -> Identity | None:
    faces = detector.detect_one(image)
    if not faces:
        return None
    f = faces[0]
    return Identity(name, image, f.landmarks, square_box(f.box))


def builtin_images(num_lfw: int = 100) -> list[tuple[str, np.ndarray]]:
    """``(name, RGB image)`` of the real faces that ship with scikit-image and
    matplotlib; the LFW faces upscaled to 96 px and padded (replicated, not mirrored)."""
    import matplotlib.cbook
    from skimage import data

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        hopper = read_image(f.name)
    out = [("astronaut", data.astronaut()), ("cameraman", _grey_to_rgb(data.camera())), ("gracehopper", hopper)]
    for i, face in enumerate(data.lfw_subset()[:num_lfw]):  # the first 100 are faces
        up = cv2.resize(_grey_to_rgb(face), (96, 96), interpolation=cv2.INTER_CUBIC)
        out.append((f"lfw{i:03d}", cv2.copyMakeBorder(up, 48, 48, 48, 48, cv2.BORDER_REPLICATE)))
    return out


def builtin_identities(detector, num_lfw: int = 100) -> list[Identity]:
    """The real faces that ship with scikit-image and matplotlib (their terms: README, "Data terms")."""
    out = []
    for name, img in builtin_images(num_lfw):
        ident = _from_image(name, img, detector)
        if ident is None and name.startswith("lfw"):  # aligned crop: canonical landmark positions
            ident = Identity(name, img, CANONICAL_LANDMARKS * 96 + 48, np.array([38, 38, 154, 154]))
        if ident is not None:
            out.append(ident)
    return out


def folder_identities(folder, detector, skipped: SkipLog, exclude=None) -> list[Identity]:
    """Every image in ``folder`` with a detectable face becomes an identity, named by its
    file stem's letters and digits; when two files give one name (``with spaces.jpg`` and
    ``withspaces.jpg``) the later one gets a short hash of its path appended.
    Files inside ``exclude`` (the output folder) are not read; what cannot be used (an
    earlier output folder, an unreadable folder, a link loop, an image too small for MTCNN,
    no face) is listed in ``skipped``."""
    out, taken = [], set()
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInputError(f"--faces {folder}: no such folder. Point --faces at a folder of real face photos.")
    files = list_files(folder, IMAGE_EXTS, skipped, exclude=exclude)
    if not files:
        raise BadInputError(f"{folder}: no images (.jpg/.png/...) found. Point --faces at a folder "
                            "of real face photos." + (f"\n{skipped.summary()}" if len(skipped) else ""))
    for p in tqdm(files, desc="real faces", leave=False):
        name = re.sub(r"[^A-Za-z0-9]", "", p.stem)[:40] or "face"
        if name in taken:
            name += short_hash(p.relative_to(folder).as_posix(), 6)
        try:
            ident = _from_image(name, read_image(p), detector)
        except BadInputError as e:
            skipped.add(p, str(e))
            continue
        if ident is None:
            skipped.add(p, "no face found")
        else:
            taken.add(name)
            out.append(ident)
    return out


def view(ident: Identity, size: int, rng, jitter: bool = True, border=cv2.BORDER_REFLECT):
    """One 'frame' of an identity as the lens sees it: its face crop under a small random
    shift, scale and rotation (none for ``jitter=False``), with the landmarks mapped into the
    crop. No sensor noise or compression yet: :func:`capture_frame` adds the capture chain.
    Wide views should pad with a constant ``border``: reflection would mirror whole faces."""
    x1, y1, x2, _ = ident.square.astype(np.float32)
    side = x2 - x1
    cx, cy = x1 + side / 2, y1 + side / 2
    angle, scale, shift = 0.0, 1.0, np.zeros(2)
    if jitter:
        angle, scale, shift = rng.uniform(-6, 6), rng.uniform(0.94, 1.06), rng.uniform(-0.04, 0.04, 2) * side
    A = cv2.getRotationMatrix2D((float(cx), float(cy)), angle, scale * size / side)
    A[:, 2] += size / 2 - np.array([cx, cy]) + shift * size / side  # centre -> crop centre
    face = cv2.warpAffine(ident.image, A, (size, size), flags=cv2.INTER_AREA, borderMode=border)
    lm = np.c_[ident.landmarks, np.ones(5)] @ A.T
    return face, lm.astype(np.float32)


def forge(method, face, lm, rng, donor=None, cues=synth.FULL):
    """Apply one forgery family (:data:`dfcourse.synth.FAMILIES`) with cue strengths ``cues``;
    returns ``(fake, mask)``."""
    if method not in synth.FAMILIES:
        raise ValueError(f"unknown method {method!r}; choose from {synth.families()}")
    return synth.FAMILIES[method].forge(face, lm, rng, donor, cues)


def capture_frame(ident: Identity, size: int, rng, jitter: bool = True, border=cv2.BORDER_REFLECT):
    """A frame before its sensor: the view through the optics of a capture drawn for it.
    Returns ``(frame, landmarks, capture, noise_seed)``: :func:`finish` turns the frame, or a
    forgery of it, into what the camera and codec deliver."""
    face, lm = view(ident, size, rng, jitter, border)
    cap = capture.draw(rng)
    return capture.optics(face, cap), lm, cap, int(rng.integers(2**31))


def finish(img, cap, noise_seed, grey: bool, mask=None, region_noise=None) -> np.ndarray:
    """Sensor noise and compression (:func:`dfcourse.capture.develop`) of a frame or a fake."""
    return capture.develop(img, cap, noise_seed, mask, region_noise, grey=grey)


def forge_captured(method, frame, lm, cap, noise_seed, rng, donor=None, cues=capture.CUES):
    """A fake of a captured frame: the forgery on the frame before its sensor, then the same
    noise field and codec as the real frame, the forged region with noise of its own when the
    ``noise`` cue is on. ``cues`` names the cues switched on (each at a random strength,
    :func:`dfcourse.capture.draw_cues`). Returns ``(fake, mask)``."""
    strength = capture.draw_cues(rng, cap.noise, cues)
    fake, mask = forge(method, frame, lm, rng, donor, strength)
    return finish(fake, cap, noise_seed, capture.is_grey(frame), mask, strength["region_noise"]), mask


def donor_face(ident: Identity, size: int, rng):
    """A swap donor: a view of another identity through optics of its own (a generator
    renders it; :func:`dfcourse.synth.generated` takes its resolution)."""
    face, lm = view(ident, size, rng)
    return capture.optics(face, capture.draw(rng)), lm


def build_demo(out, size: int = 128, frames_per_id: int = 3, seed: int = 0, faces_dir=None,
               num_lfw: int = 100, methods=None, device="cpu") -> Path:
    """Write the demo dataset under ``out`` and return its index CSV path.

    Identities are split first (72/14/14); a swap's donor comes from the target's split,
    so no identity crosses splits. ``video_id`` is the target identity. ``methods``: the
    forgery families (default: every registered one, :func:`dfcourse.synth.families`).
    """
    methods = synth.families() if methods is None else tuple(methods)
    size, frames_per_id = check_positive("--size", size, 16), check_positive("--frames", frames_per_id)
    if faces_dir and Path(faces_dir).resolve() == Path(out).resolve():  # refused before anything is written
        raise BadInputError(f"{faces_dir}: this is also the output folder, so its images and the outputs would "
                            "mix. Choose an output folder outside the input folder.")
    out = make_out_dir(out)
    remove_stale_temp(out)
    rng = np.random.default_rng(seed)
    detector = FaceDetector(device=device)
    skipped = SkipLog()
    idents = (folder_identities(faces_dir, detector, skipped, exclude=out) if faces_dir
              else builtin_identities(detector, num_lfw))
    if len(idents) < 3:
        raise BadInputError(f"only {len(idents)} usable faces; the demo needs at least 3 identities."
                            + (f"\n{skipped.summary()}" if len(skipped) else ""))
    split = split_groups([i.name for i in idents], seed=seed)
    by_split = {s: [i for i in idents if split[i.name] == s] for s in ("train", "val", "test")}
    rows, crop_landmarks = [], {}
    for ident in tqdm(idents, desc="demo faces"):
        s = split[ident.name]
        donors = [d for d in by_split[s] if d.name != ident.name]
        for k in range(frames_per_id):
            frame, lm, cap, noise_seed = capture_frame(ident, size, rng, jitter=k > 0)
            grey = capture.is_grey(frame)
            face = finish(frame, cap, noise_seed, grey)
            real_path = out / "faces" / ident.name / f"{k:02d}_original.png"
            save_image(real_path, face)
            base = dict(label=0, method="original", video_id=ident.name, frame_idx=k, split=s,
                        mask_path="", source_path="", box=" ".join(map(str, ident.square)))
            rows.append(dict(base, path=real_path))
            crop_landmarks[str(real_path.resolve())] = (np.asarray(lm, float) / size).round(4).tolist()
            for method in methods:
                donor, tag = None, method
                if synth.FAMILIES[method].needs_donor:
                    if not donors:
                        continue
                    d = donors[rng.integers(len(donors))]
                    donor, tag = donor_face(d, size, rng), f"{method}-{d.name}"
                fake, mask = forge_captured(method, frame, lm, cap, noise_seed, rng, donor)
                stem = out / "{}" / ident.name / f"{k:02d}_{tag}"
                fake_path = Path(str(stem).format("faces") + ".png")
                mask_path = Path(str(stem).format("masks") + "_mask.png")
                save_image(fake_path, fake)
                save_image(mask_path, (mask * 255).round().astype(np.uint8))
                save_image(Path(str(stem).format("masks") + "_residual.png"), synth.residual(fake, face))
                rows.append(dict(base, path=fake_path, label=1, method=method,
                                 mask_path=mask_path, source_path=real_path))
    if len(skipped):
        skipped.write(out / "skipped.csv")
        print(skipped.summary())
    save_identities(idents, out / IDENTITIES_FILE)
    with atomic_path(out / CROP_LANDMARKS_FILE) as tmp:  # exact: self-blends of the reals need no face detector
        Path(tmp).write_text(json.dumps(crop_landmarks))
    (out / VERSION_FILE).write_text(f"{DEMO_VERSION}\n")
    return write_index(rows, out / "index.csv")


def built_version(folder) -> int:
    """The demo engine version a demo folder was built by (0 before versions were written)."""
    f = Path(folder) / VERSION_FILE
    try:
        return int(f.read_text().strip())
    except (OSError, ValueError):
        return 0


def save_identities(idents, path) -> None:
    """The identities' names, landmarks and crop boxes as JSON (read by :func:`demo_identities`)."""
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({i.name: [np.asarray(i.landmarks).tolist(), np.asarray(i.square).tolist()]
                               for i in idents}))
    tmp.replace(path)


FFPP_MINI = [("000", "astronaut"), ("001", "gracehopper"), ("002", "cameraman"), ("003", "lfw000"),
             ("004", "lfw001"), ("005", "lfw002")]


FFPP_FORGERIES = {"Deepfakes": "swap", "Face2Face": "rerender", "FaceSwap": "swap",
                  "NeuralTextures": "rerender", "FaceShifter": "swap"}  # FF++ method -> ``forge``


def build_ffpp_mini(root, num_frames: int = 8, frame_size: int = 256, seed: int = 0,
                    compression: str = "c23", device="cpu", methods=("FaceSwap", "NeuralTextures")) -> Path:
    """A miniature FF++ tree: 6 originals; fakes of each of ``methods`` for the pairs
    000_001, 002_003, 004_005 both ways, with mask videos. Faces drift a little per frame."""
    root = make_out_dir(root, "--videos")
    rng = np.random.default_rng(seed)
    detector = FaceDetector(device=device)
    idents = {i.name: i for i in builtin_identities(detector, num_lfw=3)}
    frames = {}
    for vid, name in FFPP_MINI:
        ident = idents[name]
        # a wider box than the crop, so the face fills ~40% of the frame, like FF++
        x1, y1, x2, y2 = ident.square
        c, half = np.array([(x1 + x2) / 2, (y1 + y2) / 2]), (x2 - x1)
        big = Identity(name, ident.image, ident.landmarks, np.r_[c - half, c + half].round().astype(int))
        face, lm = view(big, frame_size, rng, jitter=False, border=cv2.BORDER_CONSTANT)
        cap = capture.draw(rng)
        frames[vid] = (capture.optics(face, cap), lm, cap, int(rng.integers(2**31)))
    pairs = [(a, b) for x, y in [("000", "001"), ("002", "003"), ("004", "005")] for a, b in [(x, y), (y, x)]]
    drift = [np.array([t * 2.0, t * 1.0]) for t in range(num_frames)]  # pixels per frame

    def clip(img):
        return [cv2.warpAffine(img, np.float32([[1, 0, d[0]], [0, 1, d[1]]]), (frame_size, frame_size),
                               borderMode=cv2.BORDER_REPLICATE) for d in drift]

    orig = root / "original_sequences" / "youtube" / compression / "videos"
    for vid, _ in FFPP_MINI:
        frame, _, cap, seed = frames[vid]
        write_video(orig / f"{vid}.mp4", clip(finish(frame, cap, seed, capture.is_grey(frame))))
    for method in methods:
        fn = FFPP_FORGERIES[method]
        base = root / "manipulated_sequences" / method
        for t, s in pairs:
            img, lm, cap, seed = frames[t]
            fake, mask = forge_captured(fn, img, lm, cap, seed, rng, donor=frames[s][:2])
            write_video(base / compression / "videos" / f"{t}_{s}.mp4", clip(fake))
            m = (mask * 255).round().astype(np.uint8)
            write_video(base / "masks" / "videos" / f"{t}_{s}.mp4", clip(np.stack([m] * 3, -1)))
    return root


def demo_identities(split: str = "train", seed: int = 0, num_lfw: int = 100, cache=None,
                    device="cpu") -> list[Identity]:
    """The built-in identities of one split, split exactly as :func:`build_demo` splits them
    (same seed), so online views of ``train`` never meet a val or test identity. ``cache``
    (a JSON path) keeps the detected landmarks and boxes: MTCNN then runs only once."""
    import json

    cache = Path(cache) if cache else None
    if cache and cache.is_file():
        known = json.loads(cache.read_text())
        idents = [Identity(name, img, np.array(known[name][0], np.float32), np.array(known[name][1]))
                  for name, img in builtin_images(num_lfw) if name in known]
    else:
        idents = builtin_identities(FaceDetector(device=device), num_lfw)
        if cache:
            save_identities(idents, cache)
    split_of = split_groups([i.name for i in idents], seed=seed)
    return [i for i in idents if split_of[i.name] == split]


class DemoViews(torch.utils.data.Dataset):
    """As many demo training samples as asked: every epoch, each identity gives ``views``
    fresh 'frames' (pose, scale and crop jitter of its photo, :func:`view`), each one real
    (``"original"`` in ``methods``) or forged by a family of ``methods`` (a swap's donor is
    another of ``idents``). Drawn from ``(seed, epoch, index)``; rendered at ``crop_size``
    (the index crops' size) and resized like :func:`dfcourse.datasets.load_face`, so they
    look like the index crops. Items ``(image, label, index)``, or with ``masks=True``
    ``(image, label, mask, index)``: the mask is the blend weight (``target="mask"``) or,
    with ``target="residual"``, notebook 04's target computed as it is for an index row
    (:func:`dfcourse.localization.load_map`: fake and source resized, then thresholded).
    ``methods`` may repeat ``"original"`` to balance classes; ``cues`` names the forgery cues
    switched on (:func:`dfcourse.capture.draw_cues`; the shortcut audit switches each off).
    Used in notebooks 02 and 04 (quick mode, :func:`dfcourse.recipes.demo_views`)."""

    def __init__(self, idents, size: int, views: int = 4, methods=None,
                 seed: int = 0, crop_size: int = 128, augment_ops=("flip",), masks: bool = False,
                 target: str = "mask", residual_threshold: float = 0.05, residual_blur: float = 1.0,
                 cues=capture.CUES):
        if methods is None:  # one real view per family: the classes balance whatever families are registered
            methods = ("original",) * len(synth.families()) + synth.families()
        unknown = [m for m in methods if m != "original" and m not in synth.FAMILIES]
        if unknown:
            raise ValueError(f"unknown forgery famil{'ies' if len(unknown) > 1 else 'y'} {unknown}; "
                             f"registered: {synth.families()}")
        needs_donor = [m for m in methods if m != "original" and synth.FAMILIES[m].needs_donor]
        if len(idents) < 2 and needs_donor:
            raise ValueError(f"{needs_donor[0]} needs at least 2 identities")
        if target not in ("mask", "residual"):
            raise ValueError(f"target must be 'mask' or 'residual', not {target!r}")
        self.idents, self.size, self.views, self.methods = list(idents), size, views, tuple(methods)
        self.seed, self.crop_size, self.augment_ops, self.masks = seed, crop_size, tuple(augment_ops), masks
        self.target, self.residual, self.cues = target, (residual_threshold, residual_blur), tuple(cues)
        self.epoch = 0

    def __len__(self):
        return len(self.idents) * self.views * len(self.methods)

    @property
    def pos_weight(self) -> float:
        """The fake class's loss weight that balances these views: real views / forged views."""
        fakes = sum(m != "original" for m in self.methods)
        return (len(self.methods) - fakes) / fakes if fakes else 1.0

    def identity(self) -> dict:
        """What a run trained on these views depends on (for main's ``dfcourse.runs``)."""
        return {"class": "DemoViews", "engine": DEMO_VERSION, "identities": [i.name for i in self.idents], "size": self.size,
                "views": self.views, "methods": list(self.methods), "seed": self.seed, "crop_size": self.crop_size,
                "augment": list(self.augment_ops), "masks": self.masks,
                **({"cues": list(self.cues)} if self.cues != capture.CUES else {}),
                **({"target": self.target, "residual": list(self.residual)} if self.masks else {})}

    def sample(self, i):
        """``(face uint8 at crop_size, label, mask, method)`` of item ``i``."""
        return self._render(i)[:4]

    def _render(self, i):
        k, rest = divmod(i, self.views * len(self.methods))
        method = self.methods[rest % len(self.methods)]
        rng = np.random.default_rng([self.seed, self.epoch, i])
        frame, lm, cap, noise_seed = capture_frame(self.idents[k], self.crop_size, rng)
        face = finish(frame, cap, noise_seed, capture.is_grey(frame))
        if method == "original":
            return face, 0, np.zeros(face.shape[:2], np.float32), method, face
        donor = None
        if synth.FAMILIES[method].needs_donor:
            d = (k + 1 + rng.integers(len(self.idents) - 1)) % len(self.idents)
            donor = donor_face(self.idents[d], self.crop_size, rng)
        fake, mask = forge_captured(method, frame, lm, cap, noise_seed, rng, donor, self.cues)
        return fake, 1, mask, method, face

    def __getitem__(self, i):
        from PIL import Image

        face, label, mask, _, source = self._render(i)
        img = Image.fromarray(face)
        if self.size != self.crop_size:
            img = img.resize((self.size, self.size), Image.BILINEAR)
            mask = cv2.resize(mask, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
        if self.masks and self.target == "residual":
            src = Image.fromarray(source)
            src = src.resize((self.size, self.size), Image.BILINEAR) if self.size != self.crop_size else src
            mask = synth.residual_target(np.asarray(img), np.asarray(src), *self.residual) if label else mask
        img, mask = augment_with_map(img, mask, np.random.default_rng([self.seed, self.epoch, i, 1]), self.augment_ops)
        x, y = to_tensor(img), torch.tensor(float(label))
        return (x, y, torch.from_numpy(np.ascontiguousarray(mask))[None], i) if self.masks else (x, y, i)
