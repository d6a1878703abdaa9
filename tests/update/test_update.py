"""`pascal-forge update`: discovery through a real PEP 691 server on 127.0.0.1, patch carry-forward,
writing (all or nothing), drafts, and faults that must leave nothing written."""

from __future__ import annotations

import difflib
import hashlib
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers.pypi_server import Fault, LocalIndex, closed_port_url, sdist, serve, serve_directory, wheel
from pascal_forge.cli import main
from pascal_forge.stack.patches import hunk_text
from pascal_forge.stack.spec import load_spec
from pascal_forge.update.fetches import cmake_fetches
from pascal_forge.update.write import spec_with_stack

BODY = "".join(f"line {i}\n" for i in range(1, 21))
FLASHMLA = "575f7724b9762f265bbee5889df9c7d630801845"
CUTLASS = "e94e888df3551224738bfa505787b515eae8352f"
LLVM_32 = "b5cc222d7429fe6f18c787f633d5262fac2e676f"
LLVM_33 = "a" * 40
PATCHED_PREFIX = BODY.replace("line 10\n", "line 10 pascal tiles\n")
PATCHED_MOE = BODY.replace("line 5\n", "line 5 half atomicAdd\n")
PATCHED_TORCH = BODY.replace("line 12\n", "line 12 major >= 6\n")
PATCHED_TRITON = BODY.replace("line 3\n", "line 3 extf\n")
TORCH_GATE = "torch/utils/_triton.py"
DEVICE_INTERFACE = "torch/_dynamo/device_interface.py"
TRITON_FILE = "lib/Dialect/TritonGPU/Transforms/AccelerateMatmul.cpp"


def udiff(path: str, old: str, new: str) -> str:
    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"a/{path}", f"b/{path}"))


def vllm_tree(torch: str = "2.6.0", prefix: str = BODY, moe: str = BODY) -> dict[str, str]:
    return {
        "requirements/common.txt": "requests >= 2.26.0\nnumpy\n",
        "requirements/cuda.txt": (
            f"-r common.txt\ntorch=={torch}\n"
            "xformers==0.0.29.post2; platform_system == 'Linux' and platform_machine == 'x86_64'\n"
        ),
        "CMakeLists.txt": (
            'set(CUTLASS_REVISION "v3.9.0" CACHE STRING "CUTLASS revision to use")\n'
            "FetchContent_Declare(\n  cutlass\n  GIT_REPOSITORY https://github.com/nvidia/cutlass.git\n"
            "  # Please keep this in sync with CUTLASS_REVISION line above.\n"
            "  GIT_TAG ${CUTLASS_REVISION}\n  GIT_SHALLOW TRUE\n)\n"
        ),
        "cmake/external_projects/flashmla.cmake": (
            "FetchContent_Declare(\n  flashmla\n  GIT_REPOSITORY https://github.com/vllm-project/FlashMLA.git\n"
            f"  GIT_TAG {FLASHMLA}\n)\n"
        ),
        # The CPU build's fetch is not part of the CUDA build: it must not block.
        "cmake/cpu_extension.cmake": (
            "FetchContent_Declare(oneDNN GIT_REPOSITORY https://github.com/oneapi-src/oneDNN.git GIT_TAG v3.7.1)\n"
        ),
        "vllm/attention/ops/prefix_prefill.py": prefix,
        "csrc/moe/moe_wna16.cu": moe,
    }


def torch_metadata(version: str, triton: str) -> bytes:
    return (
        f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\n"
        "Requires-Dist: filelock\n"
        f'Requires-Dist: triton (=={triton}) ; platform_system == "Linux" and platform_machine == "x86_64"\n'
        'Requires-Dist: sympy==1.13.1; python_version >= "3.9"\n'
    ).encode()


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@dataclass(frozen=True)
class World:
    index: LocalIndex
    spec: Path
    triton_repo: Path
    triton_32: str
    triton_33: str
    cache: Path
    tmp: Path

    def args(self, *extra: str) -> list[str]:
        return [
            "update",
            "--spec",
            str(self.spec),
            "--index-url",
            self.index.index_url,
            "--conda-channel",
            closed_port_url(),
            "--cache-dir",
            str(self.cache),
            "--timeout",
            "5",
            "--retries",
            "1",
            *extra,
        ]


def write_library(root: Path) -> None:
    series = {
        "vllm": [
            ("prefix-tiles", "vllm/attention/ops/prefix_prefill.py", PATCHED_PREFIX, ">=0.8.5,<0.8.6"),
            ("moe-half-atomicadd", "csrc/moe/moe_wna16.cu", PATCHED_MOE, ">=0.8.5,<0.8.6"),
        ],
        "torch": [("gate-utils-triton", TORCH_GATE, PATCHED_TORCH, "==2.6.0")],
        "triton": [("dot-fp16-extf", TRITON_FILE, PATCHED_TRITON, "==3.2.0")],
    }
    for upstream, patches in series.items():
        folder = root / upstream
        folder.mkdir(parents=True)
        entries = []
        for n, (pid, target, new, versions) in enumerate(patches, 1):
            name = f"{n:04d}-{pid}.patch"
            (folder / name).write_text(udiff(target, BODY, new))
            entries.append(
                f'[[patch]]\nid = "{pid}"\nfile = "{name}"\nversions = "{versions}"\n'
                f'targets = ["{target}"]\nreason = "test patch"\nproof = "tests/update/test_update.py"\n'
            )
        (folder / "series.toml").write_text("\n".join(entries))


def base_spec(index: LocalIndex, triton_rev: str) -> str:
    vllm = index.file_url("vllm", "vllm-0.8.5.tar.gz")
    whl = "torch-2.6.0-cp311-cp311-manylinux1_x86_64.whl"
    sha = {f["filename"]: f["hashes"]["sha256"] for p in index.pages.values() for f in p}  # type: ignore[index]
    conda = (
        f"{index.url}/conda/pytorch-2.6.0-cuda126_mkl_py312_h8bb5dc9_300.conda"  # 404: conda-forge stand-in
    )
    return f"""\
default_stack = "base"
patch_library = "patchlib"

[stacks.base]
vllm = "0.8.5"
torch = "2.6.0"
triton = "3.2.0"
cuda = "12.6"
python = ["3.12"]
archs = ["6.0", "6.1"]

[[stacks.base.sources]]
recipe = "triton-pascal"
name = "triton"
git = "https://github.com/triton-lang/triton.git"
rev = "{triton_rev}"
patched = true
pinned_by = "test: tag v3.2.0 of the test repository"

[[stacks.base.sources]]
recipe = "triton-pascal"
name = "llvm-project"
git = "https://github.com/llvm/llvm-project.git"
rev = "{LLVM_32}"
target = "llvm-project"
pinned_by = "test: cmake/llvm-hash.txt"

[[stacks.base.sources]]
recipe = "pytorch-pascal"
name = "pytorch-conda-forge"
python = "3.12"
url = "{conda}"
sha256 = "{"f0" * 32}"
file_name = "pytorch-2.6.0-cuda126_mkl_py312_h8bb5dc9_300.conda"
patched = true
pinned_by = "test stand-in"

[[stacks.base.sources]]
recipe = "pytorch-pascal"
name = "torch-pypi-wheel"
url = "{index.file_url("torch", whl)}"
sha256 = "{sha[whl]}"
check_only = true
pinned_by = "test index"

[[stacks.base.sources]]
recipe = "vllm-pascal"
name = "vllm"
url = "{vllm}"
sha256 = "{sha["vllm-0.8.5.tar.gz"]}"
patched = true
pinned_by = "test index"

[[stacks.base.sources]]
recipe = "vllm-pascal"
name = "cutlass"
git = "https://github.com/NVIDIA/cutlass.git"
rev = "{CUTLASS}"
target = "cutlass"
pinned_by = "test: tag v3.9.0"

[[stacks.base.sources]]
recipe = "vllm-pascal"
name = "flashmla"
git = "https://github.com/vllm-project/FlashMLA.git"
rev = "{FLASHMLA}"
target = "flashmla"
pinned_by = "test: flashmla.cmake"

[stacks.base.requirements.triton-pascal]
build = ["compiler:c", "compiler:cxx", "stdlib:c", "cmake >=3.20", "ninja"]
host = ["python", "pip", "setuptools", "cuda-version 12.6.*"]
run = ["python", "setuptools"]

[stacks.base.requirements.pytorch-pascal]
build = ["patch"]
host = ["python", "zstandard"]
run = [
  {{ spec = "triton ==3.2.0 *pascal*", note = "replaces upstream triton 3.2.0.*" }},
  "libtorch ==2.6.0 cuda126_mkl_h8247c52_300",
  {{ spec = "python >=3.12,<3.13.0a0", python = "3.12" }},
]

[stacks.base.requirements.vllm-pascal]
build = ["compiler:c", "compiler:cxx", "compiler:cuda", "stdlib:c", "cmake >=3.26", "ninja"]
host = ["python", "pip", "pytorch ==2.6.0 *pascal*", "triton ==3.2.0 *pascal*", "cuda-version 12.6.*"]
run = ["python", "pytorch ==2.6.0 *pascal*"]
"""


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    # `update --write` without --out writes recipes/<stack> into the working directory: keep that
    # in tmp_path (a run from the checkout once committed a synthetic recipes/vllm-0.9.0).
    monkeypatch.chdir(tmp_path)
    repo = tmp_path / "triton"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / TRITON_FILE).parent.mkdir(parents=True)
    (repo / TRITON_FILE).write_text(BODY)
    (repo / "cmake").mkdir()
    (repo / "cmake" / "llvm-hash.txt").write_text(LLVM_32 + "\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "3.2.0")
    git(repo, "tag", "v3.2.0")
    triton_32 = git(repo, "rev-parse", "HEAD")
    (repo / "cmake" / "llvm-hash.txt").write_text(LLVM_33 + "\n")
    git(repo, "commit", "-qam", "3.3.0")
    git(repo, "tag", "v3.3.0")
    triton_33 = git(repo, "rev-parse", "HEAD")

    index = LocalIndex()
    with serve(index):
        index.add("vllm", "vllm-0.8.5.tar.gz", sdist("vllm", "0.8.5", vllm_tree()))
        index.add("vllm", "vllm-0.8.5.post1.tar.gz", sdist("vllm", "0.8.5.post1", vllm_tree()))
        # A release where one patch no longer fits and another is already upstream.
        drifted = vllm_tree(prefix=BODY.replace("line 11\n", "line eleven\n"), moe=PATCHED_MOE)
        index.add("vllm", "vllm-0.8.5.post2.tar.gz", sdist("vllm", "0.8.5.post2", drifted))
        index.add("vllm", "vllm-0.9.0.tar.gz", sdist("vllm", "0.9.0", vllm_tree(torch="2.7.0")))
        index.add("vllm", "vllm-0.9.0-cp38-abi3-manylinux1_x86_64.whl", b"not used")
        index.add("vllm", "vllm-0.10.2.tar.gz", sdist("vllm", "0.10.2", vllm_tree(torch="2.8.0")))
        torches = (
            ("2.6.0", "3.2.0", "manylinux1_x86_64"),
            ("2.7.0", "3.3.0", "manylinux_2_28_x86_64"),
            ("2.8.0", "3.4.0", "manylinux_2_28_x86_64"),
        )
        for version, triton, plat in torches:
            for py in ("311", "312"):
                index.add(
                    "torch",
                    f"torch-{version}-cp{py}-cp{py}-{plat}.whl",
                    wheel({TORCH_GATE: BODY, DEVICE_INTERFACE: BODY, "torch/__init__.py": ""}),
                    metadata=torch_metadata(version, triton),
                )
            index.add(
                "torch",
                f"torch-{version}-cp312-cp312-manylinux_2_28_aarch64.whl",
                b"not x86",
                metadata=torch_metadata(version, "0"),
            )
        write_library(tmp_path / "patchlib")
        spec = tmp_path / "spec.toml"
        spec.write_text(base_spec(index, triton_32))
        yield World(index, spec, repo, triton_32, triton_33, tmp_path / "cache", tmp_path)


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


# ---- the plan ------------------------------------------------------------------------------------


def test_plan_pins_everything_and_reports_each_patch(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    before = world.spec.read_bytes()
    code, out, err = run(
        world.args("--vllm", "0.8.5.post1", "--source-dir", f"triton={world.triton_repo}"), capsys
    )
    assert code == 0, err
    sha = hashlib.sha256(world.index.blobs["/files/vllm/vllm-0.8.5.post1.tar.gz"]).hexdigest()
    assert sha in out
    assert "vLLM 0.8.5.post1 requirements/cuda.txt: torch==2.6.0" in out
    assert "torch-2.6.0-cp312-cp312-manylinux1_x86_64.whl.metadata (PEP 658, sha256-verified)" in out
    assert "Requires-Dist: triton (==3.2.0)" in out
    assert "conda-forge not reachable" in out
    rows = {
        line.split()[1]: line for line in out.splitlines() if line.startswith("  ") and "-pascal " in line
    }
    assert set(rows) == {"prefix-tiles", "moe-half-atomicadd", "gate-utils-triton", "dot-fp16-extf"}
    assert all(row.rstrip().endswith("applies") for row in rows.values()), rows
    assert "GIT_TAG v3.9.0, same tag as vLLM 0.8.5" in out  # the ${CUTLASS_REVISION} tag carried the commit
    assert "oneDNN" not in out
    assert "ready:" in out
    assert world.spec.read_bytes() == before
    assert not list(world.tmp.glob("recipes-*"))
    # The triton pin came from the cp312 wheel's metadata alone; only the check-only copy (cp311) is fetched.
    assert "/simple/vllm/" in world.index.hits
    assert "/files/torch/torch-2.6.0-cp312-cp312-manylinux1_x86_64.whl.metadata" in world.index.hits
    assert not any(h.endswith("cp312-manylinux1_x86_64.whl") for h in world.index.hits)


def test_json_plan(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(world.args("--vllm", "0.8.5.post1", "--json"), capsys)
    assert code == 0
    plan = json.loads(out)
    assert plan["versions"] == {"vllm": "0.8.5.post1", "torch": "2.6.0", "triton": "3.2.0"}
    assert plan["ready"] is True
    assert plan["written"] is None
    by_recipe = {c["recipe"]: c for c in plan["patches"]}
    assert [p["result"] for p in by_recipe["vllm-pascal"]["patches"]] == ["applies cleanly"] * 2
    # triton's source is a git commit nobody passed: not checked, but the same pin as the base's.
    assert [p["result"] for p in by_recipe["triton-pascal"]["patches"]] == ["not checked"]
    assert any("proof carries over" in n for n in plan["notes"])
    assert "vllm-pascal" in plan["changed_requirements"]  # run deps derived from requirements/*.txt


def test_failing_and_obsolete_patches_block_and_write_nothing(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    before = world.spec.read_bytes()
    code, out, err = run(world.args("--vllm", "0.8.5.post2", "--write"), capsys)
    assert code == 23, err
    assert "error[update-blocked]" in err and "nothing was written" in err
    assert "fails at hunk 1 of vllm/attention/ops/prefix_prefill.py" in out
    assert "rejected hunk:" in out
    assert "      | -line 10" in out and "      | +line 10 pascal tiles" in out
    assert "moe-half-atomicadd" in out and "obsolete: already upstream" in out
    assert world.spec.read_bytes() == before
    assert not list(world.tmp.glob("recipes-*"))


def test_allow_failing_writes_a_draft_that_never_renders(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(world.args("--vllm", "0.8.5.post2", "--write", "--allow-failing"), capsys)
    assert code == 0, err
    assert "wrote draft stack vllm-0.8.5.post2" in out
    stack = load_spec(world.spec).stack("vllm-0.8.5.post2")
    assert "prefix-tiles" in stack.draft and "obsolete" in stack.draft
    assert not list(world.tmp.glob("recipes-*"))
    code, _, err = run(
        ["generate", "--spec", str(world.spec), "--vllm", "0.8.5.post2", "--out", str(world.tmp / "r")],
        capsys,
    )
    assert code == 24
    assert "error[stack-draft]" in err
    assert not (world.tmp / "r").exists()


def test_new_triton_needs_its_commit(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """torch 2.7.0 pins triton 3.3.0: its commit and LLVM commit cannot be looked up on GitHub here."""
    code, out, err = run(world.args("--vllm", "0.9.0"), capsys)
    assert code == 22, err
    assert "error[pin-unresolved]" in err
    assert "--rev triton=<commit>" in out
    assert "Requires-Dist: triton (==3.3.0)" in out
    # No library patch covers the new versions: the base's series is carried forward (ladder.py).
    assert "carried forward: base's patches whose versions do not cover the new release" in out
    assert any(line.split()[:3] == ["vllm-pascal", "prefix-tiles", "applied"] for line in out.splitlines())
    # The new torch's check-only copy is pinned from the index.
    assert "torch-2.7.0-cp312-cp312-manylinux_2_28_x86_64.whl" in out

    # conda-forge is out of reach and no stack of the spec has torch 2.7.0's artifacts.
    assert "no stack of" in out and "pins conda-forge's pytorch 2.7.0" in out

    code, out, err = run(world.args("--vllm", "0.9.0", "--source-dir", f"triton={world.triton_repo}"), capsys)
    assert code == 22, err  # the overlay artifacts are still missing
    assert "--rev triton=<commit>" not in out
    assert world.triton_33 in out and "tag v3.3.0" in out
    assert LLVM_33 in out and "cmake/llvm-hash.txt" in out


def test_known_upstream_changes_are_named(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """torch 2.8's third Inductor gate must be patched; vLLM 0.10.2's V1-on-Pascal is flagged for review."""
    code, out, _ = run(world.args("--vllm", "0.10.2", "--source-dir", f"triton={world.triton_repo}"), capsys)
    assert code == 22  # triton 3.4.0's commit is unknown and no spec pins torch 2.8.0's overlay
    assert "third Inductor capability gate (is_triton_capable" in out
    assert f"no patch covering 2.8.0 targets {DEVICE_INTERFACE}" in out
    assert "vLLM >= 0.10.2 runs the V1 engine on cc < 8" in out
    # A library patch for the gate answers it.
    torch_lib = world.tmp / "patchlib" / "torch"
    (torch_lib / "0002-dynamo-gate.patch").write_text(udiff(DEVICE_INTERFACE, BODY, PATCHED_TORCH))
    with (torch_lib / "series.toml").open("a") as fh:
        fh.write(
            '\n[[patch]]\nid = "dynamo-gate"\nfile = "0002-dynamo-gate.patch"\nversions = ">=2.8,<2.9"\n'
            f'targets = ["{DEVICE_INTERFACE}"]\nreason = "test"\nproof = "test"\n'
        )
    code, out, _ = run(world.args("--vllm", "0.10.2", "--source-dir", f"triton={world.triton_repo}"), capsys)
    assert "is_triton_capable" not in out
    assert any("dynamo-gate" in line and line.rstrip().endswith("applies") for line in out.splitlines())


# ---- faults from the server: clear errors, nothing written ---------------------------------------


@pytest.mark.parametrize(
    ("path", "fault", "code", "message"),
    [
        ("/simple/vllm/", Fault(delay=1.5), 20, "did not answer"),
        ("/simple/vllm/", Fault(status=500), 20, "did not answer after 1 retries"),
        ("/simple/vllm/", Fault(content_type="text/html"), 20, "not PEP 691 JSON"),
        ("/simple/vllm/", Fault(body=b"{not json"), 20, "not a PEP 691 project page"),
        (
            "/files/vllm/vllm-0.8.5.post1.tar.gz",
            Fault(truncate=True),
            5,
            "cannot download vllm-0.8.5.post1.tar.gz",
        ),
        (
            "/files/vllm/vllm-0.8.5.post1.tar.gz",
            Fault(body=b"other bytes"),
            6,
            "but vllm-0.8.5.post1.tar.gz is pinned",
        ),
        (
            "/files/torch/torch-2.6.0-cp312-cp312-manylinux1_x86_64.whl.metadata",
            Fault(body=b"Name: torch\n"),
            6,
            ".metadata has sha256",
        ),
        (
            "/files/torch/torch-2.6.0-cp312-cp312-manylinux1_x86_64.whl.metadata",
            Fault(status=503),
            20,
            "did not answer",
        ),
    ],
    ids=[
        "timeout",
        "http-500",
        "html",
        "bad-json",
        "truncated",
        "wrong-sha256",
        "metadata-sha256",
        "metadata-503",
    ],
)
def test_faults_give_clear_errors_and_write_nothing(
    world: World, capsys: pytest.CaptureFixture[str], path: str, fault: Fault, code: int, message: str
) -> None:
    before = world.spec.read_bytes()
    world.index.faults[path] = fault
    args = world.args("--vllm", "0.8.5.post1", "--write")
    args[args.index("--timeout") + 1] = "0.5"
    got, out, err = run(args, capsys)
    assert got == code, err
    assert message in err, err
    assert "next:" in err
    assert out == ""  # no plan, no "wrote"
    assert world.spec.read_bytes() == before
    assert not list(world.tmp.glob("recipes-*"))
    downloads = world.cache / "downloads"
    cached = [p.name for p in downloads.rglob("*")] if downloads.exists() else []
    if code == 6 and "tar.gz" in path:
        assert "vllm-0.8.5.post1.tar.gz" not in cached  # a bad download never lands under its name
    assert not [n for n in cached if n.endswith(".part")]


def test_a_transient_500_is_retried(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.index.faults["/simple/vllm/"] = Fault(status=500, times=1)
    code, _, err = run(world.args("--vllm", "0.8.5.post1"), capsys)
    assert code == 0, err
    assert world.index.hits.count("/simple/vllm/") == 2


def test_unknown_version_names_the_series(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(world.args("--vllm", "0.8.7"), capsys)
    assert code == 21
    assert "lists no sdist of vllm 0.8.7" in err and "0.8.5, 0.8.5.post1, 0.8.5.post2" in err


def test_write_needs_a_spec_file(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["update", "--vllm", "0.8.5.post1", "--write"], capsys)
    assert code == 2
    assert "--write needs --spec FILE" in err


# ---- writing ---------------------------------------------------------------------------------------


@pytest.mark.integration  # renders with the rattler-build engine
def test_write_adds_the_stack_and_the_recipes_render(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    from pascal_forge.build.engine import engine_render

    out_dir = world.tmp / "recipes-new"
    code, out, err = run(world.args("--vllm", "0.8.5.post1", "--write", "--out", str(out_dir)), capsys)
    assert code == 0, err
    assert f"wrote stack vllm-0.8.5.post1 to {world.spec}" in out
    text = world.spec.read_text()
    assert text.count('# BEGIN stack "vllm-0.8.5.post1"') == 1
    spec = load_spec(world.spec)
    stack = spec.stack("vllm-0.8.5.post1")
    assert (stack.vllm, stack.torch, stack.triton, stack.draft) == ("0.8.5.post1", "2.6.0", "3.2.0", "")
    assert spec.stack_for("vllm", "0.8.5.post1").name == "vllm-0.8.5.post1"
    sdist_url = world.index.file_url("vllm", "vllm-0.8.5.post1.tar.gz")
    rendered = {}
    for recipe in ("triton-pascal", "pytorch-pascal", "vllm-pascal"):
        variants = engine_render(out_dir / recipe / "recipe.yaml", out_dir / "variants.yaml")
        assert [v.variant["python"] for v in variants] == ["3.12.*"]
        rendered[recipe] = variants[0]
    assert rendered["vllm-pascal"].version == "0.8.5.post1"
    assert rendered["vllm-pascal"].build_string.startswith("cuda126py312_pascal_h")
    assert any(
        s.get("url") == [sdist_url] or s.get("url") == sdist_url
        for s in rendered["vllm-pascal"].recipe["source"]
    )
    run_reqs = rendered["vllm-pascal"].recipe["requirements"]["run"]
    assert "pytorch ==2.6.0 *pascal*" in run_reqs and "xformers ==0.0.29.post2" in run_reqs
    # Running it again replaces the block in place: byte-identical file.
    code, _, err = run(world.args("--vllm", "0.8.5.post1", "--write", "--out", str(out_dir)), capsys)
    assert code == 0, err
    assert world.spec.read_text() == text


@pytest.mark.integration  # builds stand-in conda packages with the rattler-build engine
def test_overlay_from_a_conda_channel(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """py-rattler reads the channel's repodata: newest build of the base's BLAS flavour, its depends copied."""
    from helpers.condapkgs import Pkg, make_channel

    site = "lib/python3.12/site-packages/"
    depends = (
        "__cuda",
        "libtorch ==2.7.0 cuda126_mkl_h1234567_300",
        "python >=3.12,<3.13.0a0",
        "python_abi 3.12.* *_cp312",
        "triton 3.3.0.*",
    )
    files = {site + TORCH_GATE: BODY.encode()}
    channel = make_channel(
        world.tmp / "cf",
        [
            Pkg(
                "pytorch",
                "2.7.0",
                "cuda126_mkl_py312_h1234567_300",
                depends,
                ("pytorch-gpu ==2.7.0",),
                300,
                files=files,
            ),
            Pkg("pytorch", "2.7.0", "cuda126_generic_py312_h7654321_301", depends, (), 301, files=files),
            Pkg("pytorch", "2.7.0", "cuda128_mkl_py312_h1111111_300", depends, (), 300, files=files),
        ],
    )
    with serve_directory(channel) as url:
        args = world.args(
            "--vllm", "0.9.0", "--source-dir", f"triton={world.triton_repo}", "--write", "--allow-failing"
        )
        args[args.index("--conda-channel") + 1] = url
        code, out, err = run(args, capsys)
    assert code == 0, err
    assert "pytorch-2.7.0-cuda126_mkl_py312_h1234567_300.conda" in out
    assert "conda-forge not reachable" not in out
    stack = load_spec(world.spec).stack("vllm-0.9.0")
    assert (world.tmp / "recipes" / "vllm-0.9.0" / "vllm-pascal" / "recipe.yaml").is_file()
    # No library patch covered the new versions: --write added the carried series to the library.
    series = (world.tmp / "patchlib" / "vllm" / "series.toml").read_text()
    assert "# BEGIN carried vllm 0.9.0" in series and 'versions = "==0.9.0"' in series
    assert load_spec(world.spec).patches_for("vllm", "0.9.0")
    (art,) = [s for s in stack.sources if s.recipe == "pytorch-pascal" and s.patched]
    assert art.url == f"{url}/linux-64/pytorch-2.7.0-cuda126_mkl_py312_h1234567_300.conda"
    assert art.sha256 == hashlib.sha256((channel / "linux-64" / art.file_name).read_bytes()).hexdigest()
    run_reqs = [d.spec for d in stack.requirements["pytorch-pascal"].run]
    assert run_reqs[0] == "triton ==3.3.0 *pascal*"
    assert "libtorch ==2.7.0 cuda126_mkl_h1234567_300" in run_reqs
    assert not any(r.startswith("triton 3.3.0") for r in run_reqs)
    assert [d.spec for d in stack.requirements["pytorch-pascal"].run_constraints] == ["pytorch-gpu ==2.7.0"]
    host = [d.spec for d in stack.requirements["vllm-pascal"].host]
    assert "pytorch ==2.7.0 *pascal*" in host and "triton ==3.3.0 *pascal*" in host
    # The trial of the base's torch patch ran on the channel's own artifact.
    assert "source of pytorch-pascal: pytorch-conda-forge" in out


# ---- pieces ----------------------------------------------------------------------------------------


def test_rejected_hunk_text_is_cut_by_its_counts(tmp_path: Path) -> None:
    old = BODY + "-- a line that looks like a header\n" + BODY
    new = old.replace("line 10\n", "line ten\n", 1).replace("line 15\n", "line fifteen\n", 2)
    patch = tmp_path / "p.patch"
    patch.write_text(udiff("dir/f.txt", old, new) + udiff("other.txt", BODY, PATCHED_PREFIX))
    first = hunk_text(patch, "dir/f.txt", 1)
    assert first.startswith("@@ ") and "+line ten" in first and "other.txt" not in first
    assert "+line fifteen" in hunk_text(patch, "dir/f.txt", 2)
    assert "+line 10 pascal tiles" in hunk_text(patch, "other.txt", 1)
    assert "not found" in hunk_text(patch, "dir/f.txt", 9)


def test_cmake_fetches_expand_variables(tmp_path: Path) -> None:
    for rel, text in vllm_tree().items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    fetches = {f.name: f for f in cmake_fetches(tmp_path)}
    assert set(fetches) == {"cutlass", "flashmla"}
    assert fetches["cutlass"].tag == "v3.9.0"
    assert fetches["flashmla"].tag == FLASHMLA


def test_a_hand_written_stack_is_never_replaced() -> None:
    text = '[stacks."vllm-1.0.0"]\nvllm = "1.0.0"\n'
    with pytest.raises(Exception, match="by hand"):
        spec_with_stack(
            text, '# BEGIN stack "vllm-1.0.0"\n# END stack "vllm-1.0.0"\n', "vllm-1.0.0", "f.toml"
        )
    marked = 'schema = 1\n\n# BEGIN stack "vllm-1.0.0"\nold\n# END stack "vllm-1.0.0"\n# after\n'
    new = spec_with_stack(
        marked, '# BEGIN stack "vllm-1.0.0"\nnew\n# END stack "vllm-1.0.0"\n', "vllm-1.0.0", "f"
    )
    assert new == 'schema = 1\n\n# BEGIN stack "vllm-1.0.0"\nnew\n# END stack "vllm-1.0.0"\n# after\n'


# ---- against the real PyPI -------------------------------------------------------------------------


@pytest.mark.online
@pytest.mark.integration
def test_real_pypi_plan_for_0_8_5_post1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue criteria 1 and 2 on the real index: the plan, then --write and the engine renders it."""
    import requests

    from pascal_forge.build.engine import engine_render
    from pascal_forge.update.upstream import DEFAULT_INDEX, PEP691

    try:
        requests.get(f"{DEFAULT_INDEX}/vllm/", headers={"Accept": PEP691}, timeout=15).raise_for_status()
    except requests.RequestException as exc:
        pytest.skip(f"PyPI's Simple API is not reachable from here: {exc}")
    spec, out_dir = tmp_path / "spec.toml", tmp_path / "recipes"
    code, out, err = run(["update", "--vllm", "0.8.5.post1"], capsys)
    assert code == 0, err
    assert "5e5be78ee00637de4ee29f75ce86edc6c224c05d9e58d067a511eb83c3afe32d" in out
    assert "requirements/cuda.txt: torch==2.6.0" in out
    assert "Requires-Dist: triton (==3.2.0)" in out
    for pid in ("cmake-pascal-archs", "moe-wna16-half-atomicadd", "inductor-gate-utils-triton"):
        assert any(pid in line and line.rstrip().endswith("applies") for line in out.splitlines()), pid
    code, out, err = run(
        ["update", "--vllm", "0.8.5.post1", "--spec", str(spec), "--write", "--out", str(out_dir)], capsys
    )
    assert code == 0, err
    assert load_spec(spec).stack("vllm-0.8.5.post1").vllm == "0.8.5.post1"
    for recipe in ("triton-pascal", "pytorch-pascal", "vllm-pascal"):
        variants = engine_render(out_dir / recipe / "recipe.yaml", out_dir / "variants.yaml")
        assert len(variants) == 2, recipe
        assert all("_pascal_h" in v.build_string for v in variants)


def test_the_built_in_spec_may_hold_update_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Maintainers write into data/default-spec.toml; its stacks may extend an earlier one."""
    import pascal_forge.stack.spec as spec_module

    text = spec_module.builtin_spec_path().read_text()
    block = '# BEGIN stack "vllm-9.9.9"\n[stacks."vllm-9.9.9"]\nextends = "vllm-0.8.5"\nvllm = "9.9.9"\n# END stack "vllm-9.9.9"\n'
    monkeypatch.setattr(spec_module, "builtin_spec_text", lambda: text + "\n" + block)
    spec = load_spec()
    stack = spec.stack("vllm-9.9.9")
    assert stack.vllm == "9.9.9"
    assert stack.sources == spec.stack("vllm-0.8.5").sources
