"""The package's shape: an acyclic import graph, no imports hidden in functions to dodge
one, and module docstrings whose "Used in" lines are true."""
import ast
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "dfcourse"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _module_imports(tree, module: str, top_level: bool):
    """dfcourse modules imported by ``tree``: at module level, or inside functions."""
    nodes = tree.body if top_level else [n for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef,
                                                                                        ast.AsyncFunctionDef))
                                         for n in ast.walk(f)]
    out = set()
    for n in nodes:
        if isinstance(n, ast.ImportFrom):
            if n.level == 1:
                out |= {n.module} if n.module else {a.name for a in n.names}
            elif n.module and n.module.startswith("dfcourse"):
                rest = n.module.split(".", 1)
                out |= {rest[1]} if len(rest) > 1 else {a.name for a in n.names}
        elif isinstance(n, ast.Import):
            out |= {a.name.split(".", 1)[1] for a in n.names if a.name.startswith("dfcourse.")}
    modules = {p.stem for p in PKG.glob("*.py")}
    return {m for m in out if m in modules and m != module}


def _graph(top_level=True):
    return {p.stem: _module_imports(ast.parse(p.read_text()), p.stem, top_level) for p in PKG.glob("*.py")}


def test_import_graph_has_no_cycle():
    graph, state, path = _graph(), {}, []

    def visit(m):
        state[m] = "active"
        path.append(m)
        for n in sorted(graph[m]):
            assert state.get(n) != "active", f"import cycle: {' -> '.join(path[path.index(n):] + [n])}"
            if n not in state:
                visit(n)
        path.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_no_package_imports_inside_functions():
    hidden = {m: sorted(deps) for m, deps in _graph(top_level=False).items() if deps}
    assert not hidden, f"function-level imports of dfcourse modules: {hidden}"


def _notebook_imports(path) -> set[str]:
    src = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
    src = "\n".join(line for line in src.splitlines() if not line.lstrip().startswith(("%", "!")))
    tree = ast.parse(src)
    return _module_imports(ast.Module(body=list(ast.walk(tree)), type_ignores=[]), "", top_level=True)


def test_used_in_lines_are_true_both_ways():
    """"Used in notebooks 02, 04 and 05" in a module docstring: each of those notebooks
    imports the module (directly), and a module a notebook imports says so in such a line."""
    imports = {p.stem[:2]: _notebook_imports(p) for p in NOTEBOOKS}
    wrong = []
    for p in sorted(PKG.glob("*.py")):
        doc = ast.get_docstring(ast.parse(p.read_text())) or ""
        m = re.search(r"Used in (every notebook|notebooks?[^.;]*)", doc.replace("\n", " "))
        claimed = set() if not m else set(imports) if m.group(1) == "every notebook" else set(
            re.findall(r"\b(0\d)", m.group(1)))
        users = {n for n, modules in imports.items() if p.stem in modules}
        wrong += [f"{p.stem} not imported by notebook {n}" for n in sorted(claimed - users)]
        wrong += [f"{p.stem} imported by notebook {n}, not in its 'Used in' line" for n in sorted(users - claimed)]
    assert not wrong, wrong



def _parameters(path) -> dict:
    cell = next(c for c in json.loads(path.read_text())["cells"] if "parameters" in c["metadata"].get("tags", []))
    return {n.targets[0].id: ast.literal_eval(n.value) for n in ast.parse("".join(cell["source"])).body}


def test_recipe_defaults_are_the_notebooks_parameters():
    """A later notebook run alone trains what the earlier notebook would have: same defaults."""
    from dfcourse import recipes

    for prefix, defaults in (("02", recipes.NB02), ("03", recipes.NB03), ("04", recipes.NB04)):
        params = _parameters(next(p for p in NOTEBOOKS if p.stem.startswith(prefix)))
        differ = {k: (v, params.get(k.upper())) for k, v in defaults.items() if params.get(k.upper(), object()) != v}
        assert not differ, f"notebook {prefix}: recipe default vs parameters cell: {differ}"
