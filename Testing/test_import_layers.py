"""The engine's imports point down one list of layers, without cycles; what the Slicer GUI loads stays light.

Issue 13. The import graph is read from the source with `ast`, not by importing:
every `import` / `from ... import` of a VirtualContrastTraining module, at
module level and inside functions (an in-function import is still a
dependency, it only hides a cycle), absolute or relative. `from P import name`
points at the submodule P.name when there is one, else at P itself. The
implicit import of a parent package's __init__ is not counted (a package's
__init__ that re-exports its children would otherwise look like a cycle with
each of them); `importlib.import_module` of a computed name (cli -> commands,
recipes -> the recipe classes) is not seen, and points down anyway.

The layers follow the data path, lowest first (LAYERS below). The cut:
- core: the package's __init__ (version, the one versions record of models and
  evaluations, one variable name), errors, atomic file writes, the
  progress-event protocol (with the tee of a child job's events) and the
  device list: no project imports but each other, used by every later stage
  and by the Slicer module.
- data: reading, writing, importing and preparing images and manifests. It
  knows nothing of training configuration: a pipeline gets its numbers as
  arguments (PatchPipeline.from_config reads the fields of a config it is
  given, it does not import config).
- config: the TrainConfig schema, the registries of names and the preset catalogue. Above
  data because a config names data's settings (windows, preprocessing) and
  is checked with data's parsers; below models because networks are built
  from a TrainConfig.
- models, then checkpoints (they build the network a sidecar names), then
  recipes (networks + losses of one method).
- train | synthesis: siblings, neither imports the other (synthesis holds the
  predict loop and the synthetic-DES export; train the loop and the dataset
  pipelines of recipes).
- evaluation: everything after synthesis (metrics, baselines, summaries,
  statistics, the evaluation folder, reader study, figures, HTML, report). It
  runs a model through synthesis but never imports train (FORBIDDEN) nor
  compare (above it).
- compare: k-fold runs of presets, training and evaluating each.
- commands (argparse front ends), then cli and __main__.
Imports inside a layer are allowed (the cycle test catches loops), except
between the sibling groups of one layer.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

from fresh_slicer import NOT_BUNDLED

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "VirtualContrastTraining"

# Lowest first. Each layer: {group: module names, relative to the package}; a name covers its submodules.
# "" is the package's own __init__.
LAYERS: list[dict[str, tuple[str, ...]]] = [
    {"core": ("", "errors", "atomic", "events", "console", "devices", "distributed", "execution", "synthetic_wording")},
    {"data": ("data",)},
    {"config": ("config",)},
    {"models": ("models",)},
    {"checkpoints": ("checkpoints",)},
    {"recipes": ("recipes",)},
    {"train": ("train", "training_progress", "estimate"), "synthesis": ("synthesis", "synthetic_export")},
    {"evaluation": ("evaluation",)},
    {"compare": ("compare",)},
    {"commands": ("commands",)},
    {"cli": ("cli", "__main__")},
]
# (importing group, imported group): forbidden although the imported group is lower.
FORBIDDEN = {("evaluation", "train"): "evaluation runs a model through synthesis; it never trains"}

# Known violations, to shrink to nothing (issue 13). Each: its reason and what removes it.
KNOWN_UPWARD: dict[tuple[str, str], str] = {}
KNOWN_CYCLES: dict[frozenset[str], str] = {}

# What Slicer's own process may not import at load (a fresh Slicer 5.10 lacks them: Testing/fresh_slicer.py).
HEAVY = {root for roots in NOT_BUNDLED.values() for root in roots}


# ---------------------------------------------------------------------------------------------- the graph
def _module_files() -> dict[str, Path]:
    """Dotted name -> file, for the engine, the Slicer module's library and the module file itself."""
    files = {}
    for root, base in ((REPO, REPO / PACKAGE), (REPO / "VirtualContrast", REPO / "VirtualContrast" / "VirtualContrastLib")):
        for path in sorted(base.rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            files[".".join(parts)] = path
    files["VirtualContrast"] = REPO / "VirtualContrast" / "VirtualContrast.py"
    return files


FILES = _module_files()


def _known(name: str) -> str | None:
    """`name`, or the nearest enclosing module we have the source of (an attribute import: its module)."""
    while name and name not in FILES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, node: ast.AST, *, module_level_only: bool = False):
    """(imported dotted name, line) of every import under `node`; module level only: not inside a function
    body nor under `if TYPE_CHECKING:`."""
    is_package = FILES[module].name == "__init__.py"
    for child in ast.iter_child_nodes(node):
        if module_level_only and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if module_level_only and isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            continue
        if isinstance(child, ast.Import):
            for alias in child.names:
                yield alias.name, child.lineno
        elif isinstance(child, ast.ImportFrom):
            if child.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[:len(base) - (child.level - 1)]
                source = ".".join(base + ([child.module] if child.module else []))
            else:
                source = child.module
            for alias in child.names:
                submodule = f"{source}.{alias.name}"
                yield (submodule if submodule in FILES else source), child.lineno
        yield from _imports(module, child, module_level_only=module_level_only)


def _tree(module: str) -> ast.Module:
    return ast.parse(FILES[module].read_text(encoding="utf-8"), filename=str(FILES[module]))


def engine_graph() -> dict[str, dict[str, int]]:
    """Engine module (relative name, "" for the package) -> {imported engine module: first line}."""
    graph = {}
    for module in FILES:
        if module != PACKAGE and not module.startswith(PACKAGE + "."):
            continue
        edges: dict[str, int] = {}
        for name, line in _imports(module, _tree(module)):
            target = _known(name) if name.split(".")[0] == PACKAGE else None
            if target and target != module:
                edges.setdefault(_short(target), line)
        graph[_short(module)] = edges
    return graph


def _short(module: str) -> str:
    return module[len(PACKAGE) + 1:] if module != PACKAGE else ""


def _layer_of(module: str) -> tuple[int, str]:
    """(layer index, group) of a relative module name; KeyError for a module no layer names."""
    best = None
    for index, layer in enumerate(LAYERS):
        for group, names in layer.items():
            for name in names:
                if module == name or (name and module.startswith(name + ".")):
                    if best is None or len(name) > best[2]:
                        best = (index, group, len(name))
    if best is None:
        raise KeyError(module)
    return best[0], best[1]


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _one_loop(graph: dict[str, dict[str, int]], component: list[str]) -> list[str]:
    """A shortest loop through the first module of a cycle, for the message: a -> b -> ... -> a."""
    members, start = set(component), component[0]
    paths, seen = [[start]], {start}
    while paths:
        path = paths.pop(0)
        for w in sorted(graph[path[-1]]):
            if w == start:
                return path + [start]
            if w in members and w not in seen:
                seen.add(w)
                paths.append(path + [w])
    return component


# ---------------------------------------------------------------------------------------------- the tests
def test_every_engine_module_has_a_layer():
    graph = engine_graph()
    assert len(graph) > 40, "the graph was not built"
    unplaced = []
    for module in graph:
        try:
            _layer_of(module)
        except KeyError:
            unplaced.append(module or "__init__")
    assert not unplaced, f"modules no layer names (add them to LAYERS): {unplaced}"


def test_no_import_cycles():
    graph = engine_graph()
    cycles = {frozenset(c): c for c in _cycles(graph)}
    new = [f"{', '.join(c)}: " + " -> ".join(_one_loop(graph, c)) for key, c in cycles.items()
           if key not in KNOWN_CYCLES]
    assert not new, "import cycles among the engine's modules:\n  " + "\n  ".join(new)
    gone = [sorted(key) for key in KNOWN_CYCLES if key not in cycles]
    assert not gone, f"cycles in KNOWN_CYCLES that are gone (or changed): remove or update them: {gone}"


def test_imports_point_down_the_layers():
    graph = engine_graph()
    found = {}
    for importer, edges in graph.items():
        layer, group = _layer_of(importer)
        for imported, line in edges.items():
            to_layer, to_group = _layer_of(imported)
            if to_layer > layer:
                why = f"up: {group} (layer {layer}) imports {to_group} (layer {to_layer})"
            elif to_layer == layer and to_group != group:
                why = f"sideways: sibling groups {group} and {to_group} of layer {layer}"
            elif (group, to_group) in FORBIDDEN:
                why = f"forbidden: {group} imports {to_group} ({FORBIDDEN[group, to_group]})"
            else:
                continue
            found[importer or "__init__", imported or "__init__"] = f"{importer}:{line} imports {imported}: {why}"
    new = [text for key, text in sorted(found.items()) if key not in KNOWN_UPWARD]
    assert not new, "imports against the layer list (LAYERS above):\n  " + "\n  ".join(new)
    gone = [key for key in KNOWN_UPWARD if key not in found]
    assert not gone, f"KNOWN_UPWARD entries that no longer occur: remove them: {gone}"


def test_the_layer_list_names_only_existing_modules():
    graph = engine_graph()
    for layer in LAYERS:
        for names in layer.values():
            for name in names:
                assert any(m == name or m.startswith(name + ".") for m in graph), f"LAYERS names {name!r}: no such module"


def gui_load_closure() -> set[str]:
    """Every project module that loading VirtualContrast.py runs: its module-level imports, followed through
    VirtualContrastLib and the engine, with the parent packages' __init__ each import runs."""
    seen, todo = set(), ["VirtualContrast"]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        for name, _ in _imports(module, _tree(module), module_level_only=True):
            target = _known(name)
            while target:
                todo.append(target)
                target = _known(target.rpartition(".")[0]) if "." in target else None
    return seen


def test_what_the_slicer_gui_loads_imports_nothing_heavy_at_module_level():
    """The modules Slicer's process runs when the module loads import torch, monai, matplotlib (or anything else
    a fresh Slicer lacks) only inside the functions that need them."""
    closure = gui_load_closure()
    assert {"VirtualContrastLib.logic", f"{PACKAGE}.evaluation.metrics", f"{PACKAGE}.data.imageio"} <= closure
    heavy = []
    for module in sorted(closure):
        for name, line in _imports(module, _tree(module), module_level_only=True):
            if name.partition(".")[0] in HEAVY:
                heavy.append(f"{module}:{line} imports {name}")
    assert not heavy, "module-level imports of heavy packages in what the Slicer GUI loads:\n  " + "\n  ".join(heavy)


# Modules of the Slicer application itself: they exist only in a running Slicer (PyTorchUtils only with the
# PyTorch extension), so the module imports them where it runs inside Slicer.
SLICER_APPLICATION = {"slicer", "qt", "ctk", "vtk", "SampleData", "PyTorchUtils", "DICOMLib"}


def heavy_behind(name: str, seen: set[str] | None = None) -> set[str]:
    """The heavy packages (or "Slicer application") that importing `name` loads: itself, or through the
    module-level imports of the project modules it runs."""
    root = name.partition(".")[0]
    if root in HEAVY:
        return {root}
    if root in SLICER_APPLICATION:
        return {"Slicer application"}
    target, seen = _known(name), set() if seen is None else seen
    if not target or target in seen:
        return set()
    seen.add(target)
    return set().union(*(heavy_behind(n, seen) for n, _ in _imports(target, _tree(target), module_level_only=True)))


LAZY = re.compile(r"#\s*lazy:\s*(.+?)\s*$")


def late_imports() -> list[str]:
    """Every import inside a function (or under TYPE_CHECKING) without a true reason to wait there: it must
    load a heavy package and say which on its line or the line above (`# lazy: torch`)."""
    found = []
    for module in FILES:
        tree, lines = _tree(module), FILES[module].read_text(encoding="utf-8").splitlines()
        early = {line for _, line in _imports(module, tree, module_level_only=True)}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or node.lineno in early:
                continue
            where = f"{FILES[module]}:{node.lineno} {ast.unparse(node)}"
            behind = set().union(*(heavy_behind(n) for n, _ in _imports(module, ast.Module([node], []))))
            said = LAZY.search(lines[node.end_lineno - 1]) or LAZY.search(lines[node.lineno - 2])
            if not behind:
                found.append(f"{where}: loads nothing heavy, move it to the top")
            elif not said or {w.strip() for w in said.group(1).split(",")} != behind:
                found.append(f"{where}: say why it waits: '# lazy: {', '.join(sorted(behind))}'")
    return found


def test_imports_wait_inside_a_function_only_for_a_heavy_package_and_say_so():
    """Top-of-file imports by default. An import waits inside the function that needs it only when it loads a
    package a fresh Slicer lacks (torch, monai, matplotlib, ...: HEAVY), itself or through a project module,
    so that the Slicer GUI and `virtual-contrast --help` start without them; or a module of the Slicer
    application. Each says which, and the test checks that it is true."""
    found = late_imports()
    assert not found, "imports inside functions:\n  " + "\n  ".join(found)


@pytest.mark.parametrize("source, expected", [
    ("from VirtualContrastTraining.models import networks", {"models.networks"}),
    ("from VirtualContrastTraining import __version__", {""}),
    ("def f():\n    from .evaluation.significance import describe", {"evaluation.significance"}),
    ("from ..errors import InputError", {"errors"}),
])
def test_graph_reads_each_form_of_import(source, expected, monkeypatch, tmp_path):
    """The reader sees absolute, relative, in-function and attribute imports (checked on a fake module)."""
    fake = tmp_path / "fake.py"
    fake.write_text(source, encoding="utf-8")
    name = f"{PACKAGE}.data.fake" if source.startswith("from ..") else f"{PACKAGE}.fake"
    monkeypatch.setitem(FILES, name, fake)
    got = {_short(_known(n)) for n, _ in _imports(name, _tree(name))}
    assert got == expected


@pytest.mark.parametrize("body, complaint", [
    ("from VirtualContrastTraining.errors import InputError", "loads nothing heavy"),
    ("import torch", "say why it waits: '# lazy: torch'"),
    ("import torch  # lazy: matplotlib", "say why it waits: '# lazy: torch'"),
    ("from VirtualContrastTraining.models import networks  # lazy: torch", None),
])
def test_late_imports_are_refused_unless_heavy_and_said(body, complaint, monkeypatch, tmp_path):
    """The late-import rule on a fake module: a light import inside a function, or a heavy one without its
    true reason, is reported."""
    fake = tmp_path / "fake.py"
    fake.write_text(f"def f():\n    {body}\n", encoding="utf-8")
    monkeypatch.setattr(sys.modules[__name__], "FILES", {**FILES, f"{PACKAGE}.fake": fake})
    found = [f for f in late_imports() if "fake.py" in f]
    assert (found == []) if complaint is None else (len(found) == 1 and complaint in found[0])
