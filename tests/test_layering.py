"""The package's layers: no import cycle, and the bottom layer (configs and the method registry,
storage, environment) needs no torch, so building and hashing a config or reading a record is instant.

The import graph is read from the source with `ast`: an edge `a -> b` for every import of
`distill_lib.b` in `distill_lib/a.py`, module-level (run when `a` is imported; `if TYPE_CHECKING:`
blocks excluded) or inside a function (run when it is called)."""
import ast
import subprocess
import sys
import typing
from pathlib import Path

import pytest

import distill_lib

PACKAGE = Path(distill_lib.__file__).parent
#: A subpackage (`methods`, one file per method) is one node of the graph: all its files' imports.
PACKAGES = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))
MODULES = sorted([p.stem for p in PACKAGE.glob("*.py")] + PACKAGES)

#: Modules that import nothing of the package, not even inside a function: every other layer
#: builds on them.
FOUNDATION = ("env", "names", "schema", "storage")
#: The configs, built on the foundation's schema engine and name sets: they import only each other and
#: the foundation (`config` is the facade that re-exports them all).
CONFIG_LAYER = ("config", "eval_config", "layer_choice", "methods", "run_config", "study_config")
#: The training side: the loop, what runs at its hook points, its checkpoints and launch, `train`'s
#: set-up. The model side (models and what is done to them: truncation, healing, width pruning,
#: objectives and losses, FLOPs) is below it and imports none of it, not even inside a function.
TRAINING_SIDE = ("callbacks", "checkpoint", "launch", "loop", "train")
MODEL_SIDE = ("flops", "healing", "losses", "models", "objectives", "truncate", "width")


def _imported(node: ast.AST) -> list[str]:
    """The package modules an import statement names."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
        base = ("distill_lib" + (f".{node.module}" if node.module else "")) if node.level else (node.module or "")
        names = [base] + ([f"{base}.{alias.name}" for alias in node.names] if base == "distill_lib" else [])
    else:
        return []
    parts = [name.split(".") for name in names]
    return [p[1] for p in parts if p[0] == "distill_lib" and len(p) > 1 and p[1] in MODULES]


def import_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(module-level edges, all edges) of every module of the package."""
    module_level = {m: set() for m in MODULES}
    everything = {m: set() for m in MODULES}

    def visit(node: ast.AST, module: str, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            for target in _imported(child):
                if target != module:
                    everything[module].add(target)
                    if not inner:
                        module_level[module].add(target)
            visit(child, module, inner)

    for module in MODULES:
        files = sorted((PACKAGE / module).glob("*.py")) if module in PACKAGES else [PACKAGE / f"{module}.py"]
        for path in files:
            visit(ast.parse(path.read_text()), module, False)
    return module_level, everything


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(component)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def test_the_graph_reader_sees_both_kinds_of_import():
    module_level, everything = import_graph()
    assert "config" in module_level["runs"] and "storage" in module_level["runs"]
    assert "train" in everything["runs"] and "train" not in module_level["runs"]  # inside get_or_train
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


def test_no_import_cycle_among_module_level_imports():
    module_level, _ = import_graph()
    assert cycles(module_level) == []


def test_no_import_cycle_at_all_function_level_imports_included():
    _, everything = import_graph()
    found = [sorted(component) for component in cycles(everything)]
    assert found == [], f"import cycles (function-level imports included): {found}"


@pytest.mark.parametrize("module", FOUNDATION)
def test_foundation_modules_import_nothing_of_the_package(module):
    _, everything = import_graph()
    assert everything[module] == set()


@pytest.mark.parametrize("module", CONFIG_LAYER)
def test_config_modules_import_only_each_other_and_the_foundation(module):
    _, everything = import_graph()
    assert everything[module] <= set(FOUNDATION) | set(CONFIG_LAYER)


@pytest.mark.parametrize("module", MODEL_SIDE)
def test_the_model_side_imports_nothing_of_the_training_side(module):
    _, everything = import_graph()
    assert not everything[module] & set(TRAINING_SIDE), sorted(everything[module] & set(TRAINING_SIDE))


def test_configs_are_built_checked_and_hashed_without_torch():
    code = """
import sys
from distill_lib.config import InitConfig, RunConfig, TrainConfig, WidthConfig, from_dict, to_dict
from distill_lib.runs import run_dir
from distill_lib.storage import content_hash
import distill_lib.env

run = RunConfig(name="x", teacher="t", init=InitConfig(kind="truncate", strategy="angular", drop=2),
                train=TrainConfig(objective="kd", kd_divergence="jsd"), width=WidthConfig())
assert from_dict(RunConfig, to_dict(run)) == run
print(run_dir(run).name, content_hash(to_dict(run)))
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "numpy"))
assert not loaded, loaded
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_the_name_sets_are_the_configs():
    from distill_lib import config, losses, models, truncate

    assert tuple(models.FAMILIES) == config.FAMILY_NAMES == typing.get_args(config.Family)
    assert truncate.STRATEGIES is config.STRATEGIES and losses.DIVERGENCES is config.DIVERGENCES
    assert set(config.PAPER_STRATEGIES) | set(config.IMPORTANCE_STRATEGIES) <= set(config.STRATEGIES)
    from distill_lib.study import METHODS

    assert tuple(METHODS) == config.METHODS
