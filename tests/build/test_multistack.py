"""Several stacks in one channel: build/resolve-check select them, and the planned channel of
vllm-0.8.5 + vllm-0.26.0 is solved per vllm-pascal version against the conda-forge stand-in."""

from __future__ import annotations

from pathlib import Path

import pytest

from pascal_forge.build.resolve import planned_channel, resolve_check
from pascal_forge.build.stacks import render_stacks, select_stacks
from pascal_forge.errors import SpecError
from pascal_forge.stack.spec import load_spec


def test_select_stacks() -> None:
    spec = load_spec()
    assert [s.name for s in select_stacks(spec, None, False)] == [spec.default_stack]
    names = ["vllm-0.8.5", "vllm-0.26.0", "vllm-0.8.5"]
    assert [s.name for s in select_stacks(spec, names, False)] == ["vllm-0.8.5", "vllm-0.26.0"]
    every = [s.name for s in select_stacks(spec, None, True)]
    assert {"vllm-0.8.5", "vllm-0.11.0", "vllm-0.26.0"} <= set(every)
    with pytest.raises(SpecError, match="--all-stacks and --stack"):
        select_stacks(spec, ["vllm-0.8.5"], True)


@pytest.mark.integration
def test_two_stacks_one_planned_channel(tmp_path: Path, standin_upstream: Path) -> None:
    spec = load_spec()
    trees = render_stacks(spec, select_stacks(spec, ["vllm-0.8.5", "vllm-0.26.0"], False), tmp_path / "r")
    assert [t.name for t in trees] == ["vllm-0.8.5", "vllm-0.26.0"]
    local = tmp_path / "planned"
    for tree in trees:
        planned_channel(tree, local)
    results = resolve_check(local, (str(standin_upstream),))
    by_root: dict[str, list[str]] = {}
    for r in results:
        by_root.setdefault(r.case.root, []).append(f"{r.case.python} {r.status}")
    # one root per vllm-pascal version, each for the Pythons it serves
    assert {r.case.python for r in results if r.case.root == "vllm-pascal ==0.8.5"} == {"3.10", "3.12"}
    assert {r.case.python for r in results if r.case.root == "vllm-pascal ==0.26.0"} == {"3.11", "3.14"}
    old = [r for r in results if r.case.root == "vllm-pascal ==0.8.5"]
    assert old and all(r.status == "ok" for r in old if r.case.local_first)
    # the Pascal triton 3.6.0 solves for py311/py314 from the real conda-forge records of its deps
    t36 = [r for r in results if r.case.root.startswith("triton") and r.case.python in ("3.11", "3.14")]
    assert t36 and all(r.status == "ok" for r in t36 if r.case.local_first), by_root
    assert all("3.6.0" in p.version for r in t36 for p in r.picked if p.name == "triton")
    assert not [r for r in results if r.status in ("stock", "elsewhere", "loose-pin")]
    # vllm-pascal 0.26.0 solves Pascal-only for each Python it serves: with the Pascal pytorch and
    # triton of this channel, CUDA 12.9's cuda-cudart-dev (triton's run dependency for cuda.h) from
    # real records, and none of the sm_80+-only packages the requirements patch leaves out.
    new = [r for r in results if r.case.root == "vllm-pascal ==0.26.0" and r.case.local_first]
    assert new and all(r.status == "ok" for r in new), by_root
    for r in new:
        picked = {p.name: p for p in r.picked}
        assert picked["vllm-pascal"].version == "0.26.0"
        assert picked["pytorch"].version == "2.11.0" and "pascal" in picked["pytorch"].build
        assert picked["triton"].version == "3.6.0" and "pascal" in picked["triton"].build
        assert picked["cuda-cudart-dev"].version.startswith("12.9.")
        assert picked["cuda-version"].version == "12.9"
        assert not {"flashinfer-python", "tilelang", "nvidia-cutlass-dsl", "humming-kernels"} & set(picked)
    t211 = [r for r in results if r.case.root.startswith("pytorch") and r.case.python in ("3.11", "3.14")]
    assert t211 and all(r.status == "ok" for r in t211 if r.case.local_first), by_root
