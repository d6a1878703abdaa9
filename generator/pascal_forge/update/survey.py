"""One vLLM release surveyed for Pascal: pins, CUDA 12 arch branches, sub-projects, patch carry, verdict.

Facts come from the release's own sdist (sha256-checked) and the torch wheel's PEP 658 metadata;
every patch of the base stack is carried with the ladder (ladder.py) onto the real new files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pascal_forge.errors import SourceError
from pascal_forge.update.ladder import Carry, Step

_ARCHS = re.compile(r'^\s*set\(CUDA_SUPPORTED_ARCHS "([^"]*)"\)', re.MULTILINE)
_COND = re.compile(r"^\s*(if|elseif|else)\s*\((.*)$")


@dataclass(frozen=True)
class Branch:
    condition: str  # "nvcc >= 12.8", "else", "always"
    archs: str

    @property
    def cuda12(self) -> bool:
        """A list an nvcc 12 build can take that starts at or below 7.0 (nvcc 13 dropped sm_6x)."""
        return "13" not in self.condition and self.archs.split(";")[0] in {"6.0", "6.1", "7.0"}


@dataclass(frozen=True)
class PatchStatus:
    id: str
    step: str
    detail: str
    hunk: str = ""


@dataclass(frozen=True)
class ReleaseRow:
    vllm: str
    sdist: str
    sha256: str
    torch: str
    triton: str
    branches: tuple[Branch, ...]
    external: tuple[str, ...]
    patches: tuple[PatchStatus, ...]
    engine: str
    attention: str
    verdict: str
    human: tuple[str, ...] = field(default=())
    base: str = ""  # the stack whose patches were carried
    torch_gates: str = (
        "not checked by survey (run `pascal-forge update --vllm X`: it carries the torch patches)"
    )
    triton_patches: str = "not checked: needs a triton clone (--source-dir triton=DIR)"


def arch_branches(cmake: str) -> tuple[Branch, ...]:
    """Every CUDA_SUPPORTED_ARCHS list with the if/elseif/else line that selects it."""
    lines = cmake.splitlines()
    out = []
    for m in _ARCHS.finditer(cmake):
        at = cmake.count("\n", 0, m.start())
        cond = "always"
        for i in range(at - 1, max(at - 8, -1), -1):
            c = _COND.match(lines[i])
            if c:
                cond = _condition(c.group(1), " ".join([c.group(2), *lines[i + 1 : at]]))
                break
        out.append(Branch(cond, m.group(1)))
    return tuple(out)


def _condition(kind: str, text: str) -> str:
    if kind == "else":
        return "else"
    ver = re.search(r"VERSION_(GREATER_EQUAL|GREATER|LESS)\s+([\d.]+)", text)
    if ver and "CUDA_COMPILER_VERSION" in text:
        op = {"GREATER_EQUAL": ">=", "GREATER": ">", "LESS": "<"}[ver.group(1)]
        return f"nvcc {op} {ver.group(2)}"
    return " ".join(text.split())[:60]


def external_projects(tree: Path) -> tuple[str, ...]:
    return tuple(p.stem for p in sorted((tree / "cmake" / "external_projects").glob("*.cmake")))


def engine_and_attention(tree: Path) -> tuple[str, str]:
    """The engine and attention backend a cc 6.x GPU gets, read from which code paths exist.

    V0 (with XFORMERS attention for cc < 8) exists while vllm/worker/model_runner.py does; from
    vLLM 0.10.2 cc < 8 runs V1 (DESIGN.md), whose Triton attention backend serves it.
    """
    v0 = (tree / "vllm" / "worker" / "model_runner.py").is_file()
    v1 = tree / "vllm" / "v1" / "attention" / "backends"
    triton = any((v1 / n).is_file() for n in ("triton_attn.py",))
    if v0 and (tree / "vllm" / "attention" / "backends" / "xformers.py").is_file():
        return "V0 (cc < 8 falls back from V1)", "XFORMERS"
    if triton:
        return "V1", "TRITON_ATTN (from file presence; not run on a GPU)"
    return "V1", "unknown (no triton_attn.py)"


def patch_status(c: Carry) -> PatchStatus:
    return PatchStatus(c.patch.id, c.step.value, c.detail, c.hunk)


def verdict(branches: tuple[Branch, ...], carries: tuple[Carry, ...]) -> tuple[str, tuple[str, ...]]:
    if not any(b.cuda12 for b in branches):
        return "not possible: no CUDA 12 CUDA_SUPPORTED_ARCHS branch an sm_6x arch could join", ()
    human = tuple(f"port {c.patch.id} by hand ({c.detail})" for c in carries if c.step == Step.HUMAN)
    if human:
        return f"possible after {len(human)} human step(s)", human
    return "Pascal stack possible (vLLM side; torch and triton patches checked by `update`)", ()


def read(tree: Path, name: str) -> str:
    path = tree / name
    if not path.is_file():
        raise SourceError(f"{tree.name} has no {name}", "is this a vLLM sdist?")
    return path.read_text("utf-8", errors="replace")
