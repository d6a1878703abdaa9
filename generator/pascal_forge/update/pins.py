"""Pin discovery: the vLLM sdist, torch from vLLM's requirements, triton from torch's wheel metadata, triton's LLVM."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

from pascal_forge.errors import PinUnresolvedError, SourceError
from pascal_forge.stack.model import Source, Stack
from pascal_forge.stack.sources import unpack
from pascal_forge.update.plan import (
    COMMIT_RE,
    Planner,
)
from pascal_forge.update.requirements import read_requirement_files
from pascal_forge.update.upstream import (
    IndexFile,
    pinned_requirement,
)


def vllm_sdist(p: Planner, base: Stack, version: str) -> tuple[Source, Path]:
    p.log(f"looking up vllm {version} in {p.index.url} …")
    sdist = p.index.sdist("vllm", version)
    if sdist.yanked:
        p.notes.append(f"{sdist.filename} is yanked on the index; check why before building it")
    archive = p.index.download(sdist, p.opts.cache, p.log)
    old = base.patched_source("vllm-pascal")
    src = Source(
        recipe="vllm-pascal",
        name=old.name,
        url=sdist.url,
        sha256=sdist.sha256,
        patched=True,
        pinned_by=f"{p.index_name} (PEP 691 JSON) for {sdist.filename}, verified by download",
    )
    p.pin("vllm sdist", sdist.filename, f"{p.index_name} (PEP 691 JSON), {sdist.url}", src.url != old.url)
    p.pin("vllm sha256", sdist.sha256, "the index's sha256, verified by download", src.sha256 != old.sha256)
    tree = unpack(archive, p.opts.cache / "trees" / f"update--vllm-{version}")
    return src, tree


def torch_pin(p: Planner, base: Stack, version: str, tree: Path) -> str:
    try:
        lines = read_requirement_files(tree, ("cuda.txt",))
    except SourceError as exc:
        raise PinUnresolvedError(
            f"vLLM {version}: cannot read its CUDA requirements ({exc.message})",
            "pascal-forge update supports vLLM releases with requirements/cuda.txt (>= 0.8)",
        ) from exc
    found = pinned_requirement(lines, "torch", base.python[-1])
    if found is None:
        raise PinUnresolvedError(
            f"vLLM {version} requirements/cuda.txt pins no exact torch version",
            "vLLM pins torch with ==; add a stack by hand if this release does not",
        )
    torch, line = found
    p.pin("torch", torch, f"vLLM {version} requirements/cuda.txt: {line}", torch != base.torch)
    return torch


def triton_pin(p: Planner, base: Stack, torch: str) -> tuple[str, IndexFile]:
    p.log(f"looking up torch {torch} wheels (PEP 658 metadata) …")
    wheels = p.index.linux_wheels("torch", torch)
    if not wheels:
        raise PinUnresolvedError(
            f"{p.index.url} lists no CPython manylinux x86_64 wheel of torch {torch}",
            "the triton pin is read from such a wheel's metadata; check the torch version or --index-url",
        )
    # "-cp313-cp313-": the ABI tag too, so a free-threaded "-cp313-cp313t-" wheel is never picked.
    tags = [f"-cp{nd}-cp{nd}-" for nd in (py.replace(".", "") for py in reversed(base.python))]
    wheel = next((w for t in tags for w in wheels if t in w.filename), wheels[0])
    meta = p.index.metadata(wheel)
    requires = meta.get_all("Requires-Dist") or []
    for py in reversed(base.python):
        found = pinned_requirement(requires, "triton", py)
        if found is not None:
            break
    if found is None:
        raise PinUnresolvedError(
            f"{wheel.filename}: its metadata has no exact triton requirement for Linux x86_64",
            "torch >= 2.0 pins triton exactly; check that the torch pin is right",
        )
    triton, line = found
    hashed = "sha256-verified" if wheel.metadata_sha256 else "the index lists no hash for it"
    p.pin(
        "triton",
        triton,
        f"{wheel.filename}.metadata (PEP 658, {hashed}): Requires-Dist: {line}",
        triton != base.triton,
    )
    return triton, wheel


def triton_sources(p: Planner, base: Stack, triton: str) -> list[Source]:
    """triton's git commit and the LLVM commit it builds against."""
    old = list(base.sources_for("triton-pascal"))
    old_triton = base.patched_source("triton-pascal")
    old_llvm = next((s for s in old if s.is_git and "llvm" in s.name), None)
    rev = p.opts.revs.get(old_triton.name)
    if triton == base.triton and rev is None:
        for s in old:
            p.pin(
                f"{s.name} commit",
                s.rev or s.sha256,
                f"{base.name}'s pin, carried: same triton {triton}",
                False,
            )
        return old
    repo = p.opts.local.get(old_triton.name)
    origin = f"--rev {old_triton.name}=…"
    if rev is None and repo is not None and _is_git(repo):
        tag = f"v{triton}"
        rev = _git(repo, "rev-parse", "--verify", "--quiet", f"{tag}^{{commit}}")
        origin = (
            f"tag {tag} in {repo} (PyTorch may pin another commit of the release branch in "
            ".ci/docker/ci_commit_pins/triton.txt; pass --rev to use that)"
        )
    if not rev:
        p.block(
            "triton commit",
            f"triton {triton} (pinned by torch) differs from {base.name}'s {base.triton}, and its commit "
            "cannot be looked up here (GitHub is not reachable)",
            f"pass --rev {old_triton.name}=<commit> (PyTorch's .ci/docker/ci_commit_pins/triton.txt at the torch "
            f"tag), or --source-dir {old_triton.name}=DIR with a triton clone that has tag v{triton}",
            pin=True,
        )
        return []
    check_commit(old_triton.name, rev)
    new_triton = replace(old_triton, rev=rev, pinned_by=f"triton {triton}: {origin}")
    p.pin(f"{old_triton.name} commit", rev, origin, rev != old_triton.rev)
    out = [new_triton]
    if old_llvm is not None:
        out.append(_llvm_source(p, old_llvm, new_triton, repo))
    out += [s for s in old if s not in (old_triton, old_llvm)]
    return [s for s in out if s.rev or s.url]


def _llvm_source(p: Planner, old: Source, triton: Source, repo: Path | None) -> Source:
    rev = p.opts.revs.get(old.name)
    origin = f"--rev {old.name}={rev}"
    if rev is None and repo is not None:
        text = (
            _git(repo, "show", f"{triton.rev}:cmake/llvm-hash.txt")
            if _is_git(repo)
            else _read(repo / "cmake" / "llvm-hash.txt")
        )
        rev = text.strip() if text else None
        origin = f"triton {triton.rev[:8]} cmake/llvm-hash.txt (read from {repo})"
    if not rev:
        p.block(
            f"{old.name} commit",
            f"the LLVM commit of triton {triton.rev[:12]} is in its cmake/llvm-hash.txt, which is on GitHub only",
            f"pass --source-dir {triton.name}=DIR (a triton clone containing {triton.rev[:12]}) "
            f"or --rev {old.name}=<commit>",
            pin=True,
        )
        return replace(old, rev="")
    check_commit(old.name, rev)
    p.pin(f"{old.name} commit", rev, origin, rev != old.rev)
    return replace(old, rev=rev, pinned_by=origin)


def torch_check_copy(p: Planner, base: Stack, torch: str, wheel: IndexFile) -> list[Source]:
    """The reachable PyPI copy of the torch release's Python files that `check` proves patches on."""
    old = [s for s in base.sources if s.recipe == "pytorch-pascal" and s.check_only]
    if torch == base.torch and old:
        for s in old:
            p.pin(
                "torch check-only copy",
                s.file_name or s.url.rsplit("/", 1)[-1],
                f"{base.name}'s pin, carried: same torch {torch}",
                False,
            )
        return old
    src = Source(
        recipe="pytorch-pascal",
        name=old[0].name if old else "torch-pypi-wheel",
        url=wheel.url,
        sha256=wheel.sha256,
        check_only=True,
        pinned_by=f"{p.index_name} (PEP 691 JSON) for {wheel.filename}: the same release's pure-Python "
        "files, reachable where conda-forge is not",
    )
    p.pin("torch check-only copy", wheel.filename, f"{p.index_name}, sha256 {wheel.sha256}", True)
    return [src]


def check_commit(name: str, rev: str) -> None:
    if not COMMIT_RE.match(rev):
        raise PinUnresolvedError(
            f"{name}: {rev!r} is not a full 40-hex commit", f"pass --rev {name}=<40-hex commit>"
        )


def _is_git(path: Path) -> bool:
    return (path / "HEAD").is_file() or (path / ".git").exists()


def _git(repo: Path, *args: str) -> str:
    git_dir = repo / ".git" if (repo / ".git").exists() else repo
    done = subprocess.run(["git", f"--git-dir={git_dir}", *args], capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else ""


def _read(path: Path) -> str:
    return path.read_text("utf-8") if path.is_file() else ""
