"""Unit tests for the CMake source-selection evaluator (no network, no compiler)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pascal_forge.errors import CMakeEvalError
from pascal_forge.verify import cmake_archs, cmake_parse
from pascal_forge.verify.cmake_archs import (
    cuda_archs_loose_intersection,
    gencode_flags,
    select_sources,
)

# A cut-down vLLM 0.8.5 CMakeLists.txt: the constructs that decide which sources get which archs.
FIXTURE = r"""
set(CUDA_SUPPORTED_ARCHS "6.0;6.1;7.0;7.5;8.0;8.6;8.9;9.0")  # patched: Pascal added
if (VLLM_PYTHON_EXECUTABLE)
  find_python_from_executable(${VLLM_PYTHON_EXECUTABLE} "3.11")
else()
  message(FATAL_ERROR "Please set VLLM_PYTHON_EXECUTABLE")
endif()
if (NOT HIP_FOUND AND CUDA_FOUND)
  set(VLLM_GPU_LANG "CUDA")
elseif(HIP_FOUND)
  set(VLLM_GPU_LANG "HIP")
endif()
if(VLLM_GPU_LANG STREQUAL "CUDA")
  clear_cuda_arches(CUDA_ARCH_FLAGS)
  extract_unique_cuda_archs_ascending(CUDA_ARCHS "${CUDA_ARCH_FLAGS}")
  cuda_archs_loose_intersection(CUDA_ARCHS
    "${CUDA_SUPPORTED_ARCHS}" "${CUDA_ARCHS}")
endif()
get_torch_gpu_compiler_flags(VLLM_GPU_FLAGS ${VLLM_GPU_LANG})
#[[ a bracket
    comment ]]
set(VLLM_EXT_SRC
  "csrc/cache_kernels.cu"
  "csrc/torch_bindings.cpp")
if(VLLM_GPU_LANG STREQUAL "CUDA")
  SET(CUTLASS_ENABLE_HEADERS_ONLY ON CACHE BOOL "Enable only the header library")
  list(APPEND VLLM_EXT_SRC "csrc/permute_cols.cu")
  set_gencode_flags_for_srcs(
    SRCS "${VLLM_EXT_SRC}"
    CUDA_ARCHS "${CUDA_ARCHS}")
  cuda_archs_loose_intersection(MARLIN_ARCHS "8.0;8.6;8.9;9.0" "${CUDA_ARCHS}")
  if (MARLIN_ARCHS)
    set(MARLIN_SRCS "csrc/quantization/marlin/marlin.cu")
    set_gencode_flags_for_srcs(SRCS "${MARLIN_SRCS}" CUDA_ARCHS "${MARLIN_ARCHS}")
    list(APPEND VLLM_EXT_SRC "${MARLIN_SRCS}")
  endif()
  set(SCALED_MM_3X_ARCHS)
  cuda_archs_loose_intersection(SCALED_MM_ARCHS "9.0a;" "${CUDA_ARCHS}")
  if(${CMAKE_CUDA_COMPILER_VERSION} VERSION_GREATER 12.0 AND SCALED_MM_ARCHS)
    set(SRCS "csrc/c3x_sm90.cu")
    set_gencode_flags_for_srcs(SRCS "${SRCS}" CUDA_ARCHS "${SCALED_MM_ARCHS}")
    list(APPEND VLLM_EXT_SRC "${SRCS}")
    list(APPEND VLLM_GPU_FLAGS "-DENABLE_SCALED_MM_SM90=1")
    list(APPEND SCALED_MM_3X_ARCHS "${SCALED_MM_ARCHS}")
  endif()
  cuda_archs_loose_intersection(SCALED_MM_2X_ARCHS "7.5;8.0;8.6;8.9;9.0" "${CUDA_ARCHS}")
  list(REMOVE_ITEM SCALED_MM_2X_ARCHS ${SCALED_MM_3X_ARCHS})
  if (SCALED_MM_2X_ARCHS)
    set(SRCS "csrc/c2x.cu")
    set_gencode_flags_for_srcs(SRCS "${SRCS}" CUDA_ARCHS "${SCALED_MM_2X_ARCHS}")
    list(APPEND VLLM_EXT_SRC "${SRCS}")
    list(APPEND VLLM_GPU_FLAGS "-DENABLE_SCALED_MM_C2X=1")
  endif()
  foreach(_X ${VLLM_EXT_SRC})
    message(STATUS "${_X}")
  endforeach()
endif()
define_gpu_extension_target(
  _C
  DESTINATION vllm
  LANGUAGE ${VLLM_GPU_LANG}
  SOURCES ${VLLM_EXT_SRC}
  COMPILE_FLAGS ${VLLM_GPU_FLAGS}
  INCLUDE_DIRECTORIES ${CUTLASS_INCLUDE_DIR}
  USE_SABI 3
  WITH_SOABI)
target_compile_definitions(_C PRIVATE CUTLASS_ENABLE_DIRECT_CUDA_DRIVER_CALL=1)
set(VLLM_MOE_EXT_SRC "csrc/moe/torch_bindings.cpp")
if(VLLM_GPU_LANG STREQUAL "CUDA")
  list(APPEND VLLM_MOE_EXT_SRC "csrc/moe/moe_wna16.cu")
endif()
set_gencode_flags_for_srcs(SRCS "${VLLM_MOE_EXT_SRC}" CUDA_ARCHS "${CUDA_ARCHS}")
list(APPEND VLLM_MOE_EXT_SRC "csrc/moe/moe_wna16.cu")
define_gpu_extension_target(_moe_C DESTINATION vllm LANGUAGE ${VLLM_GPU_LANG}
  SOURCES ${VLLM_MOE_EXT_SRC} COMPILE_FLAGS ${VLLM_GPU_FLAGS} USE_SABI 3.8 WITH_SOABI)
"""


def _select(archs: list[str], text: str = FIXTURE) -> cmake_archs.Selection:
    return select_sources(text, Path("/nonexistent"), archs)


def _archs_by_source(sel: cmake_archs.Selection) -> dict[str, tuple[str, ...]]:
    return {u.source: u.archs for u in sel.cuda_units()}


@pytest.mark.parametrize(
    ("src", "tgt", "want"),
    [
        # the example in vLLM's cmake/utils.cmake (its code puts 9.0a first, unlike its comment)
        ("7.5;8.0;8.6;9.0;9.0a", "8.0;8.9;9.0", "9.0a;8.0;8.6"),
        # Pascal: nothing of a sm_80+ kernel survives, the major version must match
        ("8.0;8.6;8.7;8.9;9.0;10.0;10.1;12.0", "6.0;6.1", ""),
        ("7.5;8.0;8.6;8.9;9.0", "6.0;6.1", ""),
        # the top-level CUDA_ARCHS intersection with the patched CUDA_SUPPORTED_ARCHS
        ("6.0;6.1;7.0;7.2;7.5;8.0", "6.0;6.1", "6.0;6.1"),
        ("6.0;7.0", "6.1", "6.0"),  # sm_61 runs sm_60 SASS: same major, <=
        ("7.0;7.2;7.5;8.0", "6.0;6.1", ""),  # unpatched: Pascal silently dropped
        ("9.0a", "9.0", "9.0a"),
        ("10.0a", "10.0;9.0", "10.0a"),
    ],
)
def test_loose_intersection(src: str, tgt: str, want: str) -> None:
    assert ";".join(cuda_archs_loose_intersection(src.split(";"), tgt.split(";"))) == want


def test_pascal_selects_generic_sources_only() -> None:
    sel = _select(["6.0", "6.1"])
    assert sel.cuda_archs == ("6.0", "6.1")
    assert _archs_by_source(sel) == {
        "csrc/cache_kernels.cu": ("6.0", "6.1"),
        "csrc/permute_cols.cu": ("6.0", "6.1"),
        "csrc/moe/moe_wna16.cu": ("6.0", "6.1"),  # listed twice upstream, compiled once
    }
    flags = {u.source: u.flags for u in sel.units}
    assert "-DENABLE_SCALED_MM_C2X=1" not in flags["csrc/cache_kernels.cu"]
    assert "--expt-relaxed-constexpr" in flags["csrc/cache_kernels.cu"]
    assert "-DENABLE_FP8" in flags["csrc/cache_kernels.cu"]
    assert not any(f.startswith("-D__CUDA_NO_") for f in flags["csrc/cache_kernels.cu"])  # CUDA >= 12
    assert "-DCUTLASS_ENABLE_DIRECT_CUDA_DRIVER_CALL=1" in flags["csrc/cache_kernels.cu"]
    assert "-DTORCH_EXTENSION_NAME=_moe_C" in flags["csrc/moe/moe_wna16.cu"]
    assert "-DPy_LIMITED_API=3" in flags["csrc/cache_kernels.cu"]
    assert "-DPy_LIMITED_API=0x03080000" in flags["csrc/moe/moe_wna16.cu"]
    assert {u.source for u in sel.units if u.language == "CXX"} == {
        "csrc/torch_bindings.cpp",
        "csrc/moe/torch_bindings.cpp",
    }


def test_newer_archs_pick_the_gated_kernels() -> None:
    by_src = _archs_by_source(_select(["8.0", "9.0"]))
    assert by_src["csrc/quantization/marlin/marlin.cu"] == ("8.0", "9.0")
    assert by_src["csrc/c3x_sm90.cu"] == ("9.0a",)
    # REMOVE_ITEM takes out "9.0a", not "9.0": upstream builds c2x for 9.0 as well
    assert by_src["csrc/c2x.cu"] == ("8.0", "9.0")
    sel = _select(["8.0", "9.0"])
    assert "-DENABLE_SCALED_MM_SM90=1" in next(u for u in sel.units if u.source == "csrc/c2x.cu").flags


def test_unpatched_arch_list_drops_pascal() -> None:
    text = FIXTURE.replace('"6.0;6.1;7.0;', '"7.0;')
    sel = _select(["6.0", "6.1"], text)
    assert sel.cuda_archs == ()
    assert sel.cuda_units() == ()
    assert "csrc/cache_kernels.cu" in sel.dropped


def test_cutlass_include_placeholder_and_skips_recorded() -> None:
    sel = _select(["6.0"])
    unit = next(u for u in sel.units if u.source == "csrc/cache_kernels.cu")
    assert unit.include_dirs == (f"{cmake_archs.CUTLASS_PLACEHOLDER}/include",)
    assert any("foreach" in s for s in sel.skipped)


def test_fatal_error_in_taken_branch_is_reported() -> None:
    variables = cmake_archs.initial_variables(Path("/x"))
    del variables["VLLM_PYTHON_EXECUTABLE"]
    with pytest.raises(CMakeEvalError, match="VLLM_PYTHON_EXECUTABLE"):
        select_sources(FIXTURE, Path("/x"), ["6.0"], variables)


@pytest.mark.parametrize(
    ("cond", "want"),
    [
        ("NOT A AND B", False),
        ("(NOT A) OR B", True),
        ('A STREQUAL "x"', True),
        ('"A" STREQUAL "x"', False),  # quoted: no auto-dereference
        ("V VERSION_GREATER 12.0", True),
        ("V VERSION_GREATER_EQUAL 12.4.131", True),
        ("V VERSION_LESS 12.4", False),
        ('"6.1" IN_LIST L', True),
        ("DEFINED A", True),
        ("DEFINED NOPE", False),
        ("EMPTY", False),
        ("NOPE", False),
        ("OFF OR 1", True),
        ("X-NOTFOUND", False),
    ],
)
def test_if_conditions(cond: str, want: bool) -> None:
    text = (
        'set(A "x")\nset(B ON)\nset(V 12.4.131)\nset(L "6.0;6.1")\nset(EMPTY "")\n'
        f"if({cond})\n  set(R yes)\nelse()\n  set(R no)\nendif()\n"
        "define_gpu_extension_target(t LANGUAGE CUDA SOURCES ${R}.cu)\nset_gencode_flags_for_srcs(SRCS yes.cu no.cu CUDA_ARCHS 6.0)\n"
    )
    sel = select_sources(text, Path("/x"), ["6.0"], {})
    assert [u.source for u in sel.units] == [f"{'yes' if want else 'no'}.cu"]


def test_parser_quotes_escapes_and_nesting() -> None:
    cmds = cmake_parse.parse('set(X "a \\"b\\" ;c" d)  # comment\nif((A AND (B)))\nendif()\n')
    assert cmds[0].args[0].text == "X"
    assert cmds[0].args[1].text == 'a "b" ;c'
    assert cmds[0].args[1].quoted
    assert [a.text for a in cmds[1].args] == ["(", "A", "AND", "(", "B", ")", ")"]


def test_unmodelled_condition_is_an_error() -> None:
    with pytest.raises(CMakeEvalError, match="EXISTS"):
        select_sources("if(EXISTS /x)\nendif()\n", Path("/x"), ["6.0"], {})


def test_gencode_flags() -> None:
    assert gencode_flags(["6.0", "6.1"]) == [
        "-gencode",
        "arch=compute_60,code=sm_60",
        "-gencode",
        "arch=compute_61,code=sm_61",
    ]
    assert gencode_flags(["8.0", "9.0"], ptx_arch="9.0")[-1] == "arch=compute_90,code=compute_90"
