"""Plan a stack for a new vLLM release: discover and pin every input, then carry the patches forward.

The pipeline (each step a function below, each result a frozen value):

1. the vLLM sdist and its sha256 from the Simple API (PEP 691), downloaded and verified;
2. torch's pin from that sdist's ``requirements/cuda.txt``; triton's pin from the torch wheel's
   PEP 658 metadata (``Requires-Dist: triton==…``);
3. the triton commit and its LLVM commit: carried from the base stack when triton is unchanged,
   else from ``--rev`` or a local triton repository (``cmake/llvm-hash.txt`` at that commit);
4. vLLM's CMake sub-projects (cutlass, FlashMLA, vllm-flash-attn) from the sdist's CMake files;
5. the conda-forge pytorch artifacts for the overlay, from the channel's repodata (py-rattler),
   or from the spec when the channel cannot be reached;
6. every library patch whose ``versions`` cover the new release, applied to the new sources with
   the engine of `pascal-forge check`.

Whatever cannot be derived or does not apply becomes a ``Blocker``: the plan still reports all of it.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from pascal_forge.console import Log
from pascal_forge.errors import PinUnresolvedError, SourceError, SpecError
from pascal_forge.stack.patches import Outcome
from pascal_forge.stack.sources import obtain, unpack
from pascal_forge.stack.spec import (
    RECIPES,
    Dependency,
    PatchEntry,
    RecipeRequirements,
    Source,
    Spec,
    Stack,
    recipe_kind,
)
from pascal_forge.update.command import derived_run, read_requirement_files
from pascal_forge.update.upstream import (
    DEFAULT_CONDA_CHANNEL,
    DEFAULT_INDEX,
    CondaArtifact,
    CondaUnreachableError,
    IndexFile,
    SimpleIndex,
    conda_artifacts,
    pinned_requirement,
)
from pascal_forge.verify.check import RecipeCheck, check_recipe

_COMMIT = re.compile(r"^[0-9a-f]{40}$")


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


# --------------------------------------------------------------------------------------------
# The plan


class _Planner:
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


def plan_update(spec: Spec, opts: UpdateOptions, log: Log) -> UpdatePlan:
    version = str(Version(opts.vllm))
    base = choose_base(spec, version, opts.base)
    p = _Planner(spec, opts, log)
    name = stack_name(version)
    log(f"base stack: {base.name} (vllm {base.vllm}, torch {base.torch}, triton {base.triton})")

    vllm_src, tree = _vllm_sdist(p, base, version)
    torch = _torch_pin(p, base, version, tree)
    triton, torch_wheel = _triton_pin(p, base, torch)
    sources: dict[str, list[Source]] = {k.recipe: [] for k in RECIPES}
    sources["triton-pascal"] = _triton_sources(p, base, triton)
    sources["vllm-pascal"] = [vllm_src, *_vllm_subprojects(p, base, version, tree)]
    overlay, overlay_reqs = _overlay(p, base, torch, triton)
    sources["pytorch-pascal"] = [*overlay, *_torch_check_copy(p, base, torch, torch_wheel)]

    requirements = _requirements(base, torch, triton, tree, overlay_reqs)
    changed = tuple(r for r in sorted(requirements) if requirements[r] != base.requirements.get(r))
    stack = Stack(
        name=name,
        vllm=version,
        torch=torch,
        triton=triton,
        cuda=base.cuda,
        python=base.python,
        archs=base.archs,
        build_number=0 if version != base.vllm else base.build_number,
        sources=tuple(s for k in RECIPES for s in sources[k.recipe]),
        requirements=requirements,
    )
    checks, trials = _carry_patches(p, base, stack)
    return UpdatePlan(stack, base, tuple(p.pins), tuple(p.notes), checks, trials, tuple(p.blockers), changed)


def _vllm_sdist(p: _Planner, base: Stack, version: str) -> tuple[Source, Path]:
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


def _torch_pin(p: _Planner, base: Stack, version: str, tree: Path) -> str:
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


def _triton_pin(p: _Planner, base: Stack, torch: str) -> tuple[str, IndexFile]:
    p.log(f"looking up torch {torch} wheels (PEP 658 metadata) …")
    wheels = p.index.linux_wheels("torch", torch)
    if not wheels:
        raise PinUnresolvedError(
            f"{p.index.url} lists no CPython manylinux x86_64 wheel of torch {torch}",
            "the triton pin is read from such a wheel's metadata; check the torch version or --index-url",
        )
    tags = [f"-cp{py.replace('.', '')}-" for py in reversed(base.python)]
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


def _triton_sources(p: _Planner, base: Stack, triton: str) -> list[Source]:
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
    _check_commit(old_triton.name, rev)
    new_triton = replace(old_triton, rev=rev, pinned_by=f"triton {triton}: {origin}")
    p.pin(f"{old_triton.name} commit", rev, origin, rev != old_triton.rev)
    out = [new_triton]
    if old_llvm is not None:
        out.append(_llvm_source(p, old_llvm, new_triton, repo))
    out += [s for s in old if s not in (old_triton, old_llvm)]
    return [s for s in out if s.rev or s.url]


def _llvm_source(p: _Planner, old: Source, triton: Source, repo: Path | None) -> Source:
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
    _check_commit(old.name, rev)
    p.pin(f"{old.name} commit", rev, origin, rev != old.rev)
    return replace(old, rev=rev, pinned_by=origin)


# ---- vLLM's CMake sub-projects ---------------------------------------------------------------

_DECLARE = re.compile(r"FetchContent_Declare\(\s*([\w-]+)(.*?)\)", re.DOTALL)
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
                    fields[key] = _expand(km.group(1), variables)
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


def _vllm_subprojects(p: _Planner, base: Stack, version: str, tree: Path) -> list[Source]:
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
        elif _COMMIT.match(fetch.tag):
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
        _check_commit(old.name, rev)
        p.pin(f"{old.name} commit", rev, origin, rev != old.rev)
        out.append(replace(old, rev=rev, pinned_by=cite or origin))
    for f in fetches:
        if f.repo and _norm_repo(f.repo) in used:
            continue
        p.block(
            f"sub-project {f.name}",
            f"vLLM {version} {f.file} fetches {f.repo or f.url} {f.tag} at configure time and no source "
            "of the stack pins it: the offline build would fail",
            "add a pinned source for it and point vLLM's CMake at it (render.VLLM_SOURCE_ENV)",
        )
    return out


def _base_fetches(p: _Planner, base: Stack) -> dict[str, Fetch]:
    """The base vLLM's CMake fetches (to tell whether a tag moved); empty when its sdist is out of reach."""
    src = base.patched_source("vllm-pascal")
    try:
        tree = obtain(src, p.opts.cache, p.opts.local.get(src.name)).tree
    except SourceError as exc:
        p.notes.append(f"base vLLM {base.vllm} sdist not obtainable ({exc.message}); tags cannot be compared")
        return {}
    return {_norm_repo(f.repo): f for f in cmake_fetches(tree) if f.repo}


# ---- the pytorch overlay ---------------------------------------------------------------------


def _overlay(
    p: _Planner, base: Stack, torch: str, triton: str
) -> tuple[list[Source], RecipeRequirements | None]:
    """The upstream conda-forge pytorch artifacts (one per Python), and their own run requirements."""
    old = [s for s in base.sources_for("pytorch-pascal") if s.patched]
    name = old[0].name if old else "pytorch-conda-forge"
    prefer = "_mkl_" if any("_mkl_" in (s.file_name or s.url) for s in old) else ""
    channel = p.opts.conda_channel
    p.log(f"looking up pytorch {torch} (CUDA {base.cuda}) in {channel} …")
    try:
        found = conda_artifacts(
            channel,
            "pytorch",
            torch,
            f"cuda{base.cuda.replace('.', '')}*",
            base.python,
            p.opts.cache,
            p.opts.conda_timeout,
            prefer,
        )
    except CondaUnreachableError as exc:
        return _overlay_from_spec(p, base, torch, f"conda-forge not reachable ({exc})")
    missing = [py for py in base.python if py not in found]
    if missing:
        why = f"{channel} has no pytorch {torch} CUDA {base.cuda} build for Python {', '.join(missing)}"
        return _overlay_from_spec(p, base, torch, why)
    sources = []
    for py in base.python:
        art = found[py]
        src = Source(
            recipe="pytorch-pascal",
            name=name,
            python=py,
            url=art.url,
            sha256=art.sha256,
            file_name=art.file_name,
            patched=True,
            pinned_by=f"{channel} linux-64 repodata (py-rattler Gateway): {art.file_name}",
        )
        before = next(((s.url, s.sha256) for s in old if s.python == py), None)
        changed = before != (src.url, src.sha256)
        p.pin(f"pytorch overlay py{py}", art.file_name, f"{channel} repodata, sha256 {art.sha256}", changed)
        sources.append(src)
    reqs = _overlay_requirements(base, list(found.values()), triton) if found else None
    return sources, reqs


def _overlay_from_spec(
    p: _Planner, base: Stack, torch: str, why: str
) -> tuple[list[Source], RecipeRequirements | None]:
    """Overlay artifacts pinned by a stack of the spec with the same torch and CUDA (``why``: why not
    from the channel)."""
    origin = p.spec.origin
    p.notes.append(f"{why}: taking overlay artifacts from {origin}")
    donors = [s for s in (base, *p.spec.stacks) if s.torch == torch and s.cuda == base.cuda and not s.draft]
    for donor in donors:
        arts = [s for s in donor.sources_for("pytorch-pascal") if s.patched]
        if {s.python for s in arts} >= set(base.python):
            arts = [s for s in arts if s.python in base.python]
            for s in arts:
                p.pin(
                    f"pytorch overlay py{s.python}",
                    s.file_name or s.url,
                    f"stack {donor.name} of {origin} (not from the channel, see notes)",
                    False,
                )
            return arts, donor.requirements.get("pytorch-pascal")
    p.block(
        "pytorch overlay artifacts",
        f"{why}, and no stack of {origin} pins conda-forge's pytorch {torch} (CUDA {base.cuda}) for "
        f"Python {', '.join(base.python)}",
        f'run where conda-forge is reachable, or add a stack with torch = "{torch}" and its pytorch-pascal '
        "sources (url + sha256 per Python, cited) to a --spec file and run again; or narrow python",
        pin=True,
    )
    return [], None


def _overlay_requirements(base: Stack, arts: list[CondaArtifact], triton: str) -> RecipeRequirements:
    """The artifacts' own depends, triton swapped for the Pascal build; per-Python where they differ."""
    per = {a.python: set(a.depends) for a in arts}
    common = set.intersection(*per.values())
    old = base.requirements.get("pytorch-pascal", RecipeRequirements())
    run = [Dependency(f"triton =={triton} *pascal*", note=f"replaces upstream triton {triton}.*")]
    run += [Dependency(d) for d in sorted(common) if not d.startswith("triton ")]
    for py in sorted(per, key=Version):
        run += [Dependency(d, py) for d in sorted(per[py] - common) if not d.startswith("triton ")]
    constrains = sorted(set.intersection(*(set(a.constrains) for a in arts)))
    return RecipeRequirements(
        build=old.build,
        host=old.host,
        run=tuple(run),
        run_constraints=tuple(Dependency(c) for c in constrains),
    )


def _torch_check_copy(p: _Planner, base: Stack, torch: str, wheel: IndexFile) -> list[Source]:
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


# ---- requirements --------------------------------------------------------------------------

_PASCAL_PIN = re.compile(r"^(pytorch|triton) ==\S+ \*pascal\*$")


def _repin(deps: tuple[Dependency, ...], torch: str, triton: str) -> tuple[Dependency, ...]:
    """Point `pytorch/triton ==X *pascal*` requirements at the new versions."""
    out = []
    for dep in deps:
        m = _PASCAL_PIN.match(dep.spec)
        version = (torch if m.group(1) == "pytorch" else triton) if m else ""
        out.append(replace(dep, spec=f"{m.group(1)} =={version} *pascal*") if m else dep)
    return tuple(out)


def _requirements(
    base: Stack, torch: str, triton: str, tree: Path, overlay: RecipeRequirements | None
) -> dict[str, RecipeRequirements]:
    out = {}
    for recipe, reqs in base.requirements.items():
        out[recipe] = RecipeRequirements(
            build=_repin(reqs.build, torch, triton),
            host=_repin(reqs.host, torch, triton),
            run=_repin(reqs.run, torch, triton),
            run_constraints=_repin(reqs.run_constraints, torch, triton),
        )
    if overlay is not None:
        out["pytorch-pascal"] = RecipeRequirements(
            build=overlay.build,
            host=overlay.host,
            run=_repin(overlay.run, torch, triton),
            run_constraints=overlay.run_constraints,
        )
    run, _ = derived_run(torch, triton, base.python, tree)
    vllm = out.get("vllm-pascal", RecipeRequirements())
    out["vllm-pascal"] = replace(vllm, run=run)
    return out


# ---- carrying the patches forward ----------------------------------------------------------


@dataclass(frozen=True)
class Watch:
    """A known upstream change that a stack entering ``versions`` must answer (DESIGN.md)."""

    upstream: str
    versions: str
    file: str  # a patch of the series must target it ("" = review only, reported as a note)
    what: str


WATCHES: tuple[Watch, ...] = (
    Watch(
        "torch",
        ">=2.8",
        "torch/_dynamo/device_interface.py",
        "torch >= 2.8 adds a third Inductor capability gate (is_triton_capable in "
        "torch/_dynamo/device_interface.py) next to torch/utils/_triton.py and the scheduler's",
    ),
    Watch(
        "vllm",
        ">=0.10.2",
        "",
        "vLLM >= 0.10.2 runs the V1 engine on cc < 8 (V0, with its XFORMERS attention, is gone): the "
        "Python-side patches were made for V0 paths and need review against V1's attention backends",
    ),
)


def _watch(p: _Planner, base: Stack, upstream: str, version: str, series: tuple[PatchEntry, ...]) -> None:
    for w in WATCHES:
        if w.upstream != upstream or Version(version) not in SpecifierSet(w.versions):
            continue
        if w.file and not any(w.file in patch.targets for patch in series):
            p.block(
                f"{upstream} {version}",
                f"{w.what}; no patch covering {version} targets {w.file}",
                f"add a patch for {w.file} to the library (versions covering {version})",
            )
        elif not w.file and Version(base.version_of(upstream)) not in SpecifierSet(w.versions):
            p.notes.append(w.what)


def _carry_patches(
    p: _Planner, base: Stack, stack: Stack
) -> tuple[tuple[RecipeCheck, ...], tuple[RecipeCheck, ...]]:
    checks, trials = [], []
    for kind in RECIPES:
        version = stack.version_of(kind.upstream)
        series = p.spec.patches_for(kind.upstream, version)
        p.log(f"[{kind.recipe}] carrying {len(series)} patch(es) forward to {kind.upstream} {version} …")
        _watch(p, base, kind.upstream, version, series)
        if not series:
            old = p.spec.patches_for(kind.upstream, base.version_of(kind.upstream))
            p.block(
                f"{kind.recipe} patches",
                f"no patch in {p.spec.patch_library / kind.upstream / 'series.toml'} covers {kind.upstream} "
                f"{version}; a recipe without them would ship stock {kind.upstream}",
                "port the patches (the trial in this report shows which of the base's still apply) and widen their "
                "`versions` in series.toml",
            )
            if old:
                trials.append(
                    check_recipe(p.spec, stack, kind.recipe, p.opts.cache, p.opts.local, True, old, True)
                )
            continue
        chk = check_recipe(p.spec, stack, kind.recipe, p.opts.cache, p.opts.local, True, series, True)
        checks.append(chk)
        _judge(p, base, stack, kind.recipe, series, chk)
    return tuple(checks), tuple(trials)


def _judge(
    p: _Planner, base: Stack, stack: Stack, recipe: str, series: tuple[PatchEntry, ...], chk: RecipeCheck
) -> None:
    for r in chk.results:
        if r.outcome == Outcome.FAILED:
            p.block(
                f"patch {r.patch.id}",
                f"{recipe}: {r.summary}",
                f"refresh {r.patch.path} against the new source",
            )
        elif r.outcome == Outcome.ALREADY:
            p.block(
                f"patch {r.patch.id}",
                f"{recipe}: obsolete, the change is already upstream",
                f"narrow its `versions` ({r.patch.versions}) in series.toml to exclude this release",
            )
    unchecked = [r for r in chk.results if r.outcome == Outcome.NOT_CHECKED]
    if not unchecked:
        return
    same_source = stack.check_sources_for(recipe) == base.check_sources_for(recipe)
    upstream = recipe_kind(recipe).upstream
    same_series = series == p.spec.patches_for(upstream, base.version_of(upstream))
    if same_source and same_series:
        p.notes.append(
            f"{recipe}: patches not checked here ({chk.verified}); source pins and patch series are the same "
            f"as {base.name}'s, so its proof carries over (`pascal-forge check --stack {base.name}`)"
        )
        return
    names = sorted({s.name for s in stack.check_sources_for(recipe)})
    p.block(
        f"{recipe} patches",
        f"not checked: {chk.verified}",
        "pass --source-dir " + " or ".join(f"{n}=DIR" for n in names) + " so the new source can be checked",
    )


# ---- small helpers -------------------------------------------------------------------------


def _check_commit(name: str, rev: str) -> None:
    if not _COMMIT.match(rev):
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


# --------------------------------------------------------------------------------------------
# Writing: the stack as a marked block of templated TOML in the user's spec file


SPEC_HEADER = (
    "# pascal-forge spec: stacks here are merged over the built-in spec (see README, Commands).\nschema = 1\n"
)


def markers(name: str) -> tuple[str, str]:
    return f'# BEGIN stack "{name}"', f'# END stack "{name}"'


def stack_block(plan: UpdatePlan, draft: str = "") -> str:
    from pascal_forge.recipes.render import environment

    begin, end = markers(plan.stack.name)
    return (
        environment()
        .get_template("stack.toml.j2")
        .render(
            stack=replace(plan.stack, draft=" ".join(draft.split())),
            base=plan.base,
            requirements=plan.requirements_to_write(),
            begin=begin,
            end=end,
        )
    )


def spec_with_stack(text: str, block: str, name: str, origin: str) -> str:
    """``text`` with ``block`` replacing the marked block of stack ``name``, or appended."""
    begin, end = markers(name)
    if begin in text:
        start = text.index(begin)
        stop = text.find(end, start)
        if stop < 0:
            raise SpecError(
                f"{origin}: '{begin}' has no '{end}'", "restore the end marker or remove the block"
            )
        return text[:start] + block.rstrip("\n") + text[stop + len(end) :]
    try:
        existing = tomllib.loads(text).get("stacks", {})
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{origin}: not valid TOML: {exc}", "fix the syntax first") from exc
    if name in existing:
        raise SpecError(
            f"{origin} already defines stack {name!r} by hand (no '{begin}' marker)",
            f'remove [stacks."{name}"] from {origin} (or rename it), then run update again',
        )
    return text.rstrip("\n") + "\n\n" + block


@dataclass(frozen=True)
class Written:
    spec: Path
    recipes: Path | None  # None for a draft: its recipes are not rendered
    files: int


def write_update(plan: UpdatePlan, spec_path: Path, out: Path, draft: str = "") -> Written:
    """Add the stack to ``spec_path`` and render its recipes into ``out``; all or nothing.

    The new spec text is validated by loading it before anything is written, the recipes are
    rendered in memory, then written beside ``out`` and swapped in (render.write_tree), and the
    spec file is replaced last through a temporary file. A draft stack gets no recipes.
    """
    from pascal_forge.recipes.render import render_tree, write_tree
    from pascal_forge.stack.spec import load_spec

    existing = spec_path.read_text("utf-8") if spec_path.exists() else SPEC_HEADER
    text = spec_with_stack(existing, stack_block(plan, draft), plan.stack.name, str(spec_path))
    spec = load_spec(spec_path, text=text)
    stack = spec.stack(plan.stack.name)
    files = () if stack.draft else render_tree(spec, stack.name)
    spec_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = spec_path.with_name(f".{spec_path.name}.update-tmp")
    try:
        tmp.write_text(text, "utf-8")
        if files:
            write_tree(files, out)
        tmp.replace(spec_path)
    finally:
        tmp.unlink(missing_ok=True)
    return Written(spec_path, out if files else None, len(files))
