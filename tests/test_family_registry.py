"""A forgery family registered from a test file alone reaches the demo data, its online views
(with the class balance derived from the families) and the per-family scores, with no other
file edited (issue: "extension in one place")."""
import cv2
import numpy as np
import pytest
from PIL import Image

from dfcourse import synth
from dfcourse.demo import CANONICAL_LANDMARKS, DemoViews, Identity, build_demo
from dfcourse.index import read_index
from dfcourse.selfblend import auc_by_family


def _toy_blur(face, lm, rng, donor, cues):
    """A blurred ellipse around the landmarks' centre, blended in with its exact weight."""
    eyes, mouth, eye_dist, face_h, angle = synth._geometry(lm)
    mask = synth.ellipse_mask(face.shape, (eyes + mouth) / 2, (eye_dist, face_h), angle)
    mask = cv2.GaussianBlur(mask, (0, 0), 2.0)
    mask[mask < 1 / 255] = 0
    source = cv2.GaussianBlur(face.astype(np.float32), (0, 0), 1.0 + 2.0 * cues.get("resolution", 1.0))
    return synth.blend(face, source, mask), mask


@pytest.fixture
def toy_family():
    synth.register_family("toyblur")(_toy_blur)
    yield "toyblur"
    synth.unregister_family("toyblur")


def identities(n=3):
    rng = np.random.default_rng(0)
    out = []
    for k in range(n):
        img = cv2.GaussianBlur(rng.uniform(0, 255, (192, 192, 3)).astype(np.float32), (0, 0), 12)
        img = ((img - img.min()) / (np.ptp(img) + 1e-6) * 200 + 20).astype(np.uint8)
        out.append(Identity(f"id{k}", img, CANONICAL_LANDMARKS * 96 + 48, np.array([38, 38, 154, 154])))
    return out


def test_the_registry_refuses_duplicates_and_names_unknown_families(toy_family):
    assert synth.families() == synth.METHODS + ("toyblur",)
    with pytest.raises(ValueError, match="already registered"):
        synth.register_family("toyblur")(_toy_blur)
    with pytest.raises(ValueError, match="already registered"):
        synth.register_family("original")(_toy_blur)
    with pytest.raises(ValueError, match="unknown forgery family.*registered"):
        DemoViews(identities(), 64, methods=("original", "nosuchfamily"))


def test_online_views_include_the_family_and_stay_balanced(toy_family):
    views = DemoViews(identities(), 64, views=1, masks=True)
    assert views.methods.count("original") == len(synth.families()) == 4
    assert views.pos_weight == 1.0
    methods = [views.sample(i)[3] for i in range(len(views))]
    assert methods.count("toyblur") == 3 and methods.count("original") == 3 * 4
    i = methods.index("toyblur")
    x, y, mask, _ = views[i]
    assert float(y) == 1 and mask.max() > 0
    # a set that leaves one family out is unbalanced, and its weight says by how much
    assert DemoViews(identities(), 64, methods=("original",) * 4 + ("swap", "toyblur")).pos_weight == 2.0


def test_the_demo_data_and_the_per_family_scores_include_it(toy_family, tmp_path):
    from matplotlib import cbook
    from skimage import data

    faces = tmp_path / "faces"
    faces.mkdir()
    Image.fromarray(data.astronaut()).save(faces / "astronaut.png")
    Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB").save(faces / "gracehopper.png")
    Image.fromarray(data.camera()).convert("RGB").save(faces / "cameraman.png")
    index = build_demo(tmp_path / "demo", size=64, frames_per_id=1, faces_dir=faces)
    rows = read_index(index)
    toy = [r for r in rows if r["method"] == "toyblur"]
    assert len(toy) == 3 and all(r["label"] == 1 and r["mask_path"] and r["source_path"] for r in toy)
    mask = np.asarray(Image.open(toy[0]["mask_path"]))
    assert mask.max() > 0 and (mask == 0).any()
    reals = [r for r in rows if r["label"] == 0]
    assert len(reals) == 3 and {"original", "selfblend", "rerender", "toyblur"} <= {r["method"] for r in rows}
    scores = auc_by_family(rows, [float(r["label"]) for r in rows])
    assert "toyblur" in scores and scores["toyblur"] == 1.0
