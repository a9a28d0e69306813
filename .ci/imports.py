"""The import rules ruff cannot see, checked over the whole tree: no import cycle, and a GPU side that needs
nothing of the bot's.

    python .ci/imports.py [ROOT]

Every import counts, a function's lazy one too (it runs, sooner or later), except those under
``if TYPE_CHECKING:``, which never run. It fails, naming the modules, when

* modules import each other in a circle (each cycle once, as the strongly connected modules), or
* ``bot.gpu`` (the GPU worker's code) reaches, through any chain of imports, a module its
  ``ruff.toml`` keeps out: ruff checks each file's own imports, this their closure.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "cogs", "models", "db")
GPU_SIDE = "bot.gpu"
#: What the GPU side must not load, however indirectly: the bot's jobs, policy, queue, runtime and storage.
KEPT_FROM_GPU = (
    "bot.jobs",
    "bot.policy",
    "bot.workers",
    "bot.runtime",
    "bot.app",
    "bot.settings",
    "db",
    "cogs",
    "discord",
)


def modules(root: Path) -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements that run: everything but the body of ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for orelse in node.orelse:
                yield from _runtime_nodes(orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _runtime_nodes(node)


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules ``name`` imports, as named (third-party ones included, for the GPU side's check)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*anchor, base] if base else anchor)
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            found.add(submodule if submodule in known else base)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one module (or one that imports itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
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
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def reach(graph: dict[str, set[str]], everything: dict[str, set[str]], start: list[str]) -> dict[str, str]:
    """Every module reachable from ``start``, with the module that first imported it (for the chain)."""
    seen = {module: "" for module in start}
    todo = list(start)
    while todo:
        module = todo.pop()
        for target in sorted(everything.get(module, ())):
            for named in _prefixes(target):
                if named not in seen:
                    seen[named] = module
                    if named in graph:
                        todo.append(named)
    return seen


def _prefixes(module: str) -> list[str]:
    """A module and the packages importing it loads: ``a.b.c`` -> ``a``, ``a.b``, ``a.b.c``."""
    parts = module.split(".")
    return [".".join(parts[: n + 1]) for n in range(len(parts))]


def chain(parents: dict[str, str], module: str) -> str:
    links = [module]
    while parents.get(links[-1]):
        links.append(parents[links[-1]])
    return " -> ".join(reversed(links))


def main(argv: list[str]) -> int:
    known = modules(Path(argv[0]) if argv else ROOT)
    everything = {name: imports(name, path, known) for name, path in known.items()}
    graph = {name: {target for target in found if target in known} for name, found in everything.items()}
    problems = [f"import cycle: {' <-> '.join(component)}" for component in cycles(graph)]
    gpu = [name for name in known if name == GPU_SIDE or name.startswith(GPU_SIDE + ".")]
    parents = reach(graph, everything, gpu)
    for module in sorted(parents):
        if any(module == kept or module.startswith(kept + ".") for kept in KEPT_FROM_GPU):
            problems.append(f"the GPU side loads {module}: {chain(parents, module)}")
    for problem in problems:
        print(problem)
    if not problems:
        print(f"imports: {len(known)} modules, no cycle; {GPU_SIDE} loads none of {', '.join(KEPT_FROM_GPU)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
