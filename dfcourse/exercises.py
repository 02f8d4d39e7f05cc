"""Plumbing for the graded exercises (nbgrader) of every notebook.

An exercise is a function the student writes in an "autograded answer" cell; a locked
"autograder tests" cell checks it on small inputs it builds. Two helpers keep that honest
and keep the notebook running:

* :func:`pick` — what the rest of the notebook uses: the student's function when it runs on
  every probe input and agrees with the course's reference there, else the reference; one
  printed line says which. An unsolved notebook therefore still runs top to bottom.
* :func:`forbid` — used by the tests: inside the block, calling the course's own version of the
  exercise raises, so an answer that is a one-line call into ``dfcourse`` fails its check.

Used in every notebook of ``notebooks/``.
"""

from __future__ import annotations

import importlib
from contextlib import contextmanager

import numpy as np
import torch


def same(a, b, atol: float = 1e-6) -> bool:
    """Equal up to ``atol``: numbers, arrays, tensors, and lists/tuples/dicts of them (NaN == NaN)."""
    if isinstance(a, dict) or isinstance(b, dict):
        return (isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys()
                and all(same(a[k], b[k], atol) for k in a))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and not _numeric(a) + _numeric(b):
        return len(a) == len(b) and all(same(x, y, atol) for x, y in zip(a, b))
    try:
        x, y = _array(a), _array(b)
        return x.shape == y.shape and bool(np.allclose(x, y, atol=atol, rtol=1e-5, equal_nan=True))
    except (TypeError, ValueError):
        return a == b


def _numeric(seq) -> bool:
    return all(isinstance(v, (int, float, bool, np.number)) for v in seq)


def _array(v) -> np.ndarray:
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu().numpy()
    out = np.asarray(v)
    if out.dtype == object:
        raise TypeError("not numeric")
    return out.astype(float)


def pick(name: str, yours, reference, probes, agree=same):
    """The function the rest of the notebook should use for exercise ``name``.

    ``yours`` (the student's function, or ``None`` when it is not defined) is used when, for
    every argument tuple in ``probes``, it returns without error and ``agree(yours(*args),
    reference(*args))``; otherwise ``reference`` is. Prints one line saying which and why."""
    why = None
    if yours is None:
        why = "is not defined (was its cell run?)"
    else:
        try:
            for args in probes:
                if not agree(yours(*args), reference(*args)):
                    why = "gives a different answer from the course's on a test input (run its tests to see where)"
                    break
        except NotImplementedError:
            why = "is not solved yet"
        except Exception as e:  # any error in the student's code: report it, carry on with the reference
            why = f"raised {type(e).__name__}: {e}"
    if why is None:
        print(f"{name}: using your answer.")
        return yours
    print(f"{name}: your answer {why} -> the rest of this notebook uses the course's reference.")
    return reference


def _resolve(dotted: str):
    module, _, attr = dotted.rpartition(".")
    return importlib.import_module(module), attr


@contextmanager
def forbid(*dotted_names: str, scope=None):
    """Inside the block, calling any of ``dotted_names`` (e.g. ``"dfcourse.faces.square_box"``)
    raises ``AssertionError`` saying the exercise asks for your own code. Patched in its module
    and wherever the dict ``scope`` (pass ``globals()``) holds the same object under any name."""
    patched = []  # (namespace dict or module, name, original)
    try:
        for dotted in dotted_names:
            module, attr = _resolve(dotted)
            original = getattr(module, attr)

            def refuse(*args, _name=dotted, **kwargs):
                raise AssertionError(f"this exercise asks for your own code: do not call {_name}")

            patched.append((module, attr, original))
            setattr(module, attr, refuse)
            for key, value in list((scope or {}).items()):
                if value is original:
                    patched.append((scope, key, original))
                    scope[key] = refuse
        yield
    finally:
        for where, attr, original in reversed(patched):
            if isinstance(where, dict):
                where[attr] = original
            else:
                setattr(where, attr, original)


def within(atol: float):
    """An ``agree`` for :func:`pick`: :func:`same` with absolute tolerance ``atol``."""
    return lambda a, b: same(a, b, atol)


def same_partition(a: dict, b: dict) -> bool:
    """Whether two ``{item: group label}`` dicts group the same items together (labels may differ)."""
    def blocks(d):
        out: dict = {}
        for item, label in d.items():
            out.setdefault(label, set()).add(item)
        return {frozenset(s) for s in out.values()}
    return a.keys() == b.keys() and blocks(a) == blocks(b)
