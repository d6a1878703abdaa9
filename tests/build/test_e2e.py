"""End to end: the real pytorch overlay built by the engine, a channel, an install, a doctor run.

1. The pytorch-pascal recipe, rendered from the built-in spec with its py3.12 artifact pointed at
   the synthetic upstream (tests/helpers/synthetic.py, served by a real HTTP server on 127.0.0.1), is
   built by `pascal-forge build` with the rattler-build engine. Its build environment (python,
   zstandard, patch) comes from a stand-in channel: `python` runs this interpreter, `patch` is
   GNU patch (conda-forge, which has the real ones, is unreachable here).
2. The channel gets metadata-faithful stand-ins for triton and vllm-pascal: the name, version,
   build string and run requirements the real recipes render to, with small payloads (a ptxas
   link, a vllm dist-info, extensions with sm_60/sm_61 fatbins from tests/data/fatbin).
3. py-rattler installs `vllm-pascal` from that channel plus the conda-forge stand-in; the prefix
   must hold the Pascal triton build and the patched gates, relocated, and `pascal-forge doctor`
   must find nothing wrong but the missing GPU.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import rattler

from helpers import pascal_env
from helpers.condapkgs import Executable, Pkg, install_prefix, make_channel, make_package
from helpers.synthetic import (
    GATE_FILES,
    PLACEHOLDER,
    SP,
    UPSTREAM_CONSTRAINS,
    UPSTREAM_DEPENDS,
    synthetic_pytorch,
)
from pascal_forge.build import overlay
from pascal_forge.build.backends import BuildOptions, build_channel
from pascal_forge.build.channel import add_packages, consistency_problems, read_packages
from pascal_forge.build.resolve import planned_records, raise_on_failure, resolve_check
from pascal_forge.recipes.render import render_tree
from pascal_forge.recipes.tree import write_tree
from pascal_forge.stack.spec import load_spec

pytestmark = pytest.mark.integration
PASCAL_TRITON = "triton ==3.2.0 *pascal*"


@pytest.fixture(scope="module")
def served_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """The synthetic artifact behind a real HTTP server (its own process: the engine holds the GIL
    while it downloads, so an in-process server thread could not answer)."""
    from helpers.torchfiles import copy_pristine

    root = tmp_path_factory.mktemp("upstream-http")
    artifact = synthetic_pytorch(root, copy_pristine(tmp_path_factory.mktemp("torch")))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port), "--directory", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield artifact, f"http://127.0.0.1:{port}/{artifact.name}"
    finally:
        server.terminate()
        server.wait()


@pytest.fixture(scope="module")
def recipes(tmp_path_factory: pytest.TempPathFactory, served_upstream: tuple[Path, str]) -> Path:
    """The built-in stack for Python 3.12, its overlay artifact pinned to the synthetic upstream."""
    artifact, url = served_upstream
    spec = load_spec()
    stack = spec.stack()
    sha = hashlib.sha256(artifact.read_bytes()).hexdigest()
    sources = tuple(
        dataclasses.replace(s, url=url, sha256=sha) if s.name == "pytorch-conda-forge" else s
        for s in stack.sources
        if not (s.name == "pytorch-conda-forge" and s.python != "3.12")
    )
    stack = dataclasses.replace(stack, python=("3.12",), sources=sources)
    out = tmp_path_factory.mktemp("e2e") / "recipes"
    write_tree(render_tree(dataclasses.replace(spec, stacks=(stack,)), stack.name), out)
    return out


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory, recipes: Path) -> Path:
    root = tmp_path_factory.mktemp("e2e-channel")
    build_env = make_channel(
        root / "build-env",
        [  # real conda-forge names and build strings (array-api-extra pixi.lock / conda-forge)
            Pkg(
                "python",
                "3.12.9",
                "h9e4cc4f_0_cpython",
                files={"bin/python": Executable(f'#!/bin/sh\nexec {sys.executable} "$@"\n'.encode())},
            ),
            Pkg("zstandard", "0.23.0", "py312hef9b889_1", depends=("python >=3.12,<3.13.0a0",)),
            Pkg(
                "patch",
                "2.7.6",
                "h7f98852_1002",
                files={"bin/patch": Executable(b'#!/bin/sh\nexec /usr/bin/patch "$@"\n')},
            ),
        ],
    )
    channel = root / "channel"
    outcomes = build_channel(
        recipes,
        BuildOptions(
            channel_dir=channel, channels=(build_env.as_uri(),), only=("pytorch-pascal",), test="skip"
        ),
        lambda _: None,
    )
    assert [o.status for o in outcomes] == ["built"]
    # Stand-ins for the two packages that take hours (triton: LLVM; vllm-pascal: CUDA kernels).
    files = {"triton": pascal_env.triton_files(pascal=True), "vllm-pascal": pascal_env.vllm_files()}
    staged = root / "standins"
    built = {}
    for rec in planned_records(recipes):
        if rec.name in files:
            pkg = Pkg(
                rec.name,
                rec.version,
                rec.build,
                rec.depends,
                rec.constrains,
                rec.build_number,
                files=files[rec.name],
            )
            built[make_package(pkg, staged)] = "metadata-faithful stand-in"
    add_packages(channel, "linux-64", built)
    return channel


def _index(package: Path) -> dict[str, object]:
    work = package.parent / f".{package.name}.x"
    overlay.extract(package, work)
    return json.loads((work / "info" / "index.json").read_text("utf-8")) | {
        "paths": json.loads((work / "info" / "paths.json").read_text("utf-8"))["paths"],
        "root": str(work),
    }


def test_engine_built_overlay_is_upstream_plus_the_gate_patches(
    channel: Path, served_upstream: tuple[Path, str]
) -> None:
    (pkg,) = sorted((channel / "linux-64").glob("pytorch-*.conda"))
    ours = _index(pkg)
    theirs = _index(served_upstream[0])
    assert (ours["name"], ours["version"]) == ("pytorch", "2.6.0")
    assert str(ours["build"]).startswith("cuda126_mkl_py312_pascal_h") and str(ours["build"]).endswith("_300")
    assert rattler.MatchSpec("pytorch ==2.6.0 cuda126_mkl_*_300").matches(
        rattler.PackageRecord(
            name=rattler.PackageName("pytorch"),
            version=rattler.VersionWithSource("2.6.0"),
            build=rattler.BuildString(str(ours["build"])),
            build_number=300,
            subdir="linux-64",
            arch=None,
            platform=None,
        )
    )
    norm = sorted(
        str(rattler.MatchSpec(d)) for d in overlay.overlay_depends(list(UPSTREAM_DEPENDS), PASCAL_TRITON)
    )
    assert sorted(str(rattler.MatchSpec(d)) for d in ours["depends"]) == norm  # type: ignore[attr-defined]
    assert sorted(ours["constrains"]) == sorted(UPSTREAM_CONSTRAINS)  # type: ignore[call-overload]
    # Every upstream file is in the package; only the gates differ; placeholders stay relocatable.
    mine = {e["_path"]: e for e in ours["paths"]}  # type: ignore[attr-defined]
    for entry in theirs["paths"]:  # type: ignore[attr-defined]
        rel = entry["_path"]
        assert rel in mine, rel
        if entry.get("prefix_placeholder"):
            assert mine[rel]["file_mode"] == entry["file_mode"]
            assert mine[rel]["prefix_placeholder"], f"{rel} lost its prefix record"
            continue
        if entry["path_type"] == "softlink":
            assert mine[rel]["path_type"] == "softlink"
            continue
        same = mine[rel]["sha256"] == entry["sha256"]
        assert same == (rel not in {f"{SP}/{g}" for g in GATE_FILES}), rel
    extra = set(mine) - {e["_path"] for e in theirs["paths"]}  # type: ignore[attr-defined]
    assert all("__pycache__" in p or p.startswith("etc/conda/test-files/") for p in extra), extra


def test_channel_is_consistent_and_resolves_only_to_pascal_builds(
    channel: Path, standin_upstream: Path
) -> None:
    assert consistency_problems(channel) == []
    assert sorted(p.name for p in read_packages(channel)) == ["pytorch", "triton", "vllm-pascal"]
    results = resolve_check(channel, (str(standin_upstream),))
    raise_on_failure(results)
    assert any(r.status == "ok" and r.case.root == "vllm-pascal" for r in results)


@pytest.fixture(scope="module")
def prefix(channel: Path, standin_upstream: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    prefix = tmp_path_factory.mktemp("user") / "env"
    install_prefix(
        prefix, [channel, standin_upstream], ["vllm-pascal", "python 3.12.*"], tmp_path_factory.mktemp("pkgs")
    )
    return prefix


def test_vllm_pascal_installs_with_the_pascal_triton_and_patched_torch(prefix: Path) -> None:
    records = {
        json.loads(p.read_text("utf-8"))["name"]: json.loads(p.read_text("utf-8"))
        for p in (prefix / "conda-meta").glob("*.json")
    }
    assert "_pascal_h" in records["triton"]["build"]
    assert "_pascal_h" in records["pytorch"]["build"]
    assert "_pascal_h" in records["vllm-pascal"]["build"]
    gate = (prefix / SP / "torch" / "utils" / "_triton.py").read_text("utf-8")
    assert "get_device_properties().major >= 6" in gate
    scheduler = (prefix / SP / "torch" / "_inductor" / "scheduler.py").read_text("utf-8")
    assert "Capability >= 6.0" in scheduler or "major < 6" in scheduler
    # Files that carried conda-forge's placeholder now carry this prefix.
    torchrun = (prefix / "bin" / "torchrun").read_text("utf-8")
    assert torchrun.startswith(f"#!{prefix}/bin/python3.12\n"), torchrun.splitlines()[0]
    blob = (prefix / "lib" / "libtorch_probe.bin").read_bytes()
    assert f"{prefix}/lib".encode() + b"\x00" in blob
    assert PLACEHOLDER.encode() not in blob


def test_doctor_finds_nothing_wrong_but_the_missing_gpu(prefix: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "pascal_forge", "doctor", "--prefix", str(prefix), "--json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},  # no nvidia-smi here: the GPU checks cannot run
    )
    rows = {r["check"]: r for r in json.loads(run.stdout)}
    not_ok = {k: (r["status"], r["detail"]) for k, r in rows.items() if r["status"] != "ok"}
    assert set(not_ok) == {"gpu", "driver"}, not_ok
    assert all(status == "not checked" for status, _ in not_ok.values())
    assert run.returncode == 0, run.stderr
