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

import functools
import importlib
import types
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
    raises ``AssertionError`` saying the exercise asks for your own code. Patched in its module,
    wherever the dict ``scope`` (pass ``globals()``) holds it under any name, and inside the
    functions and classes defined in ``scope`` (the student's own): their default arguments,
    closure cells and the globals they name, recursively through the student's other functions,
    and through small lists, tuples and dicts (``functools.partial`` and bound methods that hold
    one are refused whole)."""
    patched = []  # (namespace dict, module, function or closure cell, name, original)
    bad = {}  # id of a forbidden object (or of its code) -> its dotted name
    try:
        for dotted in dotted_names:
            module, attr = _resolve(dotted)
            original = getattr(module, attr)
            bad[id(original)] = dotted
            if getattr(original, "__code__", None) is not None:
                bad[id(original.__code__)] = dotted
            patched.append((module, attr, original))
            setattr(module, attr, _refuse(dotted))
        if scope is not None:
            _Guard(bad, scope, patched).scope()
        yield
    finally:
        for where, attr, original in reversed(patched):
            if isinstance(where, (dict, list)):
                where[attr] = original
            elif isinstance(where, types.CellType):
                where.cell_contents = original
            else:
                setattr(where, attr, original)


def _refuse(dotted: str):
    def refuse(*args, **kwargs):
        raise AssertionError(f"this exercise asks for your own code: do not call {dotted}")
    return refuse


class _Guard:
    """Replaces, for the length of a :func:`forbid` block, every reference to a forbidden object
    that the functions of ``scope`` can reach, and remembers what it replaced in ``patched``."""

    def __init__(self, bad: dict, scope: dict, patched: list):
        self.bad, self.scope_dict, self.patched, self.guarded = bad, scope, patched, set()

    def own(self, obj) -> bool:
        """A function or class the student wrote (defined in the notebook's namespace)."""
        if isinstance(obj, (staticmethod, classmethod)):
            obj = obj.__func__
        if isinstance(obj, types.FunctionType):
            return obj.__globals__ is self.scope_dict
        return isinstance(obj, type) and obj.__module__ == self.scope_dict.get("__name__")

    def reaches(self, obj, depth: int = 0) -> str | None:
        """The dotted name of a forbidden object that ``obj`` is, or holds (not through own functions)."""
        hit = self.bad.get(id(obj)) or self.bad.get(id(getattr(obj, "__code__", None)))
        if hit or depth > 3 or self.own(obj):
            return hit
        if isinstance(obj, functools.partial):
            parts = [obj.func, *obj.args, *obj.keywords.values()]
        elif isinstance(obj, (staticmethod, classmethod)):
            parts = [obj.__func__]
        elif isinstance(obj, types.MethodType):
            parts = [obj.__func__, obj.__self__]
        elif isinstance(obj, (list, tuple, set, frozenset, dict)) and len(obj) <= 64:
            parts = list(obj.values()) if isinstance(obj, dict) else list(obj)
        else:
            return None
        return next((h for h in (self.reaches(p, depth + 1) for p in parts) if h), None)

    def replacement(self, value, depth: int = 0):
        """``value`` itself (an own function, a list or a dict is guarded in place), a tuple with its
        items replaced, or a refusal when it leads to a forbidden object."""
        if self.own(value):
            self.guard(value)
        elif isinstance(value, (list, dict)) and len(value) <= 64 and depth < 3 and id(value) not in self.guarded:
            self.guarded.add(id(value))
            for key, item in list(value.items() if isinstance(value, dict) else enumerate(value)):
                new = self.replacement(item, depth + 1)
                if new is not item:
                    self.patched.append((value, key, item))
                    value[key] = new
        elif isinstance(value, tuple) and len(value) <= 64 and depth < 3 and not self.bad.get(id(value)):
            new = tuple(self.replacement(item, depth + 1) for item in value)
            return new if any(a is not b for a, b in zip(new, value)) else value
        elif hit := self.reaches(value):
            return _refuse(hit)
        return value

    def slot(self, where, key, value, set_value) -> None:
        """Replace, and remember, a value of ``where[key]`` that leads to a forbidden object."""
        new = self.replacement(value)
        if new is not value:
            self.patched.append((where, key, value))
            set_value(new)

    def scope(self) -> None:
        for name, value in list(self.scope_dict.items()):
            self.slot(self.scope_dict, name, value, lambda v, n=name: self.scope_dict.__setitem__(n, v))

    def guard(self, obj) -> None:
        if id(obj) in self.guarded:
            return
        self.guarded.add(id(obj))
        if isinstance(obj, (staticmethod, classmethod)):
            obj = obj.__func__
        if isinstance(obj, type):
            for name, value in list(vars(obj).items()):
                if isinstance(value, property):
                    for f in (value.fget, value.fset):
                        if self.own(f):
                            self.guard(f)
                elif not name.startswith("__") or isinstance(value, types.FunctionType):
                    self.slot(obj, name, value, lambda v, c=obj, n=name: setattr(c, n, v))
            return
        if obj.__defaults__:
            new = tuple(self.replacement(v) for v in obj.__defaults__)
            if any(a is not b for a, b in zip(new, obj.__defaults__)):
                self.patched.append((obj, "__defaults__", obj.__defaults__))
                obj.__defaults__ = new
        for name, value in list((obj.__kwdefaults__ or {}).items()):
            self.slot(obj.__kwdefaults__, name, value, lambda v, d=obj.__kwdefaults__, n=name: d.__setitem__(n, v))
        for cell in obj.__closure__ or ():
            try:
                value = cell.cell_contents
            except ValueError:  # a cell not filled yet
                continue
            self.slot(cell, "cell_contents", value, lambda v, c=cell: setattr(c, "cell_contents", v))
        for name in _names(obj.__code__):
            if name in obj.__globals__:
                value = obj.__globals__[name]
                self.slot(obj.__globals__, name, value, lambda v, g=obj.__globals__, n=name: g.__setitem__(n, v))


def _names(code) -> set:
    """The global (and attribute) names a code object and the code nested in it use."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


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
