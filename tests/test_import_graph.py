"""The package's import graph follows the layer diagram of docs/ARCHITECTURE.md.

Every module under ``src/modaltune`` is parsed with :mod:`ast` (no import runs), and every
``import`` / ``from ... import`` is collected, at module level and inside functions alike (a
function-level import is still a dependency, only a deferred one). Relative imports are resolved.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "modaltune"

#: layer bands, lowest first: a module may import its own band and the bands below it
BANDS: list[set[str]] = [
    {"modaltune", "errors", "fileio", "registry", "config", "quiet", "resources"},
    {"data"},
    {"layers", "encoders", "heads", "losses", "evaluation", "adapters", "preprocess", "testing"},
    {"modaltune.modaltune", "methods"},
    {"training", "pretrain"},
    {"interpret", "analysis", "benchmark", "reports"},
    {"cli", "demo", "doctor"},
]
#: packages that must never import the benchmark layer or the CLI
BELOW_BENCHMARK = ("data", "encoders", "layers", "adapters", "heads", "losses", "evaluation", "modaltune.modaltune",
                   "methods", "training", "pretrain", "preprocess", "interpret", "analysis", "reports")
#: the one documented upward import: the lazy re-export of run_benchmark (inside a function)
ALLOWED_UP = {("modaltune.training.runner", "modaltune.benchmark")}


@dataclass(frozen=True)
class Edge:
    source: str  # importing module, e.g. "modaltune.training.trainer"
    target: str  # imported module, e.g. "modaltune.fileio"
    line: int
    in_function: bool


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_module(name: str) -> bool:
    base = SRC.parent / name.replace(".", "/")
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _imports(path: Path) -> list[Edge]:
    mod = _module_name(path)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    tree = ast.parse(path.read_text(), filename=str(path))
    # a node is "in a function" when one of its ancestors is a def
    in_fn: set[int] = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_fn.update(id(n) for n in ast.walk(fn) if n is not fn)
    edges = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            # ``from modaltune.benchmark import runner`` imports the submodule too
            targets = [stem] + [f"{stem}.{a.name}" for a in node.names if _is_module(f"{stem}.{a.name}")]
        else:
            continue
        edges += [Edge(mod, t, node.lineno, id(node) in in_fn) for t in targets if t == "modaltune" or t.startswith("modaltune.")]
    return edges


def _layer(module: str) -> str:
    """The band name of a module: ``modaltune.modaltune`` for the ModalTune package, else the first
    component below ``modaltune`` (``modaltune`` itself for the package root)."""
    parts = module.split(".")
    if parts[:2] == ["modaltune", "modaltune"]:
        return "modaltune.modaltune"
    return parts[1] if len(parts) > 1 else "modaltune"


def _band(module: str) -> int:
    name = _layer(module)
    return next(i for i, b in enumerate(BANDS) if name in b)


ALL_EDGES = [e for p in sorted(SRC.rglob("*.py")) for e in _imports(p)]


def _is_under(module: str, layer: str) -> bool:
    return module == f"modaltune.{layer}" or module.startswith(f"modaltune.{layer}.")


def test_the_parser_sees_module_and_function_level_imports():
    """Known edges (hand-checked in the sources) so that the graph checks below cannot pass vacuously."""
    edges = {(e.source, e.target, e.in_function) for e in ALL_EDGES}
    assert ("modaltune.benchmark.runner", "modaltune.training.sources", False) in edges
    assert ("modaltune.benchmark.probes", "modaltune.training.trainer", True) in edges
    assert ("modaltune.training.runner", "modaltune.benchmark", True) in edges
    assert len(ALL_EDGES) > 300


def test_every_package_is_in_a_band():
    layers = {_layer(_module_name(p)) for p in SRC.rglob("*.py")}
    missing = sorted(x for x in layers if not any(x in b for b in BANDS))
    assert not missing, f"add {missing} to BANDS (and to the diagram in docs/ARCHITECTURE.md)"


def test_no_module_imports_a_higher_band():
    bad = [f"{e.source}:{e.line} imports {e.target}" for e in ALL_EDGES
           if _band(e.target) > _band(e.source) and (e.source, e.target) not in ALLOWED_UP]
    assert not bad, "imports against the layer diagram:\n" + "\n".join(bad)


@pytest.mark.parametrize("layer", BELOW_BENCHMARK)
def test_nothing_below_benchmark_imports_benchmark_or_cli(layer):
    if layer == "modaltune.modaltune":
        mine = [e for e in ALL_EDGES if _layer(e.source) == layer]
    else:
        mine = [e for e in ALL_EDGES if _is_under(e.source, layer) and _layer(e.source) == layer]
    up = [e for e in mine if any(_is_under(e.target, x) for x in ("benchmark", "cli", "demo"))]
    allowed = [e for e in up if (e.source, e.target) in ALLOWED_UP and e.in_function]
    assert [e for e in up if e not in allowed] == []


def test_the_training_runner_re_export_is_lazy_and_delegates(monkeypatch):
    """``modaltune.training.runner.run_benchmark`` (named by the README) imports the benchmark layer
    only when called, and passes its arguments through unchanged."""
    up = [e for e in ALL_EDGES if e.source == "modaltune.training.runner" and _is_under(e.target, "benchmark")]
    assert up and all(e.in_function for e in up)

    import modaltune.benchmark
    from modaltune.training.runner import run_benchmark

    seen = []
    monkeypatch.setattr(modaltune.benchmark, "run_benchmark", lambda *a, **k: seen.append((a, k)) or "result")
    assert run_benchmark("cfg.yaml", "out", workers=3) == "result"
    assert seen == [(("cfg.yaml", "out"), {"workers": 3})]


def test_the_modaltune_model_package_does_not_import_training():
    bad = [f"{e.source}:{e.line} imports {e.target}" for e in ALL_EDGES
           if _layer(e.source) == "modaltune.modaltune" and _is_under(e.target, "training")]
    assert bad == []


def _method_name_comparisons(path: Path, names: set[str], label: str) -> list[str]:
    """Comparisons (``==``, ``!=``, ``in``, ...) of a *method* with a registered method name: one
    operand is a string literal (or a tuple/list/set of them) equal to a registered name and another
    operand's source text mentions ``method`` (``method_name``, ``cfg.method.name``, ``m.method``).

    Requiring ``method`` in the compared expression keeps names that other registries share (the
    ``abmil`` slide encoder, the ``logistic`` probe) out of the check."""
    hits = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        literals, others = [], []
        for operand in operands:
            consts = operand.elts if isinstance(operand, (ast.Tuple, ast.List, ast.Set)) else [operand]
            lits = [c.value for c in consts if isinstance(c, ast.Constant) and isinstance(c.value, str)]
            (literals if lits and len(lits) == len(consts) else others).append(lits if lits else operand)
        named = sorted({v for lits in literals for v in lits if v in names})
        if named and any("method" in ast.unparse(o).lower() for o in others):
            hits += [f"{label}:{node.lineno} compares a method with the name '{v}'" for v in named]
    return hits


def test_no_module_outside_methods_special_cases_a_method_name():
    """Code outside ``methods/`` (and the ModalTune model package that one method wraps) must not
    branch on a method's registry name: a new method would have to edit it. Only comparisons are
    checked (see :func:`_method_name_comparisons`); names in docstrings, registries, config
    defaults and error texts are fine."""
    from modaltune.methods.registry import list_methods

    names = set(list_methods())
    assert {"modaltune", "abmil"} <= names
    bad = [h for p in sorted(SRC.rglob("*.py"))
           if not any(_is_under(_module_name(p), x) for x in ("methods", "modaltune"))
           for h in _method_name_comparisons(p, names, _module_name(p))]
    assert bad == []


def test_the_method_name_check_finds_a_comparison(tmp_path):
    src = tmp_path / "x.py"
    src.write_text('''"""abmil in a docstring is fine."""
DEFAULT = "coxnet"


def f(cfg, method_name, encoder):
    if encoder == "abmil":  # a slide encoder of the same name: not a method
        return 0
    return method_name != "modaltune" or cfg.method.name in ("coxnet", "other")
''')
    assert _method_name_comparisons(src, {"abmil", "coxnet", "modaltune"}, "x") == [
        "x:8 compares a method with the name 'modaltune'", "x:8 compares a method with the name 'coxnet'"]
