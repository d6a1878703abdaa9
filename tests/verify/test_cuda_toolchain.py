"""Unit tests for the toolchain helpers of `verify-cuda` (no network, no real nvcc)."""

from __future__ import annotations

import base64
import hashlib
import io
import re
import stat
import tarfile
from pathlib import Path

import pytest

from pascal_forge.errors import ToolchainError
from pascal_forge.verify import artifacts, toolchain, toolchain_pins
from pascal_forge.verify import compile as compile_runner


def _fake_nvcc(tmp_path: Path, release: str) -> Path:
    nvcc = tmp_path / "nvcc"
    nvcc.write_text(
        "#!/bin/sh\necho 'nvcc: NVIDIA (R) Cuda compiler driver'\n"
        f"echo 'Cuda compilation tools, release {release[:4]}, V{release}'\n"
    )
    nvcc.chmod(nvcc.stat().st_mode | stat.S_IEXEC)
    return nvcc


def test_cuda13_is_refused_with_a_way_out(tmp_path: Path) -> None:
    with pytest.raises(ToolchainError) as exc:
        toolchain.check_nvcc(_fake_nvcc(tmp_path, "13.0.88"))
    assert "sm_60" in exc.value.message
    assert "--setup-toolchain" in exc.value.hint


def test_cuda12_is_accepted(tmp_path: Path) -> None:
    assert toolchain.check_nvcc(_fake_nvcc(tmp_path, "12.4.131")) == "12.4.131"


def test_pins_are_complete() -> None:
    pins = toolchain_pins.load_pins()
    sha = re.compile(r"^[0-9a-f]{64}$")
    assert pins.debs
    assert pins.debs[0].version.startswith("12.4.131")
    for w in pins.wheels:
        assert sha.match(w.sha256)
        assert sha.match(w.record_sha256)
        assert w.url.endswith(".whl")
    names = {w.name: w.version for w in pins.wheels}
    assert names["nvidia-cuda-cccl-cu12"] == "12.4.127.post1"  # 12.4.127 is yanked
    assert names["torch"] == "2.6.0"
    assert sha.match(pins.cutlass.tree_sha256)
    assert re.fullmatch(r"[0-9a-f]{40}", pins.cutlass.commit)


def test_record_hashes() -> None:
    digest = hashlib.sha256(b"x").digest()
    row = f"torch/include/a.h,sha256={base64.urlsafe_b64encode(digest).decode().rstrip('=')},1"
    assert artifacts.record_hashes(row + "\nRECORD,,\n") == {"torch/include/a.h": digest.hex()}


def test_unpack_deb_filters_members(tmp_path: Path) -> None:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tf:
        for name in ("./usr/bin/nvcc", "./usr/share/doc/x"):
            info = tarfile.TarInfo(name)
            info.size = 2
            tf.addfile(info, io.BytesIO(b"hi"))
    payload = data.getvalue()

    def member(name: str, body: bytes) -> bytes:
        head = f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(body):<10}`\n".encode()
        return head + body + (b"\n" if len(body) % 2 else b"")

    deb = tmp_path / "x.deb"
    deb.write_bytes(b"!<arch>\n" + member("debian-binary", b"2.0\n") + member("data.tar", payload))
    picked = artifacts.unpack_deb(deb, tmp_path / "out", lambda m: m.startswith("usr/bin/"))
    assert picked == ["./usr/bin/nvcc"]
    assert (tmp_path / "out" / "usr/bin/nvcc").read_bytes() == b"hi"
    assert not (tmp_path / "out" / "usr/share").exists()


def test_first_errors_prefers_error_lines() -> None:
    out = 'note: a\nx.cu(216): error: no instance of overloaded function "atomicAdd"\nmore\n'
    assert compile_runner.first_errors(out) == (
        'x.cu(216): error: no instance of overloaded function "atomicAdd"',
    )


def test_tree_digest_is_stable(tmp_path: Path) -> None:
    (tmp_path / "include" / "a").mkdir(parents=True)
    (tmp_path / "include" / "a" / "b.h").write_text("x")
    first = artifacts.tree_sha256(tmp_path, ["include/"])
    (tmp_path / "include" / "a" / "b.h").write_text("y")
    assert artifacts.tree_sha256(tmp_path, ["include/"]) != first


def test_toolchain_pins_agree_with_the_spec() -> None:
    """The CUDA check compiles against the same upstream pins the recipes use (one source of truth)."""
    from pascal_forge.stack.spec import load_spec

    pins = toolchain_pins.load_pins()
    stack = load_spec().stack()
    by_name = {s.name: s for s in stack.sources}
    assert pins.cutlass.commit == by_name["cutlass"].rev
    torch = next(w for w in pins.wheels if w.name == "torch")
    assert torch.version == stack.torch
    assert (torch.url, torch.sha256) == (by_name["torch-pypi-wheel"].url, by_name["torch-pypi-wheel"].sha256)
