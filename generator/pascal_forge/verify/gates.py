"""Find PyTorch's Inductor capability gates in installed files and decide whether they let cc 6.x in.

The gates are comparisons of a device's ``major`` against a constant inside known functions
(torch 2.6.0: ``has_triton``'s CUDA check ``major >= 7`` and ``Scheduler.create_backend``'s
``major < 7``). They are located with ``ast`` (not text matching), so formatting, comments or a
moved line do not matter, and each comparison is evaluated for ``major == 6``: the pytorch-pascal
patches turn the 7 into 6 and nothing else.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

PASCAL_MAJOR = 6

_OPS: dict[type[ast.cmpop], Callable[[int, int], bool]] = {
    ast.GtE: operator.ge,
    ast.Gt: operator.gt,
    ast.LtE: operator.le,
    ast.Lt: operator.lt,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}


@dataclass(frozen=True)
class Gate:
    id: str
    file: str  # relative to site-packages
    scope: tuple[str, ...]  # enclosing class/function names, outermost first
    passes: bool  # the comparison's value that lets a cc 6.x device through
    blocked: str  # what users see while the gate refuses Pascal


#: torch 2.6.0's gates: the targets of patchlib/torch (tests/verify/test_gates.py keeps the two in step).
TORCH_GATES = (
    Gate(
        id="inductor-gate-has-triton",
        file="torch/utils/_triton.py",
        scope=("has_triton",),
        passes=True,
        blocked="has_triton() is False on cc 6.x, so Inductor treats Triton as unusable",
    ),
    Gate(
        id="inductor-gate-scheduler",
        file="torch/_inductor/scheduler.py",
        scope=("Scheduler", "create_backend"),
        passes=False,
        blocked='torch.compile raises "Found <GPU> which is too old to be supported by the triton GPU compiler"',
    ),
)


class State(StrEnum):
    ACCEPTS = "accepts"  # every comparison lets major 6 through
    REJECTS = "rejects"
    NOT_FOUND = "not found"  # the function or its comparison is not there (another torch version)
    UNREADABLE = "unreadable"  # missing file or a syntax error


@dataclass(frozen=True)
class GateResult:
    gate: Gate
    path: Path
    state: State
    line: int = 0
    text: str = ""  # the comparison's source line, stripped
    detail: str = ""  # why NOT_FOUND / UNREADABLE


def inspect_gate(gate: Gate, site_packages: Path) -> GateResult:
    path = site_packages / gate.file
    try:
        source = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = "the file is missing" if isinstance(exc, FileNotFoundError) else f"cannot be read: {exc}"
        return GateResult(gate, path, State.UNREADABLE, detail=why)
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        return GateResult(gate, path, State.UNREADABLE, exc.lineno or 0, detail=f"syntax error: {exc.msg}")
    scope = _find_scope(tree, gate.scope)
    qualname = ".".join(gate.scope)
    if scope is None:
        return GateResult(gate, path, State.NOT_FOUND, detail=f"{qualname} is not defined")
    lines = source.splitlines()
    compares = [
        node
        for node in ast.walk(scope)
        if isinstance(node, ast.Compare) and _major_comparison(node) is not None
    ]
    if not compares:
        return GateResult(
            gate, path, State.NOT_FOUND, detail=f"{qualname} compares no `.major` with a number"
        )
    compares.sort(key=lambda n: n.lineno)
    for node in compares:
        op, bound = _major_comparison(node) or (operator.ge, 0)
        if op(PASCAL_MAJOR, bound) != gate.passes:
            return GateResult(gate, path, State.REJECTS, node.lineno, lines[node.lineno - 1].strip())
    first = compares[0]
    return GateResult(gate, path, State.ACCEPTS, first.lineno, lines[first.lineno - 1].strip())


def _find_scope(tree: ast.Module, names: tuple[str, ...]) -> ast.AST | None:
    node: ast.AST = tree
    for name in names:
        body = getattr(node, "body", [])
        found = next(
            (
                n
                for n in body
                if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and n.name == name
            ),
            None,
        )
        if found is None:
            return None
        node = found
    return node


def _major_comparison(node: ast.Compare) -> tuple[Callable[[int, int], bool], int] | None:
    """``<expr>.major OP <int>`` as (OP, int); None for anything else."""
    if len(node.ops) != 1:
        return None
    left, right = node.left, node.comparators[0]
    op = _OPS.get(type(node.ops[0]))
    if (
        op is not None
        and isinstance(left, ast.Attribute)
        and left.attr == "major"
        and isinstance(right, ast.Constant)
        and type(right.value) is int
    ):
        return op, right.value
    return None
