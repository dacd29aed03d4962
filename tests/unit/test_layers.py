"""The house rule of registry/, read from its imports (TYPE_CHECKING ones too): each
module imports from its own layer or those below, never from one above; api/ and web/
do not import each other, nor metadata/ (the services are their way to the data); and
no module reaches itself through others (no circle). docs/architecture.md tells why."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import registry

ROOT = Path(registry.__file__).parent

# From the top. A module's layer is its first name below `registry` (a package, or a
# module at the top); what no layer names is the base, below them all.
LAYERS: list[set[str]] = [
    {"cli"},
    {"app", "server"},
    {"api", "web"},
    {"requests"},
    {"wiring"},
    {"proxy", "replication"},
    {"services", "auth"},
    {"metadata", "storage"},
]
APART = {"api": {"web", "metadata"}, "web": {"api", "metadata"}}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def imports(name: str) -> Iterator[str]:
    """The registry modules `name` imports (a name imported from a package is its
    submodule if it is one)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] == "registry")
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            if module.split(".")[0] != "registry":
                continue
            for alias in node.names:
                full = f"{module}.{alias.name}"
                yield full if full in MODULES else module


def part(name: str) -> str:
    return name.split(".")[1] if "." in name else name


def layer(name: str) -> int:
    return next((i for i, names in enumerate(LAYERS) if part(name) in names), len(LAYERS))


def test_no_module_imports_from_a_layer_above_or_from_what_it_stays_apart_from() -> None:
    wrong = []
    for name in MODULES:
        for target in imports(name):
            if layer(target) < layer(name):
                wrong.append(f"{name} imports {target}, a layer above it")
            elif part(target) in APART.get(part(name), set()):
                wrong.append(f"{name} imports {target}: {part(name)}/ stays apart from it")
    assert wrong == []


def test_no_circle() -> None:
    graph = {name: set(imports(name)) & set(MODULES) for name in MODULES}
    circles = []
    # Tarjan's strongly connected components: any of more than one module is a circle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    assert circles == []


def test_the_rule_reads_every_module() -> None:
    # A module that the walk cannot place, or a layer that names nothing, would make the
    # rule hold vacuously.
    assert len(MODULES) > 100
    for names in LAYERS:
        assert any(part(m) in names for m in MODULES), names
