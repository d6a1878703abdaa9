"""Refresh pins and derived data from upstream: PyPI sdists and grayskull's PyPI->conda mapping.

vllm-pascal's run dependencies are not typed by hand: they come from vLLM's own requirement
files (``requirements/common.txt`` + ``requirements/cuda.txt``), evaluated for linux-64 and each
Python of the stack, with names mapped to conda-forge through grayskull's maintained table
(``grayskull/strategy/config.yaml``; names it does not list keep their PyPI name).
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from pascal_forge.errors import SourceError, SpecError
from pascal_forge.spec import Dependency


@dataclass(frozen=True)
class MappedRequirement:
    pypi: str
    conda: str
    spec: str  # conda match spec
    python: str  # "" = every Python of the stack
    dropped_extras: tuple[str, ...]


def grayskull_mapping() -> tuple[dict[str, str], str]:
    """grayskull's PyPI->conda-forge name table and the grayskull version it came from."""
    try:
        dist = importlib.metadata.distribution("grayskull")
    except importlib.metadata.PackageNotFoundError as exc:
        raise SpecError(
            "grayskull is not installed; its PyPI->conda name mapping is needed to derive requirements",
            "pip install 'pascal-forge[update]' (or: pip install --no-deps grayskull)",
        ) from exc
    import yaml

    path = Path(str(dist.locate_file("grayskull/strategy/config.yaml")))
    table: dict[str, Any] = yaml.safe_load(path.read_text("utf-8"))
    mapping: dict[str, str] = {
        str(canonicalize_name(k)): str(v["conda_forge"])
        for k, v in table.items()
        if isinstance(v, dict) and v.get("conda_forge")
    }
    return mapping, dist.version


def read_requirement_files(root: Path, names: tuple[str, ...]) -> list[str]:
    """Requirement lines of ``names`` under ``root/requirements``, following ``-r`` includes."""
    lines: list[str] = []
    seen: set[str] = set()

    def read(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        path = root / "requirements" / name
        if not path.is_file():
            raise SourceError(f"{path} not found in the vLLM source", "is this a vLLM >= 0.8.5 sdist?")
        for raw in path.read_text("utf-8").splitlines():
            line = raw.split(" #", 1)[0].split("#", 1)[0].strip() if not raw.startswith("#") else ""
            if line.startswith("-r "):
                read(line[3:].strip())
            elif line and not line.startswith("-"):
                lines.append(line)

    for name in names:
        read(name)
    return lines


def map_requirements(
    lines: list[str],
    pythons: tuple[str, ...],
    mapping: dict[str, str],
    overrides: dict[str, str],
) -> list[MappedRequirement]:
    """Map PyPI requirement lines to conda specs, per Python where markers differ."""
    out: list[MappedRequirement] = []
    for line in lines:
        try:
            req = Requirement(line)
        except InvalidRequirement as exc:
            raise SpecError(f"cannot parse requirement {line!r}: {exc}", "") from exc
        name = canonicalize_name(req.name)
        wanted = [py for py in pythons if _marker_true(req, py)]
        if not wanted:
            continue
        scope = "" if len(wanted) == len(pythons) else None
        conda = mapping.get(name, name)
        spec = overrides.get(name) or _conda_spec(conda, str(req.specifier))
        for py in [""] if scope == "" else wanted:
            out.append(MappedRequirement(name, conda, spec, py, tuple(sorted(req.extras))))
    return sorted(out, key=lambda m: (m.conda, m.python))


def _marker_true(req: Requirement, python: str) -> bool:
    if req.marker is None:
        return True
    env: dict[str, str] = {
        **dict(default_environment()),  # type: ignore[arg-type]
        "python_version": python,
        "python_full_version": f"{python}.0",
        "platform_system": "Linux",
        "sys_platform": "linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }
    return req.marker.evaluate(env)


def _conda_spec(name: str, specifier: str) -> str:
    if not specifier:
        return name
    # PEP 440 "==0.1.11" / ">=1,<2" are valid conda match specs once separated from the name.
    parts = sorted(specifier.split(","), key=lambda s: s.lstrip("<>=!~"))
    return f"{name} {','.join(parts)}"


def as_dependencies(mapped: list[MappedRequirement]) -> tuple[Dependency, ...]:
    deps = []
    for m in mapped:
        note = f"pypi {m.pypi}" + (
            f" (extras dropped: {', '.join(m.dropped_extras)})" if m.dropped_extras else ""
        )
        deps.append(Dependency(m.spec, m.python, note))
    return tuple(deps)
