"""`pascal-forge survey`: every vLLM release on the index, one row each, into docs/releases.md.

For each release from --from to --to (final releases, yanked ones skipped): the sdist (sha256 from
the Simple API, downloaded into the cache and verified), torch's pin (requirements/cuda.txt),
triton's pin (the torch wheel's PEP 658 metadata), CUDA_SUPPORTED_ARCHS branches and external
CMake projects (the sdist's CMake files), every vLLM patch of the base stack (the newest stack not
newer than the release) carried with the ladder, the engine/attention path and a verdict.
Rows are cached by sdist sha256 and patch-library digest: a warm rerun reads them in seconds.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from packaging.version import Version

from pascal_forge.console import log
from pascal_forge.stack.model import Spec, Stack
from pascal_forge.update.survey import Branch, PatchStatus, ReleaseRow

DOC = Path("docs/releases.md")
ROW_SCHEMA = "1"


def library_digest(spec: Spec) -> str:
    """Changes whenever a series.toml or a patch file changes (the rows' carry column depends on it)."""
    digest = hashlib.sha256(ROW_SCHEMA.encode())
    for path in sorted(spec.patch_library.rglob("*")):
        if path.is_file() and path.suffix in {".toml", ".patch"}:
            digest.update(path.relative_to(spec.patch_library).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _row_from(data: dict[str, Any]) -> ReleaseRow:
    data = dict(data)
    data["branches"] = tuple(Branch(**b) for b in data["branches"])
    data["patches"] = tuple(PatchStatus(**p) for p in data["patches"])
    data["external"] = tuple(data["external"])
    data["human"] = tuple(data["human"])
    return ReleaseRow(**data)


class Surveyor:
    def __init__(self, spec: Spec, cache: Path, index_url: str, base: str | None) -> None:
        from pascal_forge.update.upstream import SimpleIndex

        self.spec = spec
        self.cache = cache
        self.index = SimpleIndex(index_url)
        self.base = base
        self.digest = library_digest(spec)
        self._pristine: dict[str, dict[str, dict[str, str]]] = {}
        self._triton: dict[str, str] = {}

    def releases(self, low: str, high: str) -> list[str]:
        out = []
        for v in self.index.versions("vllm"):
            ver = Version(v)
            if ver.is_prerelease or ver.is_devrelease or not Version(low) <= ver <= Version(high):
                continue
            if any(
                f.is_sdist and not f.yanked and Version(f.version) == ver for f in self.index.files("vllm")
            ):
                out.append(v)
        return out

    def row(self, version: str) -> tuple[ReleaseRow, bool]:
        sdist = self.index.sdist("vllm", version)
        path = self.cache / "survey" / f"vllm-{version}-{sdist.sha256[:16]}-{self.digest}.json"
        if path.is_file():
            return _row_from(json.loads(path.read_text("utf-8"))), True
        row = self._survey(version, sdist)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(row), sort_keys=True), "utf-8")
        tmp.replace(path)
        return row, False

    def _base_files(self, base: Stack) -> dict[str, dict[str, str]]:
        from pascal_forge.stack.sources import obtain
        from pascal_forge.update.ladder import base_files

        if base.name not in self._pristine:
            tree = obtain(base.patched_source("vllm-pascal"), self.cache).tree
            series = self.spec.patches_for("vllm", base.vllm)
            self._pristine[base.name] = {e.id: base_files(e, tree) for e in series}
        return self._pristine[base.name]

    def _triton_of(self, torch: str) -> str:
        from pascal_forge.update.upstream import pinned_requirement

        if torch not in self._triton:
            wheels = [w for w in self.index.linux_wheels("torch", torch) if "-cp312-cp312-" in w.filename]
            if not wheels:
                self._triton[torch] = "? (no cp312 manylinux wheel)"
            else:
                found = pinned_requirement(
                    self.index.metadata(wheels[0]).get_all("Requires-Dist") or [], "triton", "3.12"
                )
                self._triton[torch] = found[0] if found else "? (no exact pin)"
        return self._triton[torch]

    def _survey(self, version: str, sdist: Any) -> ReleaseRow:
        from pascal_forge.stack.sources import unpack
        from pascal_forge.update import survey
        from pascal_forge.update.ladder import carry_patch
        from pascal_forge.update.plan import choose_base
        from pascal_forge.update.requirements import read_requirement_files
        from pascal_forge.update.rules import Intents, load_intents
        from pascal_forge.update.upstream import pinned_requirement

        archive = self.index.download(sdist, self.cache, log)
        tree = unpack(archive, self.cache / "trees" / "survey--vllm")
        found = pinned_requirement(read_requirement_files(tree, ("cuda.txt",)), "torch", "3.12")
        torch = found[0] if found else "?"
        # A release a stack targets is carried from that stack (its own series); others from the newest older one.
        own = [s for s in self.spec.stacks if s.vllm == version and not s.draft and not self.base]
        base = own[0] if own else choose_base(self.spec, version, self.base)
        intents = load_intents(self.spec.patch_library / "vllm" / "series.toml")
        pristine = self._base_files(base)
        carries = tuple(
            carry_patch(e, pristine[e.id], tree, intents.get(e.id, Intents()), version, base.vllm)
            for e in self.spec.patches_for("vllm", base.vllm)
        )
        branches = survey.arch_branches(survey.read(tree, "CMakeLists.txt"))
        engine, attention = survey.engine_and_attention(tree)
        verdict, human = survey.verdict(branches, carries)
        return ReleaseRow(
            vllm=version,
            sdist=sdist.filename,
            sha256=sdist.sha256,
            torch=torch,
            triton=self._triton_of(torch) if torch != "?" else "?",
            branches=branches,
            external=survey.external_projects(tree),
            patches=tuple(survey.patch_status(c) for c in carries),
            engine=engine,
            attention=attention,
            verdict=verdict,
            human=human,
            base=base.name,
        )
