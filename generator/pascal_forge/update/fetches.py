"""vLLM's CMake FetchContent projects: read from the sdist, pinned by git commit."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from pascal_forge.errors import SourceError
from pascal_forge.recipes.render import VLLM_SOURCE_ENV
from pascal_forge.stack.model import Source, Stack
from pascal_forge.stack.sources import obtain
from pascal_forge.update.pins import (
    check_commit,
)
from pascal_forge.update.plan import (
    COMMIT_RE,
    Planner,
)

# Declare, and the Populate(name GIT_REPOSITORY ...) form vLLM >= 0.20 uses to avoid MakeAvailable
# (deepgemm.cmake, qutlass.cmake); a one-argument Populate(name) has no fields and is skipped.
_DECLARE = re.compile(r"FetchContent_(?:Declare|Populate)\(\s*([\w-]+)(.*?)\)", re.DOTALL)


_SET = re.compile(r'set\(\s*(\w+)\s+"?([^"\s)]+)"?', re.MULTILINE)


@dataclass(frozen=True)
class Fetch:
    """A FetchContent_Declare of vLLM's CMake files: what the build would download."""

    name: str
    repo: str  # git URL, or "" for a URL download
    tag: str
    url: str
    file: str


def cmake_fetches(tree: Path) -> list[Fetch]:
    """What the CUDA build fetches: the top CMakeLists.txt and cmake/external_projects/ (the CPU
    build's cmake/cpu_extension.cmake, which fetches oneDNN, is not part of it)."""
    files = [tree / "CMakeLists.txt", *sorted((tree / "cmake" / "external_projects").glob("*.cmake"))]
    out = []
    for path in files:
        if not path.is_file():
            continue
        text = "\n".join(
            line.split("#", 1)[0] for line in path.read_text("utf-8", errors="replace").splitlines()
        )
        variables = {m.group(1): m.group(2) for m in _SET.finditer(text)}
        for m in _DECLARE.finditer(text):
            body = m.group(2)
            fields: dict[str, str] = {}
            for key in ("GIT_REPOSITORY", "GIT_TAG", "URL"):
                if km := re.search(rf"\b{key}\s+(\S+)", body):
                    fields[key] = _expand(km.group(1).strip('"'), variables)
            if fields:
                out.append(
                    Fetch(
                        m.group(1),
                        fields.get("GIT_REPOSITORY", ""),
                        fields.get("GIT_TAG", ""),
                        fields.get("URL", ""),
                        path.relative_to(tree).as_posix(),
                    )
                )
    return out


def _expand(value: str, variables: dict[str, str]) -> str:
    """``${VAR}`` from a ``set(VAR "value")`` of the same file (e.g. GIT_TAG ${CUTLASS_REVISION})."""
    return re.sub(r"\$\{(\w+)\}", lambda v: variables.get(v.group(1), v.group(0)), value)


def _norm_repo(url: str) -> str:
    return url.lower().rstrip("/").removesuffix(".git")


def vllm_subprojects(p: Planner, base: Stack, version: str, tree: Path) -> list[Source]:
    """Pins of the git sub-projects vLLM's CMake would fetch, for the offline build."""
    fetches = cmake_fetches(tree)
    by_repo = {_norm_repo(f.repo): f for f in fetches if f.repo}
    base_fetches: dict[str, Fetch] | None = None
    out: list[Source] = []
    used: set[str] = set()
    for old in base.sources_for("vllm-pascal"):
        if old.patched:
            continue
        fetch = by_repo.get(_norm_repo(old.git)) if old.is_git else None
        if fetch is None:
            p.notes.append(
                f"{old.name}: vLLM {version}'s CMake files do not fetch {old.git or old.url}; "
                f"carried unchanged from {base.name} (review whether it is still needed)"
            )
            out.append(old)
            continue
        used.add(_norm_repo(fetch.repo))
        where = f"vLLM {version} {fetch.file} GIT_TAG {fetch.tag}"
        cite = ""
        rev = p.opts.revs.get(old.name)
        if rev is not None:
            origin = f"--rev {old.name}={rev} (vLLM {version} {fetch.file} asks for {fetch.tag})"
        elif COMMIT_RE.match(fetch.tag):
            rev, origin = fetch.tag, where
        else:
            if base_fetches is None:
                base_fetches = _base_fetches(p, base)
            before = base_fetches.get(_norm_repo(old.git))
            if before is not None and before.tag == fetch.tag:
                rev, origin = old.rev, f"{where}, same tag as vLLM {base.vllm}: {base.name}'s pin, carried"
                cite = f"{where}, the tag of vLLM {base.vllm} too; {old.pinned_by}"
            else:
                p.block(
                    f"{old.name} commit",
                    f"{where} is a tag; its commit cannot be looked up here (GitHub is not reachable)",
                    f"pass --rev {old.name}=<commit of {fetch.tag}>",
                    pin=True,
                )
                continue
        check_commit(old.name, rev)
        p.pin(f"{old.name} commit", rev, origin, rev != old.rev)
        out.append(replace(old, rev=rev, pinned_by=cite or origin))
    for f in fetches:
        if f.repo and _norm_repo(f.repo) in used:
            continue
        name = f.name.replace("_", "-")
        rev = p.opts.revs.get(name) or (f.tag if COMMIT_RE.match(f.tag) else "")
        if f.repo and rev and name in VLLM_SOURCE_ENV:
            # A new sub-project with a commit pin (or --rev): a source the build points vLLM's CMake at.
            check_commit(name, rev)
            origin = f"vLLM {version} {f.file} GIT_TAG {f.tag}" + (
                f"; --rev {name}={rev}" if rev != f.tag else ""
            )
            p.pin(f"{name} commit", rev, origin, True)
            p.notes.append(f"{name}: new sub-project of vLLM {version} ({f.file}); review its Pascal skip")
            out.append(Source("vllm-pascal", name, origin, git=f.repo, rev=rev, target=name))
            used.add(_norm_repo(f.repo))
            continue
        p.block(
            f"sub-project {f.name}",
            f"vLLM {version} {f.file} fetches {f.repo or f.url} {f.tag} at configure time and no source "
            "of the stack pins it: the offline build would fail",
            "add a pinned source for it and point vLLM's CMake at it (render.VLLM_SOURCE_ENV)",
        )
    return out


def _base_fetches(p: Planner, base: Stack) -> dict[str, Fetch]:
    """The base vLLM's CMake fetches (to tell whether a tag moved); empty when its sdist is out of reach."""
    src = base.patched_source("vllm-pascal")
    try:
        tree = obtain(src, p.opts.cache, p.opts.local.get(src.name)).tree
    except SourceError as exc:
        p.notes.append(f"base vLLM {base.vllm} sdist not obtainable ({exc.message}); tags cannot be compared")
        return {}
    return {_norm_repo(f.repo): f for f in cmake_fetches(tree) if f.repo}
