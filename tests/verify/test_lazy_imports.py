"""pascal_forge.verify.lazy_imports on small trees: which imports run when a module is imported."""

from __future__ import annotations

from pathlib import Path

import pytest

from pascal_forge.verify.lazy_imports import ModuleGraph, build_graph, importers, reaches


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def graph(tmp_path: Path) -> ModuleGraph:
    root = _tree(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg import core\n",
            "pkg/core.py": "import os\nfrom .util import helper\n",
            "pkg/util.py": "def helper():\n    import heavy\n    return heavy\n",
            "pkg/guarded.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    import heavy\n"
                "try:\n    import heavy\nexcept ImportError:\n    heavy = None\n"
                "if has_heavy():\n    from heavy.sub import thing\n"
            ),
            "pkg/kernels/__init__.py": "",
            "pkg/kernels/fast.py": "import heavy.ops as ops\n",
            "pkg/kernels/user.py": "from ..kernels.fast import ops\n",
            "pkg/kernels/deep/__init__.py": "from pkg.kernels import user\n",
            "pkg/kernels/deep/leaf.py": "X = 1\n",
            "pkg/cls.py": "class A:\n    import other\n",
        },
    )
    return build_graph(root, "pkg")


def test_module_level_import_is_followed_through_the_tree(graph: ModuleGraph) -> None:
    hit = reaches(graph, "pkg.kernels.deep.leaf", ["heavy"])
    # leaf's parent package imports user, which imports fast (relative, two levels), which imports heavy
    assert hit is not None
    assert hit.chain == (
        "pkg.kernels.deep.leaf",
        "pkg.kernels.deep",
        "pkg.kernels.user",
        "pkg.kernels.fast",
        "heavy",
    )


def test_function_body_try_and_if_are_not_import_time(graph: ModuleGraph) -> None:
    assert reaches(graph, "pkg.util", ["heavy"]) is None
    assert reaches(graph, "pkg.guarded", ["heavy"]) is None
    assert reaches(graph, "pkg", ["heavy"]) is None
    assert reaches(graph, "pkg.core", ["os"]) is not None  # a plain top-level import is


def test_class_bodies_run_at_import_time(graph: ModuleGraph) -> None:
    hit = reaches(graph, "pkg.cls", ["other"])
    assert hit is not None and hit.chain == ("pkg.cls", "other")


def test_importers_lists_every_module_that_would_fail(graph: ModuleGraph) -> None:
    assert set(importers(graph, ["heavy"])) == {
        "pkg.kernels.fast",
        "pkg.kernels.user",
        "pkg.kernels.deep",
        "pkg.kernels.deep.leaf",
    }


def test_unknown_module_is_an_error(graph: ModuleGraph) -> None:
    with pytest.raises(KeyError, match=r"pkg\.nope"):
        reaches(graph, "pkg.nope", ["heavy"])
