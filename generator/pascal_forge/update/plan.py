"""The update plan's values: options in; pins, blockers and checks out; the planner that collects them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.version import Version

from pascal_forge.console import Log
from pascal_forge.stack.model import Dependency, Spec, Stack
from pascal_forge.update.upstream import (
    DEFAULT_CONDA_CHANNEL,
    DEFAULT_INDEX,
    SimpleIndex,
)
from pascal_forge.verify.check import RecipeCheck

if TYPE_CHECKING:
    from pascal_forge.update.carried import RecipeCarry

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class Pin:
    """One line of the plan: what was pinned, to what, and where that came from."""

    what: str
    value: str
    origin: str
    changed: bool


@dataclass(frozen=True)
class Blocker:
    """Something that keeps the new stack from being complete; ``pin`` blockers need user input."""

    what: str
    detail: str
    hint: str
    pin: bool = False


@dataclass(frozen=True)
class UpdateOptions:
    vllm: str
    cache: Path
    index_url: str = DEFAULT_INDEX
    conda_channel: str = DEFAULT_CONDA_CHANNEL
    timeout: float = 30
    conda_timeout: float = 20
    retries: int = 3
    base: str | None = None
    local: dict[str, Path] = field(default_factory=dict)  # --source-dir NAME=DIR
    revs: dict[str, str] = field(default_factory=dict)  # --rev NAME=COMMIT


@dataclass(frozen=True)
class UpdatePlan:
    stack: Stack  # the new stack (complete where pins resolved; ``draft`` is set when writing one)
    base: Stack
    pins: tuple[Pin, ...]
    notes: tuple[str, ...]
    checks: tuple[RecipeCheck, ...]
    trials: tuple[RecipeCheck, ...]  # the base's series tried where no library patch covers a version
    blockers: tuple[Blocker, ...]
    changed_requirements: tuple[str, ...]  # recipes whose requirements differ from the base's
    carried: tuple[RecipeCarry, ...] = ()  # the base's patches carried by the ladder (update/ladder.py)

    @property
    def ready(self) -> bool:
        return not self.blockers

    def requirements_to_write(self) -> list[tuple[str, list[tuple[str, tuple[Dependency, ...]]]]]:
        out = []
        for recipe in self.changed_requirements:
            reqs = self.stack.requirements[recipe]
            sections = [
                ("build", reqs.build),
                ("host", reqs.host),
                ("run", reqs.run),
                ("run_constraints", reqs.run_constraints),
            ]
            out.append((recipe, [(k, v) for k, v in sections if v]))
        return out


def stack_name(vllm: str) -> str:
    return f"vllm-{vllm}"


def choose_base(spec: Spec, vllm: str, name: str | None) -> Stack:
    """``name``, else the complete stack with the newest vLLM not newer than ``vllm`` (else the oldest).

    The stack being refreshed (same name, from an earlier run) is no base of itself.
    """
    if name:
        return spec.stack(name)
    complete = [s for s in spec.stacks if not s.draft] or list(spec.stacks)
    complete = [s for s in complete if s.name != stack_name(vllm)] or complete
    older = [s for s in complete if Version(s.vllm) <= Version(vllm)]
    if older:
        return max(older, key=lambda s: (Version(s.vllm), s.name == spec.default_stack))
    return min(complete, key=lambda s: Version(s.vllm))


class Planner:
    """Collects pins, notes and blockers while the steps run (one instance per plan)."""

    def __init__(self, spec: Spec, opts: UpdateOptions, log: Log) -> None:
        self.spec = spec
        self.opts = opts
        self.log = log
        self.pins: list[Pin] = []
        self.notes: list[str] = []
        self.blockers: list[Blocker] = []
        self.index = SimpleIndex(opts.index_url, opts.timeout, opts.retries)
        self.on_pypi = opts.index_url.rstrip("/") == DEFAULT_INDEX
        self.index_name = "PyPI Simple API" if self.on_pypi else f"Simple API at {opts.index_url}"

    def pin(self, what: str, value: str, origin: str, changed: bool) -> None:
        self.pins.append(Pin(what, value, origin, changed))

    def block(self, what: str, detail: str, hint: str, pin: bool = False) -> None:
        self.blockers.append(Blocker(what, detail, hint, pin))
