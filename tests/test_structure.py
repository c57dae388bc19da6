"""The package's structure, checked from its source: no import circles, no import from a lower layer to a higher one,
no module over the size limit, and no task named below the task layer.

The import graph is read statically (every `import`/`from ... import` in a module, at any depth, including the lazy
ones inside functions: a lazy import up the layers is still a dependency up the layers). `if TYPE_CHECKING:` blocks
are left out: they exist for annotations only and never run.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ticketlab"

# Bottom to top. A module may import modules of its own layer or of a lower one, never of a higher one.
LAYERS = (
    # presets: configs by name; version: the package version every layer records
    ("foundation", ("errors", "seeds", "store", "registry", "config", "presets", "version")),
    ("building blocks", ("models", "data", "pruning")),
    ("training", ("training",)),
    ("tasks", ("tasks",)),
    ("lottery", ("lottery", "analysis", "export")),
    ("report", ("report",)),
    ("interface", ("cli", "api", "__init__", "__main__")),
)
MAX_LINES = 400
# Modules allowed past MAX_LINES, each with the reason (keep this empty where possible).
LONG_MODULES: dict[str, str] = {}
TASK_NAMES = ("classification", "language", "translation", "rl")
# Layers that must not name a task or a task's data class: they ask the Task object instead.
TASK_BLIND = ("training", "lottery", "analysis", "export", "pruning", "config", "store", "registry")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path, module: str, known: set[str]) -> set[str]:
    """The ticketlab modules `module` imports (a `from package import name` counts name when it is a module)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    is_package = path.name == "__init__.py"

    def visit(node):
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("ticketlab"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = module.split(".") if is_package else module.split(".")[:-1]
                base_parts = base_parts[: len(base_parts) - node.level + 1]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.startswith("ticketlab"):
                for alias in node.names:
                    candidate = f"{base}.{alias.name}"
                    found.add(candidate if candidate in known else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {name for name in found if name in known and name != module}


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(path, name, known) for name, path in modules.items()}


def layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    for rank, (_, tops) in enumerate(LAYERS):
        if top in tops:
            return rank
    raise AssertionError(f"{module} is in no layer: add its top-level name to LAYERS in {__file__}")


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return components


def _package_inits(module: str) -> set[str]:
    """A package's __init__ runs whenever one of its modules is imported; an __init__ that re-exports its own
    modules is not a circle of design, so edges from a package to its own submodules are left out."""
    parts = module.split(".")
    return {".".join(parts[:index]) for index in range(1, len(parts))}


def test_no_import_circles():
    graph = import_graph()
    graph = {name: {target for target in targets if name not in _package_inits(target)}
             for name, targets in graph.items()}
    assert _cycles(graph) == []


def test_no_import_from_a_lower_layer_to_a_higher_one():
    upward = [f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
              for module, targets in import_graph().items() for target in sorted(targets)
              if layer_of(target) > layer_of(module)]
    assert upward == []


def test_no_module_over_the_size_limit():
    long_modules = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    over = {name: lines for name, lines in long_modules.items() if lines > MAX_LINES and name not in LONG_MODULES}
    assert over == {}


def test_lower_layers_name_no_task_and_no_data_class():
    """The lottery, analysis, export, training, pruning and foundation layers ask the Task; they never test a task's
    name or a task's data class."""
    pattern = re.compile(r"""(["'])(%s)\1|\bDataSplits\b""" % "|".join(TASK_NAMES))
    leaks = []
    for name, path in _modules().items():
        top = name.split(".")[1] if "." in name else ""
        if top not in TASK_BLIND:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if pattern.search(code):
                leaks.append(f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}")
    assert leaks == []


def test_the_checker_sees_imports():
    """The graph is not empty by accident: the CLI reaches the config, and the lottery reaches the pruning layer."""
    graph = import_graph()
    assert any(target.startswith("ticketlab.config") for target in graph["ticketlab.cli"] | set().union(
        *(graph[name] for name in graph if name.startswith("ticketlab.cli."))))
    assert any(target.startswith("ticketlab.pruning") for name in graph if name.startswith("ticketlab.lottery")
               for target in graph[name])
