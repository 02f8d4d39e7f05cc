"""Notebook 02 in full mode on a dataset made from a folder of real face photos
(``demo-data --faces DIR``, issue 11): Meso-4 trains on every training face plus online
self-blends, and the reals + self-blends-only protocol reports AUC on the held-back families.
Executed with nbclient as the grader does, with short settings; slow."""
from pathlib import Path

import numpy as np
import pytest

from test_notebook01_full import with_parameters

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "02_resnet_baseline.ipynb"


@pytest.mark.slow
def test_notebook_02_full_mode_on_a_faces_folder(tmp_path, monkeypatch):
    from dfcourse.demo import build_demo, builtin_images
    from dfcourse.index import read_index
    from dfcourse.io import save_image
    from dfcourse.runner import execute

    faces = tmp_path / "my_faces"  # a user's folder: one photo per person, names that are not the demo's
    for k, (_, img) in enumerate(builtin_images(num_lfw=9)):
        save_image(faces / f"person{k:02d}.png", img)
        if k < 3:
            save_image(faces / f"person{k:02d}_mirrored.jpg", np.ascontiguousarray(img[:, ::-1]))
    index = build_demo(tmp_path / "faces_demo", size=64, frames_per_id=2, faces_dir=faces)
    train = [r for r in read_index(index, split="train") if r["method"] != "rerender"]  # HELD_OUT = "auto"
    monkeypatch.setenv("DFCOURSE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DFCOURSE_QUICK", raising=False)
    nb_path = with_parameters(NOTEBOOK, tmp_path / NOTEBOOK.name, DATA_ROOT=str(index), SIZE=80, NUM_EPOCHS=1,
                              BATCH_SIZE=16, SCRATCH_EPOCHS=2, DEVICE="cpu")
    nb = execute(nb_path, tmp_path / "executed.ipynb", timeout=600, cwd=tmp_path)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"]
    assert not errors, errors[0].get("evalue")
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "mode: FULL" in text
    n_real = sum(r["label"] == 0 for r in train)
    assert f"Meso-4 rows: all {len(train)} training faces ({n_real} real)" in text  # no demo views on a folder
    assert "meso4-scratch+SB" in text and "meso4-scratch+views" not in text
    assert "inception-full" in text  # full mode: the InceptionResnetV1 rows too
    assert "held out of training: rerender" in text and "shifted validation picks" in text
    table = text[text.index("reals + self-blends only: Meso-4, random init, full mode"):]
    for family, seen in (("rerender", "unseen"), ("selfblend", "like it"), ("swap", "unseen")):
        line = next(ln for ln in table.splitlines() if ln.startswith(family))
        auc = float(line.split()[-1])
        assert seen in line and 0.0 <= auc <= 1.0
