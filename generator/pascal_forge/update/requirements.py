"""Requirement derivation: vLLM's requirements files mapped to conda-forge names and rendered into the spec's derived block."""

from __future__ import annotations

import importlib.metadata
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from pascal_forge.errors import PatchFailedError, SourceError, SpecError
from pascal_forge.recipes.render import toml_dep
from pascal_forge.stack.model import Dependency, PatchEntry
from pascal_forge.stack.patches import apply_series
from pascal_forge.update.upstream import LINUX_X86_64


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


#: conda-forge names grayskull's table lacks, as conda-forge's own vllm recipe spells them
#: (conda-forge/vllm-feedstock@ff0aaea recipe/recipe.yaml): the PyPI spelling is not a package there.
CONDA_FORGE_NAMES = {
    "huggingface-hub": "huggingface_hub",
    "prometheus-client": "prometheus_client",
}


#: PyPI extras that conda-forge ships as a package of their own (same feedstock record).
EXTRA_PACKAGES = {("ray", "cgraph"): "ray-cgraph"}


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
        extras = sorted(req.extras)
        conda = CONDA_FORGE_NAMES.get(name) or mapping.get(name, name)
        for extra in list(extras):
            if (name, extra) in EXTRA_PACKAGES:
                conda = EXTRA_PACKAGES[(name, extra)]
                extras.remove(extra)
        spec = overrides.get(name) or _conda_spec(conda, str(req.specifier))
        for py in [""] if scope == "" else wanted:
            out.append(MappedRequirement(name, conda, spec, py, tuple(extras)))
    return sorted(out, key=lambda m: (m.conda, m.python))


def _marker_true(req: Requirement, python: str) -> bool:
    if req.marker is None:
        return True
    env: dict[str, str] = {
        **dict(default_environment()),  # type: ignore[arg-type]
        "python_version": python,
        "python_full_version": f"{python}.0",
        **LINUX_X86_64,
    }
    return req.marker.evaluate(env)


def _conda_spec(name: str, specifier: str) -> str:
    if not specifier:
        return name
    # PEP 440 "==0.1.11" / ">=1,<2" are valid conda match specs once separated from the name.
    parts = sorted(specifier.split(","), key=lambda s: s.lstrip("<>=!~"))
    return f"{name} {','.join(parts)}"


BEGIN_MARK = "# BEGIN derived"


END_MARK = "# END derived"


def _triton_note(triton: str) -> str:
    if Version(triton) < Version("3.4"):
        return "the Pascal triton build; stock triton cannot lower fp16 tl.dot for sm_6x"
    # 3.4 lowers fp16 tl.dot for sm_6x upstream (triton PR #7158); the L1 eviction hints remain.
    return "the Pascal triton build; stock triton emits ld/st .L1::evict_* that ptxas rejects below sm_70"


def patched_requirement_lines(tree: Path, series: tuple[PatchEntry, ...]) -> list[str]:
    """cuda.txt's lines after the series' patches of ``requirements/`` (the files setup.py turns
    into install_requires), applied to a copy; a patch that does not apply is an error."""
    mine = tuple(e for e in series if e.targets and all(t.startswith("requirements/") for t in e.targets))
    if not mine:
        return read_requirement_files(tree, ("cuda.txt",))
    with tempfile.TemporaryDirectory(prefix="pascal-forge-reqs-") as tmp:
        copy = Path(tmp)
        shutil.copytree(tree / "requirements", copy / "requirements")
        failed = [r for r in apply_series(copy, mine) if not r.ok]
        if failed:
            raise PatchFailedError(
                f"{failed[0].patch.file} does not apply to {tree / 'requirements'}: {failed[0].summary}",
                f"rebase patch {failed[0].patch.id!r} onto this vLLM version (pascal-forge update reports it)",
            )
        return read_requirement_files(copy, ("cuda.txt",))


def derived_run(
    torch: str, triton: str, pythons: tuple[str, ...], tree: Path, series: tuple[PatchEntry, ...] = ()
) -> tuple[tuple[Dependency, ...], str]:
    """vllm-pascal's run requirements from the vLLM tree (with the series' requirements patches),
    and the grayskull version that mapped them."""
    mapping, gs_version = grayskull_mapping()
    lines = patched_requirement_lines(tree, series)
    mapped = map_requirements(lines, pythons, mapping, {"torch": f"pytorch =={torch} *pascal*"})
    deps = [
        Dependency("python"),
        Dependency(
            f"triton =={triton} *pascal*",
            note=_triton_note(triton),
        ),
        Dependency("cuda-version >=12.0,<13"),
        Dependency("__cuda"),
    ]
    for m in mapped:
        note = f"pypi {m.pypi}" + (
            f"[{','.join(m.dropped_extras)}], extras have no conda equivalent" if m.dropped_extras else ""
        )
        deps.append(Dependency(m.spec, m.python, note))
    return tuple(deps), gs_version


def derived_block(
    stack_vllm: str,
    torch: str,
    triton: str,
    pythons: tuple[str, ...],
    tree: Path,
    series: tuple[PatchEntry, ...] = (),
) -> str:
    """The spec text between the markers (markers included) for vllm-pascal's run requirements."""
    deps, gs_version = derived_run(torch, triton, pythons, tree, series)
    out = [
        f"{BEGIN_MARK}: vLLM {stack_vllm} requirements/cuda.txt (+ common.txt) mapped with grayskull {gs_version}'s",
        "# PyPI->conda table for linux-64; regenerate with `pascal-forge derive-requirements --write`.",
        "run = [",
        *(f"  {toml_dep(d)}," for d in deps),
        "]",
        END_MARK,
    ]
    return "\n".join(out)


def replace_block(text: str, block: str, origin: str, stack: str | None = None) -> str:
    """``text`` with the derived block replaced: the first one, or the one of ``stack``'s
    ``[stacks."NAME".requirements.vllm-pascal]`` table when the spec holds several stacks."""
    after = 0
    if stack is not None:
        header = f'[stacks."{stack}".requirements.vllm-pascal]'
        after = text.find(header)
        if after < 0:
            raise SpecError(f"{origin}: no {header} table", "add the table with the derived block markers")
    start = text.find(BEGIN_MARK, after)
    end = text.find(END_MARK, start)
    if start < 0 or end < start:
        raise SpecError(f"{origin}: no '{BEGIN_MARK}' ... '{END_MARK}' block", "restore the markers")
    return text[:start] + block + text[end + len(END_MARK) :]
