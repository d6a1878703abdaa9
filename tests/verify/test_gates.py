"""Locating torch's Inductor gates with ast, and judging them for compute capability 6.x.

Unit tests use the two gate functions cut verbatim from torch 2.6.0 (torch/utils/_triton.py lines
64-95 and torch/_inductor/scheduler.py lines 3413-3437 of the PyPI wheel
torch-2.6.0-cp311-cp311-manylinux1_x86_64.whl, sha256 7979834102cd5b7a...c7446e1; the scheduler
method inside a bare ``class Scheduler``). The integration test reads the complete real files,
pristine and with the pytorch-pascal series applied by GNU patch.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from helpers import torchfiles
from pascal_forge.verify.gates import TORCH_GATES, State, inspect_gate

HAS_TRITON, CREATE_BACKEND = TORCH_GATES

HAS_TRITON_2_6_0 = """\
@functools.lru_cache(None)
def has_triton() -> bool:
    if not has_triton_package():
        return False

    from torch._dynamo.device_interface import get_interface_for_device

    def cuda_extra_check(device_interface):
        return device_interface.Worker.get_device_properties().major >= 7

    def cpu_extra_check(device_interface):
        import triton.backends

        return "cpu" in triton.backends.backends

    def _return_true(device_interface):
        return True

    triton_supported_devices = {
        "cuda": cuda_extra_check,
        "xpu": _return_true,
        "cpu": cpu_extra_check,
    }

    def is_device_compatible_with_triton():
        for device, extra_check in triton_supported_devices.items():
            device_interface = get_interface_for_device(device)
            if device_interface.is_available() and extra_check(device_interface):
                return True
        return False

    return is_device_compatible_with_triton()
"""

CREATE_BACKEND_2_6_0 = """\
class Scheduler:
    def create_backend(self, device: torch.device) -> BaseScheduling:
        assert (
            not is_gpu(device.type) or device.index is not None
        ), f"{device} should have been normalized in lowering"
        V.graph.add_device_info(device)

        device_scheduling = get_scheduling_for_device(device.type)
        if device_scheduling is None:
            raise RuntimeError(f"Unsupported device type: {device.type}")

        if not has_triton():
            if (
                device.type == "cuda"
                and (device_props := torch.cuda.get_device_properties(device)).major < 7
            ):
                raise RuntimeError(
                    f"Found {device_props.name} which is too old to be supported by the triton GPU compiler, which is used as the backend. Triton only supports devices of CUDA Capability >= 7.0, but your device is of CUDA capability {device_props.major}.{device_props.minor}"  # noqa: B950
                )
            elif is_gpu(device.type):
                raise RuntimeError(
                    "Cannot find a working triton installation. Either the package is not installed or it is too old. More information on installing Triton can be found at https://github.com/openai/triton"  # noqa: B950
                )

        return device_scheduling(self)

"""


def site(tmp_path: Path, triton_py: str | None = None, scheduler_py: str | None = None) -> Path:
    for rel, text in ((HAS_TRITON.file, triton_py), (CREATE_BACKEND.file, scheduler_py)):
        if text is not None:
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / rel).write_text(text)
    return tmp_path


def pascal(text: str, old: str, new: str) -> str:
    """What the pytorch-pascal patch does to the line (checked on the real files below)."""
    assert text.count(old) == 1
    return text.replace(old, new)


def test_upstream_2_6_0_rejects_pascal(tmp_path: Path) -> None:
    root = site(tmp_path, HAS_TRITON_2_6_0, CREATE_BACKEND_2_6_0)
    res = inspect_gate(HAS_TRITON, root)
    assert (res.state, res.line, res.text) == (
        State.REJECTS,
        9,  # line 72 of the file
        "return device_interface.Worker.get_device_properties().major >= 7",
    )
    res = inspect_gate(CREATE_BACKEND, root)
    assert (res.state, res.line, res.text) == (
        State.REJECTS,
        15,  # line 3426 of the file
        "and (device_props := torch.cuda.get_device_properties(device)).major < 7",
    )


def test_patched_accepts_pascal(tmp_path: Path) -> None:
    root = site(
        tmp_path,
        pascal(HAS_TRITON_2_6_0, ".major >= 7", ".major >= 6"),
        pascal(CREATE_BACKEND_2_6_0, ".major < 7\n", ".major < 6\n"),
    )
    assert inspect_gate(HAS_TRITON, root).state == State.ACCEPTS
    assert inspect_gate(CREATE_BACKEND, root).state == State.ACCEPTS


def test_layout_does_not_matter(tmp_path: Path) -> None:
    """Reformatted, commented and with the comparison mirrored into `>`: still found and judged."""
    text = pascal(
        HAS_TRITON_2_6_0,
        "        return device_interface.Worker.get_device_properties().major >= 7\n",
        "        # Pascal is fine\n        props = device_interface.Worker.get_device_properties()\n"
        "        return (\n            props.major\n            > 5\n        )\n",
    )
    res = inspect_gate(HAS_TRITON, site(tmp_path, triton_py=text))
    assert (res.state, res.text) == (State.ACCEPTS, "props.major")
    text = text.replace("> 5", "> 6")
    assert inspect_gate(HAS_TRITON, site(tmp_path, triton_py=text)).state == State.REJECTS


def test_gate_elsewhere_in_the_file_is_not_mistaken(tmp_path: Path) -> None:
    """A `.major` comparison outside the gate's function does not count."""
    text = "def other(p):\n    return p.major >= 7\n\n\ndef has_triton():\n    return True\n"
    res = inspect_gate(HAS_TRITON, site(tmp_path, triton_py=text))
    assert (res.state, res.detail) == (State.NOT_FOUND, "has_triton compares no `.major` with a number")


@pytest.mark.parametrize(
    ("text", "state", "detail"),
    [
        (None, State.UNREADABLE, "the file is missing"),
        ("def has_triton(:\n", State.UNREADABLE, "syntax error: "),
        ("def something_else():\n    pass\n", State.NOT_FOUND, "has_triton is not defined"),
    ],
)
def test_missing_broken_or_moved(tmp_path: Path, text: str | None, state: State, detail: str) -> None:
    res = inspect_gate(HAS_TRITON, site(tmp_path, triton_py=text))
    assert res.state == state
    assert res.detail.startswith(detail)


def test_gates_are_the_torch_series_targets() -> None:
    targets = [t for entry in torchfiles.series() for t in entry["targets"]]
    assert [g.file for g in TORCH_GATES] == targets
    assert [g.id for g in TORCH_GATES] == ["inductor-gate-has-triton", "inductor-gate-scheduler"]


@pytest.mark.integration
def test_real_files_pristine_and_patched(tmp_path: Path) -> None:
    if shutil.which("patch") is None:
        pytest.skip("GNU patch is not installed")
    pristine = torchfiles.copy_pristine(tmp_path / "pristine")
    patched = torchfiles.apply_series(torchfiles.copy_pristine(tmp_path / "patched"))
    assert [(r.state, r.line) for r in (inspect_gate(g, pristine) for g in TORCH_GATES)] == [
        (State.REJECTS, 72),
        (State.REJECTS, 3426),
    ]
    assert [(r.state, r.line) for r in (inspect_gate(g, patched) for g in TORCH_GATES)] == [
        (State.ACCEPTS, 72),
        (State.ACCEPTS, 3426),
    ]
    # the excerpts above are the real text
    assert HAS_TRITON_2_6_0 in (pristine / HAS_TRITON.file).read_text()
    assert (
        CREATE_BACKEND_2_6_0.removeprefix("class Scheduler:\n")
        in (pristine / CREATE_BACKEND.file).read_text()
    )
