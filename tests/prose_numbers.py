"""Numbers in a notebook's prose must be ones its run shows.

A decimal number (``0.98``) or a percentage (``43 %``) in a markdown cell is *backed* when a
number in the notebook's outputs, in its ``parameters`` cell or in an exercise's cells (the
specification a task text quotes) rounds to it, or when its paragraph cites a published source
(``Author et al.`` or a year in parentheses):
then it is the source's number, not this run's; or when its paragraph says "(made-up
numbers)", as an exercise's hypothetical does. Integers are not checked (epochs, pixels,
notebook numbers).
"""
from __future__ import annotations

import re

DECIMAL = re.compile(r"(?<![\w.])(\d+\.\d+)(?![\w.]*\d)")
PERCENT = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s?%")
CITATION = re.compile(r"et al\.|\([^()]*\b(?:19|20)\d\d[a-z]?\)|\(made-up numbers\)")
ANY_NUMBER = re.compile(r"(?<![\w])-?\d+(?:\.\d+)?(?:[eE]-?\d+)?")


def _text(cell) -> str:
    src = cell["source"]
    return src if isinstance(src, str) else "".join(src)


def _outputs(cell) -> str:
    parts = []
    for o in cell.get("outputs", []):
        t = o.get("text", "")
        parts.append(t if isinstance(t, str) else "".join(t))
        for mime in ("text/plain", "text/markdown", "text/html"):
            v = o.get("data", {}).get(mime, "")
            parts.append(v if isinstance(v, str) else "".join(v))
    return "\n".join(parts)


def _quotable(cell) -> bool:
    """The parameters cell, or an exercise's answer or tests cell (nbgrader metadata)."""
    meta = cell.get("metadata", {})
    grader = meta.get("nbgrader", {})
    return "parameters" in meta.get("tags", []) or bool(grader.get("solution") or grader.get("grade"))


def shown_numbers(nb) -> set[float]:
    """Every number in the notebook's outputs, its parameters cell and its exercises' cells."""
    text = "\n".join((_text(c) if _quotable(c) else "") + "\n" + _outputs(c)
                     for c in nb["cells"] if c["cell_type"] == "code")
    out = set()
    for m in ANY_NUMBER.findall(text):
        try:
            out.add(float(m))
        except ValueError:
            pass
    return out


def _backed(value: float, decimals: int, shown: set[float]) -> bool:
    return any(round(x, decimals) == round(value, decimals) for x in shown)


def unbacked_numbers(nb) -> list[str]:
    """``"cell <id>: <number> in '<context>'"`` for each number in prose that nothing shows."""
    shown, bad = shown_numbers(nb), []
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        for para in re.split(r"\n\s*\n", _text(cell)):
            if CITATION.search(para):
                continue
            found = [(m.group(1), False, m.start()) for m in DECIMAL.finditer(para)
                     if not para[m.end():m.end() + 2].lstrip().startswith("%")]
            found += [(m.group(1), True, m.start()) for m in PERCENT.finditer(para)]
            for num, percent, at in found:
                d = len(num.split(".")[1]) if "." in num else 0
                v = float(num)
                ok = _backed(v, d, shown) or (percent and _backed(v / 100, d + 2, shown))
                if not ok:
                    ctx = para[max(0, at - 40):at + 30].replace("\n", " ")
                    bad.append(f"cell {cell.get('id', '?')}: {num}{'%' if percent else ''} in '...{ctx}...'")
    return bad
