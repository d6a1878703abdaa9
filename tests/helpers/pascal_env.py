"""Stand-in Pascal environments for `pascal-forge doctor` tests: real packages, real prefixes.

Two channels are assembled with the rattler-build engine and indexed with py-rattler
(tests/helpers/condapkgs.py), and prefixes are solved and installed from them with py-rattler:

* the **good** channel: what `pascal-forge build` would publish for the default stack, with the
  name, version and build string of each Pascal package taken from rendering the committed
  recipes with the engine; the pytorch overlay carries the **real** torch 2.6.0
  ``torch/utils/_triton.py`` and ``torch/_inductor/scheduler.py`` with our patch series applied;
  vllm-pascal carries a ``vllm-0.8.5.dist-info`` and extensions whose fatbins hold sm_60/sm_61
  code (tests/data/fatbin, made with nvcc 12.4);
* the **faults** channel: what breaks users, under real conda-forge names, versions and build
  strings where they exist (stock triton and pytorch, cuda-version / cuda-nvcc-tools 12.8, all as
  recorded in data-apis/array-api-extra's pixi.lock at 45c9fbbe), plus vllm-pascal builds with
  the wrong device code or dist-info name (build numbers 1-3 of the same recipe).

What is stood in, and why: the payloads are tiny (no LLVM, no libtorch, no CUDA libraries: those
come from conda-forge, which is out of reach here). Run requirements are the rendered recipes'
(or the lock file's), restricted to the packages these channels carry plus ``__cuda``. The
stand-in ``ptxas`` is a shell script printing NVIDIA ptxas's ``--version`` text (the real 12.4.131
output with the version of the package it stands in for; tests/helpers/fake_tools.py).

``good_specs()`` / ``GOOD_CHANNEL_PACKAGES`` is the seam for the end-to-end test's channel: a prefix
installed from any channel that provides the same packages must pass the same doctor checks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from functools import cache
from pathlib import Path

from helpers import fake_tools
from helpers.condapkgs import Executable, FileContent, Pkg, Symlink
from pascal_forge.build.engine import engine_render

ROOT = Path(__file__).resolve().parents[2]
FATBIN = ROOT / "tests" / "data" / "fatbin"
PY = "3.12"
SITE = f"lib/python{PY}/site-packages"
PYTHON_DEPS = (f"python >={PY},<3.13.0a0", "python_abi 3.12.* *_cp312")

#: Packages the channels carry (run requirements on anything else are dropped from stand-ins).
CARRIED = {"python", "python_abi", "cuda-version", "cuda-nvcc-tools", "triton", "pytorch", "vllm-pascal"}


def ptxas_banner(version: str) -> bytes:
    """A stand-in ptxas printing NVIDIA ptxas's `--version` text for ``version``."""
    return fake_tools.script(fake_tools.ptxas_text(version)).encode()


def dist_info(
    name: str, version: str, installer: str = "conda", files: Iterable[str] = ()
) -> dict[str, bytes]:
    """A ``<name>-<version>.dist-info`` folder as pip writes one (METADATA, INSTALLER, RECORD)."""
    folder = f"{SITE}/{name.replace('-', '_')}-{version}.dist-info"
    record = [f"{f}," for f in files] + [
        f"{folder.removeprefix(SITE + '/')}/{m}," for m in ("METADATA", "INSTALLER", "RECORD")
    ]
    return {
        f"{folder}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\n".encode(),
        f"{folder}/INSTALLER": f"{installer}\n".encode(),
        f"{folder}/RECORD": ("\n".join(record) + "\n").encode(),
    }


@cache
def _rendered(recipe: str) -> tuple[str, str, str, tuple[str, ...]]:
    """(name, version, build string, run requirements) of a committed recipe's py3.12 variant."""
    (v,) = [
        v
        for v in engine_render(
            ROOT / "recipes" / "vllm-0.8.5" / recipe / "recipe.yaml",
            ROOT / "recipes" / "vllm-0.8.5" / "variants.yaml",
        )
        if v.variant["python"] == f"{PY}.*"
    ]
    return v.name, v.version, v.build_string, tuple(str(d) for d in v.recipe["requirements"]["run"])


def _carried(run: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for dep in run:
        name = dep.split(" ")[0]
        if name == "python":
            out += PYTHON_DEPS
        elif name in CARRIED or name == "__cuda":
            out.append(dep)
    return tuple(dict.fromkeys(out))


def _pascal(recipe: str, files: dict[str, FileContent]) -> Pkg:
    name, version, build, run = _rendered(recipe)
    return Pkg(name, version, build, depends=_carried(run), files=files)


def python_pkgs() -> list[Pkg]:
    return [
        Pkg("python", "3.12.9", "h9e4cc4f_0_cpython", files={f"{SITE}/README.txt": b"site-packages\n"}),
        Pkg("python_abi", "3.12", "5_cp312", build_number=5, constrains=("python 3.12.* *_cpython",)),
    ]


def cuda_pkgs(minor: str) -> list[Pkg]:
    """cuda-version and cuda-nvcc-tools (with bin/ptxas) of CUDA 12.6 or 12.8 (conda-forge builds)."""
    version, build, tools, tools_build = {
        "12.6": ("12.6", "h7480c83_3", "12.6.77", "he02047a_0"),
        "12.8": ("12.8", "h5d125a7_3", "12.8.61", "he02047a_1"),
    }[minor]
    major, _, sub = minor.partition(".")
    upper = f"{major}.{int(sub) + 1}.0a0"
    return [
        Pkg(
            "cuda-version",
            version,
            build,
            build_number=3,
            subdir="noarch",
            constrains=(f"cudatoolkit {minor}|{minor}.*", "__cuda >=12"),
        ),
        Pkg(
            "cuda-nvcc-tools",
            tools,
            tools_build,
            build_number=int(tools_build[-1]),
            depends=(f"cuda-version >={minor},<{upper}",),
            files={"bin/ptxas": Executable(ptxas_banner(tools))},
        ),
    ]


def triton_files(pascal: bool) -> dict[str, FileContent]:
    files: dict[str, FileContent] = {f"{SITE}/triton/__init__.py": b'__version__ = "3.2.0"\n'}
    if pascal:
        # the triton-pascal recipe links the ptxas of cuda-nvcc-tools where triton 3.2.0 looks for it
        files[f"{SITE}/triton/backends/nvidia/bin/ptxas"] = Symlink("../../../../../../../bin/ptxas")
    files.update(dist_info("triton", "3.2.0", files=[f.removeprefix(SITE + "/") for f in files]))
    return files


def torch_files(gates: Path) -> dict[str, FileContent]:
    """torch's files: the two gate files from ``gates`` (site-packages layout), real torch 2.6.0."""
    files: dict[str, FileContent] = {f"{SITE}/torch/__init__.py": b'__version__ = "2.6.0"\n'}
    for rel in ("torch/utils/_triton.py", "torch/_inductor/scheduler.py"):
        files[f"{SITE}/{rel}"] = (gates / rel).read_bytes()
    files.update(dist_info("torch", "2.6.0", files=[f.removeprefix(SITE + "/") for f in files]))
    return files


def vllm_files(c_ext: str = "sm60_sm61.so", dist_name: str = "vllm") -> dict[str, FileContent]:
    files: dict[str, FileContent] = {
        f"{SITE}/vllm/__init__.py": b'__version__ = "0.8.5"\n',
        f"{SITE}/vllm/_C.abi3.so": (FATBIN / c_ext).read_bytes(),
        f"{SITE}/vllm/_moe_C.abi3.so": (FATBIN / "sm60_sm61_ptx60_compressed.so").read_bytes(),
    }
    files.update(dist_info(dist_name, "0.8.5", files=[f.removeprefix(SITE + "/") for f in files]))
    return files


def good_packages(patched_torch: Path) -> list[Pkg]:
    """The good channel: the three Pascal packages of the default stack and what they need."""
    return [
        *python_pkgs(),
        *cuda_pkgs("12.6"),
        _pascal("triton-pascal", triton_files(pascal=True)),
        _pascal("pytorch-pascal", torch_files(patched_torch)),
        _pascal("vllm-pascal", vllm_files()),
    ]


def good_specs() -> list[str]:
    """What a user installs: vllm-pascal (pulling the Pascal pytorch and triton)."""
    name, version, _, _ = _rendered("vllm-pascal")
    return [f"{name} =={version}"]


STOCK_TRITON = "triton ==3.2.0 cuda126py312h5a3d8a8_0"
STOCK_PYTORCH = "pytorch ==2.6.0 cuda126_mkl_py312_h8bb5dc9_300"


def _vllm_fault(number: int, files: dict[str, FileContent]) -> Pkg:
    good = _pascal("vllm-pascal", files)
    return replace(good, build=good.build.removesuffix("_0") + f"_{number}", build_number=number)


#: vllm-pascal builds with one fault each (build number -> what is wrong).
VLLM_FAULTS = {
    1: "extensions without Pascal code (sm_70, sm_80, PTX compute_80)",
    2: "dist-info named vllm-pascal",
    3: "one unit of _C without sm_60 code",
}


def vllm_fault_spec(number: int) -> str:
    _, version, build, _ = _rendered("vllm-pascal")
    return f"vllm-pascal =={version} {build.removesuffix('_0')}_{number}"


def fault_packages(pristine_torch: Path) -> list[Pkg]:
    """The faults channel (use together with the good one, installing by exact build)."""
    return [
        *cuda_pkgs("12.8"),
        # conda-forge triton 3.2.0 / pytorch 2.6.0 as pinned in array-api-extra's pixi.lock
        Pkg(
            "triton",
            "3.2.0",
            "cuda126py312h5a3d8a8_0",
            depends=("cuda-nvcc-tools", "cuda-version >=12.6,<13", *PYTHON_DEPS),
            files=triton_files(pascal=False),
        ),
        Pkg(
            "pytorch",
            "2.6.0",
            "cuda126_mkl_py312_h8bb5dc9_300",
            build_number=300,
            depends=("__cuda", "cuda-version >=12.6,<13", *PYTHON_DEPS, "triton 3.2.0.*"),
            constrains=("pytorch-gpu ==2.6.0", "pytorch-cpu ==99999999"),
            files=torch_files(pristine_torch),
        ),
        _vllm_fault(1, vllm_files(c_ext="sm70_sm80_ptx80.so")),
        _vllm_fault(2, vllm_files(dist_name="vllm-pascal")),
        _vllm_fault(3, vllm_files(c_ext="sm61_only_unit.so")),
    ]
