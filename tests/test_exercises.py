"""Every exercise check of the notebooks can pass and can fail.

For each nbgrader exercise (an "autograded answer" cell ``ID`` and its locked tests cell
``ID-tests``) the instructor's solution passes the tests (hidden ones included), and the
student edition's stub and at least one wrong answer per exercise fail them. Runs the cells'
code directly, without a kernel: exercise and test cells are self-contained by design.
"""

from __future__ import annotations

import copy
from pathlib import Path

import nbformat
import pytest
from nbgrader.preprocessors import ClearSolutions

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))

# Exercise 2.1's two halves, each right, for wrong answers that get the other half wrong
_TRAIN_OK = (
    "def train_one_epoch(net, loader, optimiser, pos_weight=1.0):\n    net.train(); total = n = 0\n"
    "    for x, y, *_ in loader:\n        z = net(x)[:, 0]; loss, g = bce_and_grad(z.detach(), y, pos_weight)\n"
    "        optimiser.zero_grad(); z.backward(g); optimiser.step(); total += loss * len(y); n += len(y)\n"
    "    return total / n\n")
_BCE_OK = (
    "import torch\nimport torch.nn.functional as F\ndef bce_and_grad(z, y, pos_weight=1.0):\n"
    "    z, y = z.detach(), y.to(z.dtype); p = torch.sigmoid(z)\n"
    "    loss = (pos_weight * y * F.softplus(-z) + (1 - y) * F.softplus(z)).mean()\n"
    "    return float(loss), (pos_weight * y * (p - 1) + (1 - y) * p) / len(z)\n")

# Wrong answers, one or more per exercise: a plausible mistake, or a call into dfcourse; a pair (old, new)
# is the worked answer with `old` replaced by `new`.
WRONG = {
    "ex01-1": [
        "import numpy as np\ndef frame_indices(num_total, k):\n    return np.arange(min(k, num_total))",  # first k
        "import numpy as np\ndef frame_indices(num_total, k):\n"  # k > n repeats frames
        "    return np.round(np.linspace(0, num_total - 1, k)).astype(int)",
        "from dfcourse.video import sample_indices\ndef frame_indices(num_total, k):\n"
        "    return sample_indices(num_total, k)",
        # the course's function bound as a default argument, then in a closure cell
        "from dfcourse.video import sample_indices\ndef frame_indices(n, k, _f=sample_indices):\n    return _f(n, k)",
        "def _make():\n    from dfcourse.video import sample_indices as f\n"
        "    def frame_indices(num_total, k):\n        return f(num_total, k)\n    return frame_indices\n"
        "frame_indices = _make()",
    ],
    "ex01-2": [
        "def face_square(box, margin=1.3):\n    return [int(v) for v in box]",  # no margin, not square
        "import numpy as np\ndef face_square(box, margin=1.3):\n"  # side from the smaller side
        "    x1, y1, x2, y2 = box; s = round(min(x2 - x1, y2 - y1) * margin)\n"
        "    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2\n"
        "    return np.array([round(cx - s / 2), round(cy - s / 2), round(cx - s / 2) + s, round(cy - s / 2) + s])",
        "from dfcourse.faces import square_box\ndef face_square(box, margin=1.3):\n    return square_box(box, margin)",
        # a keyword-only default reached through a helper of the student's; a closure over a partial
        "from dfcourse.faces import square_box\ndef _side(box, margin, *, _g=square_box):\n    return _g(box, margin)\n"
        "def face_square(box, margin=1.3):\n    return _side(box, margin)",
        "import functools\ndef _make():\n    from dfcourse.faces import square_box\n"
        "    g = functools.partial(square_box)\n    return lambda box, margin=1.3: g(box, margin)\n"
        "face_square = _make()",
    ],
    "ex01-3": [
        "def link_groups(originals, fakes):\n    return {v: v for v in originals}",  # no linking at all
        "def link_groups(originals, fakes):\n"  # links only direct pairs, not chains
        "    g = {v: v for v in originals}\n"
        "    for t, s in fakes:\n        g[s] = g.get(t, t)\n"
        "    return g",
        "from dfcourse.index import link_groups as lg\ndef link_groups(originals, fakes):\n"
        "    return lg(originals, fakes)",
    ],
    "ex02-4": [
        # both picks on the clean validation AUC
        "def choose_model(scores):\n    b = max(scores, key=lambda s: s['val_auc'])['name']\n"
        "    return {'in_domain': b, 'shifted': b, 'drop': {s['name']: s['val_auc'] - s['shifted_val_auc'] for s in scores}}",
        # the test column chooses
        "def choose_model(scores):\n    b = max(scores, key=lambda s: s.get('test_auc', 0))['name']\n"
        "    return {'in_domain': b, 'shifted': b, 'drop': {s['name']: s['val_auc'] - s['shifted_val_auc'] for s in scores}}",
        # the drop's sign reversed
        "def choose_model(scores):\n    f = lambda k: max(scores, key=lambda s: s[k])['name']\n"
        "    return {'in_domain': f('val_auc'), 'shifted': f('shifted_val_auc'),\n"
        "            'drop': {s['name']: s['shifted_val_auc'] - s['val_auc'] for s in scores}}",
        # max() over NaN: NaN compares false, so a NaN first in the list is kept
        "def choose_model(scores):\n    f = lambda k: max(scores, key=lambda s: s[k])['name']\n"
        "    return {'in_domain': f('val_auc'), 'shifted': f('shifted_val_auc'),\n"
        "            'drop': {s['name']: s['val_auc'] - s['shifted_val_auc'] for s in scores}}",
        # the course's function
        "from dfcourse.robustness import validation_picks\ndef choose_model(scores):\n    return validation_picks(scores)",
    ],
    "ex02-1": [
        # log of the sigmoid: infinite loss for a confident wrong logit
        "import torch\ndef bce_and_grad(z, y, pos_weight=1.0):\n    z, y = z.detach(), y.to(z.dtype); p = torch.sigmoid(z)\n"
        "    loss = -(pos_weight * y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()\n"
        "    return float(loss), (pos_weight * y * (p - 1) + (1 - y) * p) / len(z)\n" + _TRAIN_OK,
        # the gradient of the sum, not of the mean
        "import torch\nimport torch.nn.functional as F\ndef bce_and_grad(z, y, pos_weight=1.0):\n"
        "    z, y = z.detach(), y.to(z.dtype); p = torch.sigmoid(z)\n"
        "    loss = (pos_weight * y * F.softplus(-z) + (1 - y) * F.softplus(z)).mean()\n"
        "    return float(loss), pos_weight * y * (p - 1) + (1 - y) * p\n" + _TRAIN_OK,
        # y - p: the gradient's sign reversed
        "import torch\nimport torch.nn.functional as F\ndef bce_and_grad(z, y, pos_weight=1.0):\n"
        "    z, y = z.detach(), y.to(z.dtype); p = torch.sigmoid(z)\n"
        "    loss = (pos_weight * y * F.softplus(-z) + (1 - y) * F.softplus(z)).mean()\n"
        "    return float(loss), (y - p) / len(z)\n" + _TRAIN_OK,
        # pos_weight ignored
        "import torch\nimport torch.nn.functional as F\ndef bce_and_grad(z, y, pos_weight=1.0):\n"
        "    z, y = z.detach(), y.to(z.dtype); p = torch.sigmoid(z)\n"
        "    loss = (y * F.softplus(-z) + (1 - y) * F.softplus(z)).mean()\n"
        "    return float(loss), (p - y) / len(z)\n" + _TRAIN_OK,
        # autograd's gradient through torch's loss
        "import torch\nimport torch.nn.functional as F\ndef bce_and_grad(z, y, pos_weight=1.0):\n"
        "    z = z.detach().requires_grad_()\n"
        "    loss = F.binary_cross_entropy_with_logits(z, y.to(z.dtype), pos_weight=torch.tensor(pos_weight, dtype=z.dtype))\n"
        "    (g,) = torch.autograd.grad(loss, z)\n    return float(loss), g\n" + _TRAIN_OK,
        # gradients accumulate: no zero_grad
        _BCE_OK + "def train_one_epoch(net, loader, optimiser, pos_weight=1.0):\n    net.train(); total = n = 0\n"
        "    for x, y, *_ in loader:\n        z = net(x)[:, 0]; loss, g = bce_and_grad(z.detach(), y, pos_weight)\n"
        "        z.backward(g); optimiser.step(); total += loss * len(y); n += len(y)\n    return total / n\n",
        # the mean of the batch means: the short last batch counts as much as a full one
        _BCE_OK + "def train_one_epoch(net, loader, optimiser, pos_weight=1.0):\n    net.train(); losses = []\n"
        "    for x, y, *_ in loader:\n        z = net(x)[:, 0]; loss, g = bce_and_grad(z.detach(), y, pos_weight)\n"
        "        optimiser.zero_grad(); z.backward(g); optimiser.step(); losses.append(loss)\n"
        "    return sum(losses) / len(losses)\n",
        # the net left in evaluation mode
        _BCE_OK + "def train_one_epoch(net, loader, optimiser, pos_weight=1.0):\n    total = n = 0\n"
        "    for x, y, *_ in loader:\n        z = net(x)[:, 0]; loss, g = bce_and_grad(z.detach(), y, pos_weight)\n"
        "        optimiser.zero_grad(); z.backward(g); optimiser.step(); total += loss * len(y); n += len(y)\n"
        "    return total / n\n",
    ],
    "ex02-2": [
        "def equal_error_rate(y, scores):\n    return 0.0",
        "import numpy as np\nfrom sklearn.metrics import roc_curve\ndef equal_error_rate(y, scores):\n"  # no interpolation
        "    fpr, tpr, _ = roc_curve(y, scores)\n    return float(fpr[np.argmin(np.abs(fpr - (1 - tpr)))])",
        "from dfcourse.metrics import eer\ndef equal_error_rate(y, scores):\n    return eer(y, scores)",
        "from dfcourse.metrics import eer\ndef equal_error_rate(y, scores, _e=eer):\n    return _e(y, scores)",
        "def _make():\n    from dfcourse.metrics import eer\n    def equal_error_rate(y, scores):\n"
        "        return eer(y, scores)\n    return equal_error_rate\nequal_error_rate = _make()",
    ],
    "ex02-3": [
        "import numpy as np\ndef video_level(rows, probs):\n"  # groups by video_id alone
        "    ids = sorted({r['video_id'] for r in rows})\n"
        "    y = np.array([max(r['label'] for r in rows if r['video_id'] == v) for v in ids])\n"
        "    p = np.array([np.mean([q for r, q in zip(rows, probs) if r['video_id'] == v]) for v in ids])\n"
        "    return [(v, int(l)) for v, l in zip(ids, y)], y, p",
        "import numpy as np\ndef video_level(rows, probs):\n"  # max instead of mean
        "    keys = sorted({(r['video_id'], int(r['label'])) for r in rows})\n"
        "    p = [max(q for r, q in zip(rows, probs) if (r['video_id'], int(r['label'])) == k) for k in keys]\n"
        "    return keys, np.array([k[1] for k in keys]), np.array(p)",
        "from dfcourse.metrics import video_scores\ndef video_level(rows, probs):\n    return video_scores(rows, probs)",
    ],
    "ex03-1": [
        "import torch\ndef prompt_logit(f, text, scale=100.0):\n"  # dot products, not cosines
        "    s = f.float() @ text.float().T\n    return scale * (s[:, 1] - s[:, 0])",
        "import torch\ndef prompt_logit(f, text, scale=100.0):\n"  # real minus fake
        "    f = torch.nn.functional.normalize(f, dim=-1); t = torch.nn.functional.normalize(text, dim=-1)\n"
        "    s = f @ t.T\n    return scale * (s[:, 0] - s[:, 1])",
        "from dfcourse.clip_peft import ClipHead\ndef prompt_logit(f, text, scale=100.0):\n"
        "    return ClipHead('zeroshot', f.shape[1], text)(f).squeeze(1).detach()",
    ],
    "ex03-2": [
        "import torch\nfrom torch import nn\nclass ClipAdapter(nn.Module):\n"  # adds instead of mixing
        "    def __init__(self, dim, reduction=4, alpha=0.2):\n        super().__init__(); self.alpha = alpha\n"
        "        self.fc1 = nn.Linear(dim, dim // reduction, bias=False)\n"
        "        self.fc2 = nn.Linear(dim // reduction, dim, bias=False)\n"
        "    def forward(self, f):\n        return f + self.alpha * torch.relu(self.fc2(torch.relu(self.fc1(f))))",
        "import torch\nfrom torch import nn\nclass ClipAdapter(nn.Module):\n"  # no inner ReLU
        "    def __init__(self, dim, reduction=4, alpha=0.2):\n        super().__init__(); self.alpha = alpha\n"
        "        self.fc1 = nn.Linear(dim, dim // reduction, bias=False)\n"
        "        self.fc2 = nn.Linear(dim // reduction, dim, bias=False)\n"
        "    def forward(self, f):\n"
        "        return self.alpha * torch.relu(self.fc2(self.fc1(f))) + (1 - self.alpha) * f",
        "import torch\nfrom torch import nn\nclass ClipAdapter(nn.Module):\n"  # biases: the paper has none
        "    def __init__(self, dim, reduction=4, alpha=0.2):\n        super().__init__(); self.alpha = alpha\n"
        "        self.fc1 = nn.Linear(dim, dim // reduction)\n        self.fc2 = nn.Linear(dim // reduction, dim)\n"
        "    def forward(self, f):\n"
        "        return self.alpha * torch.relu(self.fc2(torch.relu(self.fc1(f)))) + (1 - self.alpha) * f",
        ("self.alpha * bottleneck + (1 - self.alpha) * f", "(1 - self.alpha) * bottleneck + self.alpha * f"),  # swapped
        "from dfcourse.clip_peft import Adapter\nclass ClipAdapter(Adapter):\n"
        "    def __init__(self, dim, reduction=4, alpha=0.2):\n        super().__init__(dim, dim // reduction)",
    ],
    "ex03-3": [
        "def lora_linear(x, W, b, A, B, alpha):\n    return x @ W.T + b + alpha * (x @ A.T) @ B.T",  # no 1/r
        "def lora_linear(x, W, b, A, B, alpha):\n    return x @ W.T + b",  # no update at all
        "import torch\nfrom dfcourse.clip_tuning import LoRA\ndef lora_linear(x, W, b, A, B, alpha):\n"
        "    lora = LoRA(W, r=A.shape[0], alpha=alpha); lora.A.data, lora.B.data = A, B\n"
        "    return torch.nn.functional.linear(x, lora(W), b)",
    ],
    "ex04-1": [
        "import numpy as np\ndef residual_mask(fake, source, threshold=0.05):\n"  # uint8 wrap-around
        "    return ((np.abs(fake - source).mean(-1) / 255) > threshold).astype(np.float32)",
        "import numpy as np\ndef residual_mask(fake, source, threshold=0.05):\n"  # max over channels, not mean
        "    d = np.abs(fake.astype(float) - source.astype(float)).max(-1) / 255\n"
        "    return (d > threshold).astype(np.float32)",
        "from dfcourse.localization import residual_target\ndef residual_mask(fake, source, threshold=0.05):\n"
        "    return residual_target(fake, source, threshold, 0)",
    ],
    "ex04-2": [  # (old, new): the worked answer with one mistake
        ("    mask = cv2.GaussianBlur(mask, (0, 0), 0.05 * side)\n", ""),  # a hard mask
        ("    mask[mask < 1 / 255] = 0\n", ""),  # weights too small to change a pixel kept in the mask
        ("np.round(img * (1 - m) + source * m)", "img * (1 - m) + source * m"),  # truncated, not rounded
        ("return fake, mask, 4 * mask * (1 - mask)", "return fake, mask, mask * (1 - mask)"),  # boundary without the 4
        ("rng.uniform(-1, 1, (h, w))", "np.random.uniform(-1, 1, (h, w))"),  # numpy's global generator
        ("img * (1 - m) + source * m", "img * m + source * (1 - m)"),  # the blend inverted
        ("    gx, gy = np.meshgrid", "    amp = 0.0\n    gx, gy = np.meshgrid"),  # no deformation
        "from dfcourse import synth\ndef self_blend(img, landmarks, rng, change=None):\n"
        "    fake, mask = synth.self_blend(img, landmarks, rng)\n    return fake, mask, 4 * mask * (1 - mask)",
    ],
    "ex04-3": [
        "import numpy as np\ndef choose_threshold(val_maps, val_masks, candidates):\n    return 0.5",
        "import numpy as np\ndef choose_threshold(val_maps, val_masks, candidates):\n"  # last on a tie
        "    def iou(a, b):\n        u = (a | b).sum()\n        return (a & b).sum() / u if u else 1.0\n"
        "    s = [np.mean([iou(np.asarray(p) > t, np.asarray(g) > 0.5) for p, g in zip(val_maps, val_masks)])"
        " for t in candidates]\n"
        "    return float(candidates[len(s) - 1 - int(np.argmax(s[::-1]))])",
        "from dfcourse.metrics import best_threshold\ndef choose_threshold(val_maps, val_masks, candidates):\n"
        "    return best_threshold(val_maps, val_masks, candidates)",
    ],
    "ex04-4": [  # (old, new) on the worked answer
        ("cv2.GaussianBlur(img, (k, k), k / 6)", "cv2.GaussianBlur(img, (k, k), k)"),  # sigma = k
        ("k = BLUR_KERNEL[level - 1]", "k = BLUR_KERNEL[min(level, 4)]"),  # the levels shifted by one
        ("np.round(img * CONTRAST[level - 1])", "img.astype(float) - 255 * (1 - CONTRAST[level - 1])"),  # darker, not less contrast
        ("        return img.copy()\n", "        level = 1\n"),  # level 0 changes the image
        ("    if kind not in (\"contrast\", \"blur\") or level not in range(6):\n        raise ValueError(f\"kind must be 'contrast' or 'blur' and level 0-5, not {kind!r}, {level!r}\")\n", ""),  # no checks
        ("np.clip(np.round(img * CONTRAST[level - 1]), 0, 255).astype(np.uint8)", "img * CONTRAST[level - 1]"),  # float out
        "from dfcourse import perturb\ndef perturb_level(img, kind, level):\n    return perturb.perturb(img, kind, level)",
    ],
    "ex05-1": [
        "import numpy as np\nimport torch\ndef grad_cam(net, layer, x):\n"  # gradient x activation, no channel mean
        "    store = {}\n    h = layer.register_forward_hook(lambda m, i, o: store.update(A=o))\n"
        "    out = net(x); h.remove(); A = store['A']\n"
        "    (g,) = torch.autograd.grad(out[:, 0].sum(), A)\n"
        "    cam = torch.relu((g * A).sum(1)).detach().numpy()\n"
        "    cam = cam - cam.min(axis=(1, 2), keepdims=True)\n"
        "    return cam / np.maximum(cam.max(axis=(1, 2), keepdims=True), 1e-7)",
        "import numpy as np\nimport torch\ndef grad_cam(net, layer, x):\n"  # forgets to remove the hook
        "    store = {}\n    layer.register_forward_hook(lambda m, i, o: store.update(A=o))\n"
        "    out = net(x); A = store['A']\n"
        "    (g,) = torch.autograd.grad(out[:, 0].sum(), A)\n"
        "    cam = torch.relu((g.mean((2, 3), keepdim=True) * A).sum(1)).detach().numpy()\n"
        "    cam = cam - cam.min(axis=(1, 2), keepdims=True)\n"
        "    return cam / np.maximum(cam.max(axis=(1, 2), keepdims=True), 1e-7)",
        "from pytorch_grad_cam import GradCAM\nfrom pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget\n"
        "def grad_cam(net, layer, x):\n"
        "    with GradCAM(model=net, target_layers=[layer]) as c:\n"
        "        return c(input_tensor=x, targets=[ClassifierOutputTarget(0)] * len(x))",
    ],
    "ex05-2": [
        "import numpy as np\ndef pointing_hit(cam, mask):\n"  # transposed coordinates
        "    r, c = np.unravel_index(int(np.argmax(cam)), np.shape(cam))\n"
        "    return bool(np.asarray(mask).T[r, c] > 0.5) if max(r, c) < min(np.shape(mask)) else False",
        "import numpy as np\ndef pointing_hit(cam, mask):\n"  # any overlap instead of the maximum
        "    return bool(((np.asarray(cam) > 0) & (np.asarray(mask) > 0.5)).any())",
        "from dfcourse.metrics import pointing_game\ndef pointing_hit(cam, mask):\n    return pointing_game(cam, mask)",
    ],
    "ex05-3": [
        "import numpy as np\ndef energy_share(cam, mask):\n"  # negatives not clipped
        "    cam = np.asarray(cam, float); t = cam.sum()\n"
        "    return float((cam * (np.asarray(mask) > 0.5)).sum() / t) if t > 0 else 0.0",
        "import numpy as np\ndef energy_share(cam, mask):\n"  # mask area instead of map mass
        "    return float((np.asarray(mask) > 0.5).mean())",
        "from dfcourse.metrics import energy_in_mask\ndef energy_share(cam, mask):\n    return energy_in_mask(cam, mask)",
    ],
}


def exercises():
    out = []
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in nb.cells}
        for gid, cell in cells.items():
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("solution") and not meta.get("grade") and cell.cell_type == "code":
                out.append(pytest.param(cell, cells.get(f"{gid}-tests"), id=gid))
    return out


def run(answer_source: str, tests_source: str):
    namespace = {"__name__": "__main__"}
    exec(compile(answer_source, "<answer>", "exec"), namespace)
    exec(compile(tests_source, "<tests>", "exec"), namespace)


def student_stub(cell):
    """The cell as nbgrader's student edition has it (solution region replaced by a stub)."""
    cell = copy.deepcopy(cell)
    clear = ClearSolutions()
    clear._replace_solution_region(cell, "python")
    return cell.source


def test_notebooks_have_exercises():
    found = [p.id for p in exercises()]
    assert {"ex01-1", "ex01-2", "ex01-3", "ex02-1", "ex02-2", "ex02-3", "ex02-4", "ex03-1", "ex03-2", "ex03-3", "ex04-1", "ex04-2", "ex04-3", "ex04-4",
            "ex05-1", "ex05-2", "ex05-3"} <= set(found)


@pytest.mark.parametrize("answer, tests", exercises())
def test_solution_passes(answer, tests):
    assert tests is not None, "every exercise has a tests cell named <id>-tests"
    assert "### BEGIN SOLUTION" in answer.source
    run(answer.source, tests.source)


@pytest.mark.parametrize("answer, tests", exercises())
def test_student_stub_fails(answer, tests):
    stub = student_stub(answer)
    assert "raise NotImplementedError()" in stub and "BEGIN SOLUTION" not in stub
    with pytest.raises(NotImplementedError):
        run(stub, tests.source)


@pytest.mark.parametrize("answer, tests", exercises())
def test_wrong_answers_fail(answer, tests):
    gid = answer.metadata["nbgrader"]["grade_id"]
    assert WRONG.get(gid), f"no wrong answer for {gid} in WRONG: every check must be shown to fail"
    for wrong in WRONG[gid]:
        if isinstance(wrong, tuple):  # one change to the worked answer
            old, new = wrong
            assert old in answer.source, f"{gid}: the worked answer no longer holds {old!r}"
            wrong = answer.source.replace(old, new)
        with pytest.raises(AssertionError):
            run(wrong, tests.source)


# ------------------------------------------------------------------ the plumbing itself
def test_pick_uses_a_working_answer_and_falls_back_otherwise(capsys):
    from dfcourse import exercises as ex

    def ref(a, b):
        return a + b

    def unsolved(a, b):
        raise NotImplementedError()

    assert ex.pick("E", lambda a, b: b + a, ref, [(1, 2), (3, 4)]) is not ref
    assert "using your answer" in capsys.readouterr().out
    for yours, why in [(None, "not defined"), (unsolved, "not solved yet"), (lambda a, b: a - b, "different answer"),
                       (lambda a, b: a / 0, "ZeroDivisionError")]:
        assert ex.pick("E", yours, ref, [(1, 2)]) is ref
        assert why in capsys.readouterr().out


def test_forbid_refuses_the_course_function_under_any_name_and_restores_it():
    from dfcourse import exercises as ex
    from dfcourse import faces
    from dfcourse.faces import square_box as renamed

    scope = {"sb": renamed}
    with ex.forbid("dfcourse.faces.square_box", scope=scope):
        for call in (faces.square_box, scope["sb"]):
            with pytest.raises(AssertionError, match="do not call dfcourse.faces.square_box"):
                call((0, 0, 1, 1))
    assert faces.square_box is renamed and scope["sb"] is renamed


CHEATS = {  # ways to reach the course's function that the test's scope does not hold by name
    "default": "def f(b, m=1.3, _f=square_box):\n    return _f(b, m)",
    "keyword-only default": "def f(b, m=1.3, *, _f=square_box):\n    return _f(b, m)",
    "closure": "def _make():\n    g = square_box\n    def f(b, m=1.3):\n        return g(b, m)\n    return f\nf = _make()",
    "helper's closure": "def _make():\n    g = square_box\n    return lambda b, m: g(b, m)\nh = _make()\n"
                        "del square_box\ndef f(b, m=1.3):\n    return h(b, m)",
    "partial": "import functools\nf = functools.partial(square_box)",
    "list": "T = [square_box]\ndel square_box\ndef f(b, m=1.3):\n    return T[0](b, m)",
    "class attribute": "class K:\n    g = staticmethod(square_box)\n    def run(self, b, m):\n        return self.g(b, m)\n"
                       "del square_box\ndef f(b, m=1.3):\n    return K().run(b, m)",
    "copied code": "import types\nf = types.FunctionType(square_box.__code__, square_box.__globals__)",
}


@pytest.mark.parametrize("cheat", sorted(CHEATS))
def test_forbid_sees_through_defaults_closures_and_helpers(cheat):
    from dfcourse import exercises as ex

    scope = {"__name__": "__main__"}
    exec("from dfcourse.faces import square_box\n" + CHEATS[cheat], scope)
    answer = scope["f"]((0, 0, 4, 4), 1.3)  # the cheat works outside the block
    with ex.forbid("dfcourse.faces.square_box", scope=scope):
        with pytest.raises(AssertionError, match="do not call dfcourse.faces.square_box"):
            scope["f"]((0, 0, 4, 4), 1.3)
    assert list(scope["f"]((0, 0, 4, 4), 1.3)) == list(answer)  # and everything is put back


def test_forbid_leaves_an_honest_answer_alone():
    from dfcourse import exercises as ex

    scope = {"__name__": "__main__"}
    exec("import numpy as np\nHELPERS = [np.round]\ndef f(b, m=1.3, _r=round):\n    return [_r(v * m) for v in b]", scope)
    with ex.forbid("dfcourse.faces.square_box", scope=scope):
        assert scope["f"]((1, 2), 2) == [2, 4]
    assert scope["HELPERS"][0] is __import__("numpy").round


def test_same_and_same_partition():
    import numpy as np
    import torch

    from dfcourse import exercises as ex

    assert ex.same({"a": [1.0, np.nan]}, {"a": np.array([1.0, np.nan])})
    assert ex.same((np.zeros(2), 3), [torch.zeros(2), 3.0]) and not ex.same(np.zeros(2), np.zeros(3))
    assert ex.within(1)([10, 11], [11, 10]) and not ex.same([10, 11], [11, 10])
    assert ex.same_partition({"a": 1, "b": 1, "c": 2}, {"a": "x", "b": "x", "c": "y"})
    assert not ex.same_partition({"a": 1, "b": 1, "c": 2}, {"a": 1, "b": 2, "c": 2})
