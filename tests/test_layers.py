"""Layers the right way up: building a model does not load data preparation, and the package
never reads the benchmarks' folder (what a notebook shows, a notebook or the package makes)."""
import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "dfcourse"
DATA_PREP = ("dfcourse.course", "dfcourse.demo", "dfcourse.ffpp")


def _loaded_by(module: str) -> list[str]:
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.startswith('dfcourse.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return ast.literal_eval(out.strip())


def test_importing_models_loads_no_data_preparation():
    loaded = _loaded_by("dfcourse.models")
    assert "dfcourse.models" in loaded  # the probe saw the import it is about
    assert not set(DATA_PREP) & set(loaded), f"dfcourse.models pulls in {sorted(set(DATA_PREP) & set(loaded))}"


def test_the_harness_does_load_data_preparation():
    """The probe can fail: the notebook harness itself imports the data preparation."""
    assert set(DATA_PREP) <= set(_loaded_by("dfcourse.course"))


def _strings_outside_docstrings(tree) -> list[str]:
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def test_no_module_reads_the_benchmarks_folder():
    readers = {p.name: s for p in sorted(PKG.glob("*.py")) for s in _strings_outside_docstrings(ast.parse(p.read_text()))
               if "benchmarks" in s}
    assert not readers, f"package code names the benchmarks folder: {readers}"


def test_the_benchmarks_probe_finds_a_path_read():
    tree = ast.parse('"""doc: benchmarks/x.py"""\nPATH = ROOT / "benchmarks" / "results"\n')
    assert sorted(_strings_outside_docstrings(tree)) == ["benchmarks", "results"]
