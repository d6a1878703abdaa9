"""Behaviour of the torch 2.8.0 and 2.11.0 Inductor capability gates (three of them), before and after
our patches (stacks vllm-0.11.0 and vllm-0.26.0; every test runs once per version).

Like tests/verify/test_torch_gates.py for 2.6.0: the pristine files come from the spec's sha256-pinned
check-only source (the PyPI torch wheel, each file checked against the wheel's RECORD); that
version's series is applied with ``patch -p1 -F0``; the code that runs is cut out of those files with
``ast`` and executed unmodified: ``has_triton``, ``Scheduler.create_backend``,
``GPUTooOldForTriton`` / ``TritonMissing`` and ``CudaInterface.is_triton_capable`` /
``raise_if_triton_unavailable``. Stubbed (torch is a CUDA wheel and is not installed here): the
device (a stand-in reporting a capability), ``ShortenTraceback`` (a RuntimeError taking
``first_useful_frame``, as in torch/_dynamo/exc.py), ``has_triton_package``, and the scheduler's
``V``/``get_scheduling_for_device``/``is_gpu``.

2.11.0's has_triton() also imports torch._inductor.config.triton_disable_device_detection (stubbed
False, its default) and asks for an MTIA interface (stubbed unavailable); 2.8.0 asks for neither.
The rendered package tests (recipes/vllm-0.11.0/pytorch-pascal/pascal_check.py) were also run against
a real pip-installed torch 2.8.0 (docs/stack2.md); test_stack2.py repeats that where one is given.
"""

from __future__ import annotations
import __future__

import ast
import base64
import hashlib
import inspect
import shutil
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

VERSIONS = ("2.8.0", "2.11.0")
TRITON_PY = "torch/utils/_triton.py"
SCHEDULER_PY = "torch/_inductor/scheduler.py"
EXC_PY = "torch/_inductor/exc.py"
DEVIF_PY = "torch/_dynamo/device_interface.py"
FILES = (TRITON_PY, SCHEDULER_PY, EXC_PY, DEVIF_PY)


def _wheel_tree(version: str) -> tuple[Path, dict[str, str]]:
    """The pristine files (site-packages layout) and their sha256 from the wheel's RECORD."""
    from pascal_forge.stack.sources import default_cache_dir, obtain
    from pascal_forge.stack.spec import load_spec

    stack = load_spec().stack_for("torch", version)
    (wheel,) = [s for s in stack.check_sources_for("pytorch-pascal") if s.check_only]
    record = f"torch-{version}.dist-info/RECORD"
    tree = obtain(wheel, default_cache_dir(), members=(*FILES, record)).tree
    hashes = {}
    for line in (tree / record).read_text().splitlines():
        name, digest, _size = line.rsplit(",", 2)
        if name in FILES:
            raw = base64.urlsafe_b64decode(digest.removeprefix("sha256=") + "==")
            hashes[name] = raw.hex()
    return tree, hashes


@pytest.fixture(scope="module", params=VERSIONS)
def trees(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if shutil.which("patch") is None:
        pytest.skip("GNU patch is not installed")
    from pascal_forge.stack.spec import load_spec

    version: str = request.param
    src, hashes = _wheel_tree(version)
    assert sorted(hashes) == sorted(FILES)
    out = {}
    for name in ("pristine", "patched"):
        dst = tmp_path_factory.mktemp(name)
        for rel in FILES:
            data = (src / rel).read_bytes()
            assert hashlib.sha256(data).hexdigest() == hashes[rel], f"{rel} differs from the wheel RECORD"
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            (dst / rel).write_bytes(data)
        out[name] = dst
    for patch in load_spec().patches_for("torch", version):
        res = subprocess.run(
            ["patch", "-p1", "-F0", "--batch", "--no-backup-if-mismatch", "-i", str(patch.path)],
            cwd=out["patched"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert res.returncode == 0, f"{patch.id} does not apply:\n{res.stdout}{res.stderr}"
    return out


# --------------------------------------------------------------------------------------------
# the real code, cut out of the files


class Props:
    def __init__(self, cc: tuple[int, int]) -> None:
        self.major, self.minor = cc
        self.name = f"Stand-in GPU sm_{cc[0]}{cc[1]}"


class ShortenTracebackError(RuntimeError):  # torch's name: ShortenTraceback
    """torch._dynamo.exc.ShortenTraceback's constructor shape (a RuntimeError subclass there too)."""

    def __init__(self, *args: Any, first_useful_frame: Any) -> None:
        super().__init__(*args)
        self.first_useful_frame = first_useful_frame


def _cut(path: Path, names: tuple[str, ...], cls: str | None = None) -> ast.Module:
    tree = ast.parse(path.read_text(), filename=str(path))
    body = tree.body
    if cls is not None:
        body = next(n for n in body if isinstance(n, ast.ClassDef) and n.name == cls).body
    wanted = [n for n in body if isinstance(n, ast.FunctionDef | ast.ClassDef) and n.name in names]
    assert sorted(n.name for n in wanted) == sorted(names), path
    return ast.Module(body=wanted, type_ignores=[])


def _exec(path: Path, module: ast.Module, ns: dict[str, Any]) -> dict[str, Any]:
    # All four files use `from __future__ import annotations`; keep those semantics.
    flags = __future__.annotations.compiler_flag
    exec(compile(module, str(path), "exec", flags=flags, dont_inherit=True), ns)  # noqa: S102
    return ns


def _fake_torch(cc: tuple[int, int]) -> types.SimpleNamespace:
    interfaces = {
        "cuda": types.SimpleNamespace(
            is_available=lambda: True,
            Worker=types.SimpleNamespace(get_device_properties=lambda _d=None: Props(cc)),
        ),
        "xpu": types.SimpleNamespace(is_available=lambda: False),
        "cpu": types.SimpleNamespace(is_available=lambda: False),
        "mtia": types.SimpleNamespace(is_available=lambda: False),  # 2.11.0 also asks for MTIA
    }
    return types.SimpleNamespace(
        cuda=types.SimpleNamespace(get_device_properties=lambda _d=None: Props(cc)),
        version=types.SimpleNamespace(hip=None),
        types=types.SimpleNamespace(Device=object),
        interfaces=interfaces,
    )


class Gates:
    """The three gates of one tree, for one stand-in device."""

    def __init__(
        self, tree: Path, cc: tuple[int, int], monkeypatch: pytest.MonkeyPatch, *, triton: bool = True
    ) -> None:
        torch = _fake_torch(cc)
        devif_mod = types.ModuleType("torch._dynamo.device_interface")
        devif_mod.get_interface_for_device = lambda device: torch.interfaces[device]  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "torch._dynamo.device_interface", devif_mod)
        # 2.11.0's has_triton() also reads this flag (False unless a user opts out of device detection)
        config_mod = types.ModuleType("torch._inductor.config")
        config_mod.triton_disable_device_detection = False  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "torch._inductor.config", config_mod)

        exc = _exec(
            tree / EXC_PY,
            _cut(tree / EXC_PY, ("TritonMissing", "GPUTooOldForTriton")),
            {"__name__": "torch._inductor.exc", "ShortenTraceback": ShortenTracebackError, "Optional": Any},
        )
        exc_mod = types.ModuleType("torch._inductor.exc")
        exc_mod.GPUTooOldForTriton = exc["GPUTooOldForTriton"]  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "torch._inductor.exc", exc_mod)

        triton_ns = _exec(
            tree / TRITON_PY,
            _cut(tree / TRITON_PY, ("has_triton",)),
            {
                "__name__": "torch.utils._triton",
                "functools": __import__("functools"),
                "Any": Any,
                "has_triton_package": lambda: triton,
            },
        )
        self.has_triton = triton_ns["has_triton"].__wrapped__

        sched_ns = _exec(
            tree / SCHEDULER_PY,
            _cut(tree / SCHEDULER_PY, ("create_backend",), cls="Scheduler"),
            {
                "__name__": "torch._inductor.scheduler",
                "torch": torch,
                "inspect": inspect,
                "has_triton": self.has_triton,
                "is_gpu": lambda t: t in ("cuda", "xpu"),
                "V": types.SimpleNamespace(graph=types.SimpleNamespace(add_device_info=lambda _d: None)),
                "get_scheduling_for_device": lambda _t: lambda sched: ("backend", sched),
                "GPUTooOldForTriton": exc["GPUTooOldForTriton"],
                "TritonMissing": exc["TritonMissing"],
            },
        )
        self._create_backend = sched_ns["create_backend"]

        # CudaInterface's two static methods, in a class of that name (raise_if_... refers to it).
        devif_tree = ast.parse((tree / DEVIF_PY).read_text())
        cuda_cls = next(
            n for n in devif_tree.body if isinstance(n, ast.ClassDef) and n.name == "CudaInterface"
        )
        methods = [
            n
            for n in cuda_cls.body
            if isinstance(n, ast.FunctionDef)
            and n.name in ("is_triton_capable", "raise_if_triton_unavailable")
        ]
        cls = ast.ClassDef(
            name="CudaInterface", bases=[], keywords=[], body=methods, decorator_list=[], type_params=[]
        )
        triton_mod = types.ModuleType("triton")
        triton_mod.backends = types.SimpleNamespace(backends={"nvidia": object()})  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "triton", triton_mod)
        monkeypatch.setitem(sys.modules, "triton.backends", triton_mod.backends)  # type: ignore[arg-type]
        devif_ns = _exec(
            tree / DEVIF_PY,
            ast.fix_missing_locations(ast.Module(body=[cls], type_ignores=[])),
            {"__name__": "torch._dynamo.device_interface", "torch": torch, "inspect": inspect},
        )
        self.cuda_interface = devif_ns["CudaInterface"]

    def create_backend(self) -> str:
        device = types.SimpleNamespace(type="cuda", index=0)
        try:
            kind, _ = self._create_backend(object(), device)
        except RuntimeError as exc:
            return f"{type(exc).__name__}: {exc}"
        return kind


# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cc", [(6, 0), (6, 1), (7, 0), (8, 6)])
def test_patched_gates_accept_pascal_and_newer(
    trees: dict[str, Path], monkeypatch: pytest.MonkeyPatch, cc: tuple[int, int]
) -> None:
    gates = Gates(trees["patched"], cc, monkeypatch)
    assert gates.has_triton() is True
    assert gates.create_backend() == "backend"
    assert gates.cuda_interface.is_triton_capable(0) is True
    gates.cuda_interface.raise_if_triton_unavailable(0)  # does not raise


@pytest.mark.parametrize("cc", [(5, 2), (5, 0)])
def test_patched_gates_still_reject_maxwell(
    trees: dict[str, Path], monkeypatch: pytest.MonkeyPatch, cc: tuple[int, int]
) -> None:
    gates = Gates(trees["patched"], cc, monkeypatch)
    assert gates.has_triton() is False
    outcome = gates.create_backend()
    assert outcome.startswith("GPUTooOldForTriton: Found Stand-in GPU")
    assert "Triton only supports devices of CUDA Capability >= 6.0" in outcome
    assert f"your device is of CUDA capability {cc[0]}.{cc[1]}" in outcome
    assert gates.cuda_interface.is_triton_capable(0) is False
    with pytest.raises(RuntimeError, match="too old to be supported by the triton GPU compiler"):
        gates.cuda_interface.raise_if_triton_unavailable(0)


def test_pristine_gates_reject_pascal(trees: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    gates = Gates(trees["pristine"], (6, 1), monkeypatch)
    assert gates.has_triton() is False
    outcome = gates.create_backend()
    assert outcome.startswith("GPUTooOldForTriton")
    assert "Capability >= 7.0" in outcome
    assert gates.cuda_interface.is_triton_capable(0) is False
    assert Gates(trees["pristine"], (7, 0), monkeypatch).create_backend() == "backend"


def test_pascal_without_triton_is_told_triton_is_missing(
    trees: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (
        Gates(trees["patched"], (6, 1), monkeypatch, triton=False)
        .create_backend()
        .startswith("TritonMissing: Cannot find a working triton installation")
    )
    assert (
        Gates(trees["pristine"], (6, 1), monkeypatch, triton=False)
        .create_backend()
        .startswith("GPUTooOldForTriton")
    )


def test_the_series_changes_exactly_four_lines(trees: dict[str, Path]) -> None:
    changed = {}
    for rel in FILES:
        old = (trees["pristine"] / rel).read_text().splitlines()
        new = (trees["patched"] / rel).read_text().splitlines()
        assert len(old) == len(new), rel
        changed[rel] = [(a.strip(), b.strip()) for a, b in zip(old, new, strict=True) if a != b]
    assert changed == {
        TRITON_PY: [
            (
                "return device_interface.Worker.get_device_properties().major >= 7",
                "return device_interface.Worker.get_device_properties().major >= 6",
            )
        ],
        SCHEDULER_PY: [
            (
                "and (device_props := torch.cuda.get_device_properties(device)).major < 7",
                "and (device_props := torch.cuda.get_device_properties(device)).major < 6",
            )
        ],
        EXC_PY: [
            (
                '"which is used as the backend. Triton only supports devices of CUDA Capability >= 7.0, "',
                '"which is used as the backend. Triton only supports devices of CUDA Capability >= 6.0, "',
            )
        ],
        DEVIF_PY: [
            (
                "or torch.cuda.get_device_properties(device).major >= 7",
                "or torch.cuda.get_device_properties(device).major >= 6",
            )
        ],
    }
