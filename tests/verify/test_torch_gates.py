"""Behaviour of the torch 2.6.0 Inductor capability gates, before and after our patches.

What is real here
-----------------
* The two upstream files, ``torch/utils/_triton.py`` and ``torch/_inductor/scheduler.py``, taken
  from torch 2.6.0 and checked byte for byte against the sha256 recorded for them in the PyPI
  wheel's ``RECORD`` (torch-2.6.0-cp311-cp311-manylinux1_x86_64.whl).
* The patch series, ``generator/pascal_forge/stack/patchlib/torch/series.toml``, applied in its order
  with ``patch -p1 -F0`` (no fuzz) to a copy of those files.
* The code that is executed: the ``has_triton`` function and the ``Scheduler.create_backend``
  method are cut out of the (patched or pristine) files with ``ast`` and executed unmodified
  (same ``from __future__ import annotations`` semantics as scheduler.py). ``create_backend``
  calls the ``has_triton`` taken from the same tree, so the test exercises the real chain that
  decides between "use Triton" and "too old".

What is stubbed (torch 2.6.0 is a CUDA wheel and cannot be imported here)
-------------------------------------------------------------------------
* ``torch._dynamo.device_interface.get_interface_for_device``: returns a fake interface per
  device type; only "cuda" is available and its ``Worker.get_device_properties()`` reports the
  capability under test. "xpu" and "cpu" report unavailable.
* ``torch`` as scheduler.py's module global, whose ``torch.cuda.get_device_properties``
  returns the same fake properties (name, major, minor).
* ``has_triton_package`` (in _triton.py): returns True, or False for the "no triton" cases.
* In scheduler.py's globals: ``is_gpu`` (same logic as torch/_inductor/utils.py: type in
  ("cuda", "xpu")), ``V.graph.add_device_info`` (no-op) and ``get_scheduling_for_device``
  (returns a marker class, so "accepted" means create_backend returned a backend).

Where the pristine files come from
----------------------------------
``torchfiles.pristine_source()`` is the single place that acquires them: the spec's check-only source
(the sha256-pinned PyPI torch 2.6.0 wheel) through pascal_forge.stack.sources, as `pascal-forge check`
does, or a directory given by PASCAL_FORGE_TORCH_FILES. The tests are marked ``integration``.
"""

from __future__ import annotations
import __future__

import ast
import shutil
import sys
import types
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from helpers import torchfiles
from helpers.torchfiles import PRISTINE_SHA256, SCHEDULER_PY, SERIES, TRITON_PY
from helpers.torchfiles import series as _series

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------------------------
# trees


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if shutil.which("patch") is None:
        pytest.skip("GNU patch is not installed")
    pristine = torchfiles.copy_pristine(tmp_path_factory.mktemp("pristine"))
    patched = torchfiles.apply_series(torchfiles.copy_pristine(tmp_path_factory.mktemp("patched")))
    return {"pristine": pristine, "patched": patched}


# --------------------------------------------------------------------------------------------
# stubs


class FakeProps:
    def __init__(self, cc: tuple[int, int]) -> None:
        self.major, self.minor = cc
        self.name = f"Fake GPU sm_{cc[0]}{cc[1]}"


class FakeDevice:
    """Stands in for torch.device("cuda", 0) as create_backend sees it."""

    def __init__(self, type_: str = "cuda", index: int = 0) -> None:
        self.type, self.index = type_, index


class Backend:
    """Marker returned by the stubbed get_scheduling_for_device."""

    def __init__(self, scheduler: object) -> None:
        self.scheduler = scheduler


def _fake_torch_modules(cc: tuple[int, int]) -> dict[str, types.ModuleType]:
    def interface(*, available: bool) -> types.SimpleNamespace:
        worker = types.SimpleNamespace(get_device_properties=lambda _device=None: FakeProps(cc))
        return types.SimpleNamespace(is_available=lambda: available, Worker=worker)

    interfaces = {
        "cuda": interface(available=True),
        "xpu": interface(available=False),
        "cpu": interface(available=False),
    }
    torch = types.ModuleType("torch")
    torch.cuda = types.SimpleNamespace(get_device_properties=lambda _device=None: FakeProps(cc))
    dynamo = types.ModuleType("torch._dynamo")
    devif = types.ModuleType("torch._dynamo.device_interface")
    devif.get_interface_for_device = lambda device: interfaces[device]
    torch._dynamo = dynamo
    dynamo.device_interface = devif
    return {"torch": torch, "torch._dynamo": dynamo, "torch._dynamo.device_interface": devif}


def _extract(path: Path, name: str, cls: str | None = None) -> ast.Module:
    """The top-level function `name` (or method `cls.name`) of `path`, as a module AST."""
    tree = ast.parse(path.read_text(), filename=str(path))
    body = tree.body
    if cls is not None:
        body = next(n for n in body if isinstance(n, ast.ClassDef) and n.name == cls).body
    node = next(n for n in body if isinstance(n, ast.FunctionDef) and n.name == name)
    return ast.Module(body=[node], type_ignores=[])


def _load_has_triton(tree: Path, *, triton_installed: bool = True) -> Callable[[], bool]:
    path = tree / TRITON_PY
    ns: dict = {"__name__": "torch.utils._triton"}
    exec("import functools", ns)  # noqa: S102 (namespace for the has_triton decorator)
    ns["has_triton_package"] = lambda: triton_installed  # stub
    exec(compile(_extract(path, "has_triton"), str(path), "exec"), ns)  # noqa: S102 (upstream code cut out with ast)
    return ns["has_triton"]


def _load_create_backend(tree: Path, has_triton: Callable[[], bool]) -> Callable[..., object]:
    path = tree / SCHEDULER_PY
    ns: dict = {
        "__name__": "torch._inductor.scheduler",
        "has_triton": has_triton,
        "torch": sys.modules["torch"],  # the fake installed by _run_gates
        "is_gpu": lambda device: device in ("cuda", "xpu"),  # torch/_inductor/utils.py logic
        "V": types.SimpleNamespace(graph=types.SimpleNamespace(add_device_info=lambda _d: None)),
        "get_scheduling_for_device": lambda _device_type: Backend,
    }
    # scheduler.py starts with `from __future__ import annotations`; keep those semantics.
    code = compile(
        _extract(path, "create_backend", cls="Scheduler"),
        str(path),
        "exec",
        flags=__future__.annotations.compiler_flag,
        dont_inherit=True,
    )
    exec(code, ns)  # noqa: S102 (upstream code cut out with ast)
    return ns["create_backend"]


def _run_gates(
    tree: Path,
    cc: tuple[int, int],
    monkeypatch: pytest.MonkeyPatch,
    *,
    triton_installed: bool = True,
) -> tuple[bool, str]:
    """Return (has_triton(), create_backend outcome) for a fake CUDA device of capability cc."""
    for name, mod in _fake_torch_modules(cc).items():
        monkeypatch.setitem(sys.modules, name, mod)
    has_triton = _load_has_triton(tree, triton_installed=triton_installed)
    create_backend = _load_create_backend(tree, has_triton)
    sched = object()
    try:
        backend = create_backend(sched, FakeDevice("cuda", 0))
    except RuntimeError as exc:
        outcome = str(exc)
    else:
        assert isinstance(backend, Backend)
        assert backend.scheduler is sched
        outcome = "accepted"
    return has_triton(), outcome


# --------------------------------------------------------------------------------------------
# tests


@pytest.mark.parametrize("cc", [(6, 1), (6, 0), (7, 0), (8, 6)])
def test_patched_accepts_pascal_and_newer(
    trees: dict[str, Path], monkeypatch: pytest.MonkeyPatch, cc: tuple[int, int]
) -> None:
    assert _run_gates(trees["patched"], cc, monkeypatch) == (True, "accepted")


@pytest.mark.parametrize("cc", [(5, 2), (5, 0), (3, 7)])
def test_patched_still_rejects_maxwell_and_older(
    trees: dict[str, Path], monkeypatch: pytest.MonkeyPatch, cc: tuple[int, int]
) -> None:
    ok, outcome = _run_gates(trees["patched"], cc, monkeypatch)
    assert ok is False
    assert "too old to be supported by the triton GPU compiler" in outcome
    assert f"your device is of CUDA capability {cc[0]}.{cc[1]}" in outcome


def test_pristine_rejects_pascal(trees: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the series, (6, 1) is refused: the patch is what changes the outcome."""
    ok, outcome = _run_gates(trees["pristine"], (6, 1), monkeypatch)
    assert ok is False
    assert "too old to be supported by the triton GPU compiler" in outcome
    assert "Capability >= 7.0" in outcome


def test_pristine_accepts_volta(trees: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    assert _run_gates(trees["pristine"], (7, 0), monkeypatch) == (True, "accepted")


def test_scheduler_gate_without_triton(trees: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The scheduler's own threshold, isolated: has_triton() is false because triton is missing.

    Patched, a Pascal GPU is no longer called "too old" but told triton is not installed;
    a cc 5.2 GPU is still "too old". Pristine, the Pascal GPU is "too old"."""
    _, outcome = _run_gates(trees["patched"], (6, 1), monkeypatch, triton_installed=False)
    assert outcome.startswith("Cannot find a working triton installation")
    _, outcome = _run_gates(trees["patched"], (5, 2), monkeypatch, triton_installed=False)
    assert "too old" in outcome
    assert "Capability >= 6.0" in outcome
    _, outcome = _run_gates(trees["pristine"], (6, 1), monkeypatch, triton_installed=False)
    assert "too old" in outcome


def test_nothing_else_changes(trees: dict[str, Path]) -> None:
    """The series changes exactly the two thresholds (and the matching message), nothing else."""
    changed = {}
    for rel in PRISTINE_SHA256:
        old = (trees["pristine"] / rel).read_text().splitlines()
        new = (trees["patched"] / rel).read_text().splitlines()
        assert len(old) == len(new), rel
        changed[rel] = [(a.strip(), b.strip()) for a, b in zip(old, new, strict=True) if a != b]
    assert changed[TRITON_PY] == [
        (
            "return device_interface.Worker.get_device_properties().major >= 7",
            "return device_interface.Worker.get_device_properties().major >= 6",
        )
    ]
    sched = changed[SCHEDULER_PY]
    assert len(sched) == 2
    assert sched[0] == (
        "and (device_props := torch.cuda.get_device_properties(device)).major < 7",
        "and (device_props := torch.cuda.get_device_properties(device)).major < 6",
    )
    assert sched[1][0].replace("Capability >= 7.0", "Capability >= 6.0") == sched[1][1]


def test_series_metadata() -> None:
    entries = _series()
    assert [e["id"] for e in entries] == ["inductor-gate-utils-triton", "inductor-gate-scheduler"]
    for e in entries:
        assert (SERIES.parent / e["file"]).is_file()
        assert e["versions"] == "==2.6.0"
        assert e["reason"]
        assert e["proof"]
        assert e["references"]
        text = (SERIES.parent / e["file"]).read_text()
        for target in e["targets"]:
            assert f"--- a/{target}\n" in text
            assert f"+++ b/{target}\n" in text
