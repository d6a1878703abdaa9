"""`pascal-forge survey`: arch branches read from CMake text, the verdict, the table; one online run."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from pascal_forge.cli import main
from pascal_forge.update.survey import Branch, arch_branches
from pascal_forge.update.survey_cli import markdown
from pascal_forge.update.survey_command import _row_from

CMAKE_013 = """\
if(CMAKE_CUDA_COMPILER_VERSION VERSION_GREATER_EQUAL 13.0)
  set(CUDA_SUPPORTED_ARCHS "7.5;8.0;8.6;8.7;8.9;9.0;10.0;11.0;12.0")
elseif(DEFINED CMAKE_CUDA_COMPILER_VERSION AND
   CMAKE_CUDA_COMPILER_VERSION VERSION_GREATER_EQUAL 12.8)
  set(CUDA_SUPPORTED_ARCHS "7.0;7.2;7.5;8.0;8.6;8.7;8.9;9.0;10.0;10.1;12.0")
else()
  set(CUDA_SUPPORTED_ARCHS "7.0;7.2;7.5;8.0;8.6;8.7;8.9;9.0")
endif()
"""


def test_arch_branches_name_their_condition_and_cuda12() -> None:
    branches = arch_branches(CMAKE_013)
    assert [b.condition for b in branches] == ["nvcc >= 13.0", "nvcc >= 12.8", "else"]
    assert [b.cuda12 for b in branches] == [False, True, True]
    assert arch_branches('# Supported NVIDIA architectures.\nset(CUDA_SUPPORTED_ARCHS "7.0;8.0")\n') == (
        Branch("always", "7.0;8.0"),
    )


def _row(version: str, steps: list[str], external: list[str]) -> dict[str, object]:
    return {
        "vllm": version,
        "sdist": f"vllm-{version}.tar.gz",
        "sha256": "0" * 64,
        "torch": "2.7.0",
        "triton": "3.3.0",
        "branches": [{"condition": "else", "archs": "7.0;9.0"}],
        "external": external,
        "patches": [{"id": f"p{i}", "step": s, "detail": "", "hunk": ""} for i, s in enumerate(steps)],
        "engine": "V1",
        "attention": "TRITON_ATTN",
        "verdict": "v",
        "human": ["port p1 by hand"] if "needs a human" in steps else [],
        "base": "vllm-0.8.5",
        "torch_gates": "x",
        "triton_patches": "not checked: needs a triton clone (--source-dir triton=DIR)",
    }


def test_markdown_counts_carried_pairs_and_marks_new_projects() -> None:
    rows = [
        _row_from(_row("0.9.1", ["applied", "obsolete"], ["flashmla"])),
        _row_from(_row("0.9.2", ["intent rule", "needs a human"], ["flashmla", "qutlass"])),
    ]
    text = markdown(rows, "0.9.1", "0.9.2")
    assert "carried automatically: 2/3 (66.7%); needing a human: 1." in text
    assert "**qutlass** (new)" in text
    assert "| 0.9.2 | 2.7.0 | 3.3.0 | vllm-0.8.5 |" in text
    assert "- **0.9.2**: port p1 by hand" in text


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
    except OSError:
        return False
    return True


@pytest.mark.online
def test_survey_of_real_releases(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if not _pypi_reachable():
        pytest.skip("PyPI (pypi.org:443) is not reachable from here")
    out = tmp_path / "releases.md"
    code = main(
        ["survey", "--from", "0.9.1", "--to", "0.9.2", "--out", str(out), "--cache-dir", str(tmp_path / "c")]
    )
    assert code == 0
    text = out.read_text()
    assert "| 0.9.1 | 2.7.0 | 3.3.0 | vllm-0.8.5 |" in text
    assert "| 0.9.2 | 2.7.0 | 3.3.0 | vllm-0.8.5 |" in text
    assert "nvcc >= 12.8: 7.0;7.2;7.5;8.0" in text
    assert "| rule | applied | 3-way | applied | obsolete | 3-way |" in text
    err = capsys.readouterr().err
    assert "[2/2] vllm 0.9.2" in err
    # A warm rerun reads the cached rows.
    assert (
        main(
            [
                "survey",
                "--from",
                "0.9.1",
                "--to",
                "0.9.2",
                "--out",
                str(out),
                "--cache-dir",
                str(tmp_path / "c"),
            ]
        )
        == 0
    )
    assert "(cached)" in capsys.readouterr().err
    assert out.read_text() == text
