"""Which modules of a Python source tree import given top-level packages when they are imported.

vllm-pascal leaves packages out of vLLM's requirements that no Pascal path uses (FlashInfer, CuTe DSL,
TileLang, ...). That is only safe if vLLM imports them lazily: inside a function, behind a
module-level ``if has_x():`` guard, in a ``try`` block or under ``TYPE_CHECKING``. This module reads
every ``*.py`` of the tree with :mod:`ast` and follows the imports that run at module import time
(unconditional top-level ``import``/``from``, and the parent packages Python imports first), so a
test can say which modules would raise ImportError without them, and that the entry points a Pascal
user runs reach none of those.

Limits (on purpose): a module-level ``if`` counts as a guard whatever its test; ``importlib`` and
``__import__`` calls are not followed; a ``from pkg import name`` counts as importing ``pkg.name``
when that is a module of the tree, else ``pkg``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModuleGraph:
    """Module-level import edges of one tree: module -> (tree modules, external top-level names)."""

    internal: dict[str, frozenset[str]]
    external: dict[str, frozenset[str]]

    @property
    def modules(self) -> frozenset[str]:
        return frozenset(self.internal)


@dataclass(frozen=True)
class Reach:
    """``module`` imports ``package`` at import time, through ``chain`` (module first, package last)."""

    module: str
    package: str
    chain: tuple[str, ...]


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports_at_import_time(tree: ast.Module, name: str, is_package: bool) -> list[str]:
    """Dotted names imported by the statements that run when the module is imported."""
    out: list[str] = []
    package = name if is_package else name.rpartition(".")[0]

    def visit(body: Iterable[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                out.extend(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                out.append(module)
                out.extend(f"{module}.{a.name}" for a in node.names if a.name != "*")
            elif isinstance(node, ast.ClassDef):
                visit(node.body)  # a class body runs at import time too
            # if / try / with / function bodies: guarded or deferred, not followed

    visit(tree.body)
    return out


def build_graph(root: Path, top: str) -> ModuleGraph:
    """The import graph of package ``top`` under ``root`` (e.g. an unpacked vLLM sdist and "vllm")."""
    paths = {module_name(root, p): p for p in sorted((root / top).rglob("*.py"))}
    internal: dict[str, frozenset[str]] = {}
    external: dict[str, frozenset[str]] = {}
    for name, path in paths.items():
        tree = ast.parse(path.read_bytes(), filename=str(path))
        inside: set[str] = set()
        outside: set[str] = set()
        for dotted in _imports_at_import_time(tree, name, path.name == "__init__.py"):
            head = dotted.split(".")[0]
            if head != top:
                if head:
                    outside.add(head)
                continue
            parts = dotted.split(".")
            for k in range(len(parts), 0, -1):  # the longest prefix that is a module of the tree
                candidate = ".".join(parts[:k])
                if candidate in paths:
                    inside.add(candidate)
                    break
        parts = name.split(".")
        inside.update(".".join(parts[:k]) for k in range(1, len(parts)) if ".".join(parts[:k]) in paths)
        inside.discard(name)
        internal[name] = frozenset(inside)
        external[name] = frozenset(outside)
    return ModuleGraph(internal, external)


def reaches(graph: ModuleGraph, module: str, packages: Iterable[str]) -> Reach | None:
    """The first import chain from ``module`` to one of ``packages`` at import time, if any."""
    wanted = frozenset(packages)
    if module not in graph.internal:
        raise KeyError(f"{module} is not a module of the tree")
    seen: set[str] = set()
    stack: list[tuple[str, tuple[str, ...]]] = [(module, (module,))]
    while stack:  # depth-first, in sorted order, so the chain reported is stable
        current, chain = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        hit = sorted(graph.external[current] & wanted)
        if hit:
            return Reach(module, hit[0], (*chain, hit[0]))
        for nxt in sorted(graph.internal[current], reverse=True):
            if nxt not in seen:
                stack.append((nxt, (*chain, nxt)))
    return None


def importers(graph: ModuleGraph, packages: Iterable[str]) -> dict[str, Reach]:
    """Every module of the tree whose import would import one of ``packages``."""
    wanted = tuple(packages)
    out = {}
    for module in sorted(graph.modules):
        hit = reaches(graph, module, wanted)
        if hit is not None:
            out[module] = hit
    return out
