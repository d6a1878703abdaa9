"""The two torch 2.6.0 files the pytorch-pascal patches change, pristine or patched, for tests.

Pristine: obtained like `pascal-forge check` does, from the spec's check-only source (the PyPI
torch 2.6.0 wheel, sha256-pinned) through pascal_forge.stack.sources (downloaded once into the cache,
then re-verified), or from a directory named by PASCAL_FORGE_TORCH_FILES; each file is checked
against the sha256 the wheel's RECORD gives it. Patched: the pytorch-pascal series applied in
order with GNU patch and no fuzz, as the recipe does.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SERIES = REPO / "generator" / "pascal_forge" / "stack" / "patchlib" / "torch" / "series.toml"

TRITON_PY = "torch/utils/_triton.py"
SCHEDULER_PY = "torch/_inductor/scheduler.py"
# sha256 of the two members as recorded in torch-2.6.0.dist-info/RECORD of the PyPI wheel
# torch-2.6.0-cp311-cp311-manylinux1_x86_64.whl (wheel sha256 7979834102cd5b7a...c7446e1).
PRISTINE_SHA256 = {
    TRITON_PY: "c201efdcdce9b75740a78238468064965d7a3a98cc8ee99b35f1d57fe19bf921",
    SCHEDULER_PY: "c0ae714697c6b8bb82b5bb4fd65d1267118569fa04ceee5378c35e80448782d9",
}


def pristine_source() -> Path:
    """A directory holding the pristine files (site-packages layout); may download the wheel."""
    env = os.environ.get("PASCAL_FORGE_TORCH_FILES")
    if env:
        return Path(env)
    from pascal_forge.stack.sources import default_cache_dir, obtain
    from pascal_forge.stack.spec import load_spec

    stack = load_spec().stack()
    (wheel,) = [s for s in stack.check_sources_for("pytorch-pascal") if s.check_only]
    return obtain(wheel, default_cache_dir(), members=tuple(PRISTINE_SHA256)).tree


def copy_pristine(dst: Path) -> Path:
    """Copy the pristine files into ``dst`` (checked against the wheel's RECORD) and return it."""
    src = pristine_source()
    for rel, want in PRISTINE_SHA256.items():
        data = (src / rel).read_bytes()
        got = hashlib.sha256(data).hexdigest()
        assert got == want, f"{src / rel}: sha256 {got} is not torch 2.6.0's {want}"
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        (dst / rel).write_bytes(data)
    return dst


def series() -> list[dict[str, Any]]:
    """The torch 2.6.0 entries (the library also holds the 2.8.0 series: test_torch_gates_28_211.py)."""
    with SERIES.open("rb") as fh:
        entries: list[dict[str, Any]] = tomllib.load(fh)["patch"]
    return [e for e in entries if e["versions"] == "==2.6.0"]


def apply_series(tree: Path) -> Path:
    """Apply the pytorch-pascal series to ``tree`` in order (``patch -p1 -F0``) and return it."""
    assert shutil.which("patch"), "GNU patch is not installed"
    for entry in series():
        patch_file = SERIES.parent / entry["file"]
        res = subprocess.run(
            ["patch", "-p1", "-F0", "--batch", "--no-backup-if-mismatch", "-i", str(patch_file)],
            cwd=tree,
            check=False,
            capture_output=True,
            text=True,
        )
        assert res.returncode == 0, f"{entry['id']} does not apply:\n{res.stdout}{res.stderr}"
    return tree
