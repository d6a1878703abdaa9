"""The carry ladder on small synthetic trees: each step reached for the reason it exists, and
rules that fail loudly. Patches are real -p1 diffs applied by GNU patch; merges are git's."""

from __future__ import annotations

import difflib
import re
import subprocess
from pathlib import Path

import pytest

from pascal_forge.errors import PatchLibraryError
from pascal_forge.stack.model import PatchEntry
from pascal_forge.update.ladder import Carry, Step, base_files, carry_patch
from pascal_forge.update.merge3 import merge3
from pascal_forge.update.rules import Intents, load_intents

BODY = "".join(f"line {i}\n" for i in range(1, 31))
PY = (
    "import os\n\n\n"
    "def helper():\n    return 1\n\n\n"
    "def pick_dtype(config):\n"
    "    dtype = config.dtype\n"
    "    if dtype == 'auto':\n"
    "        dtype = 'bfloat16'\n"
    "    return dtype\n\n\n"
    "def other():\n    return 2\n"
)


def udiff(path: str, old: str, new: str) -> str:
    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"a/{path}", f"b/{path}"))


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def entry(tmp: Path, text: str, targets: tuple[str, ...] = ("f.txt",)) -> PatchEntry:
    path = tmp / "0001-x.patch"
    path.write_text(text)
    return PatchEntry("x", "vllm", path.name, path, "==1.0", targets, "why", (), "proof", 1)


NO_INTENTS = Intents()


def carry(
    tmp: Path, base: dict[str, str], ours: dict[str, str], new: dict[str, str], intents: Intents = NO_INTENTS
) -> tuple[Carry, Path]:
    text = "".join(udiff(p, base.get(p, ""), ours[p]) for p in sorted(ours))
    e = entry(tmp, text, tuple(sorted(ours)))
    base_tree = tree(tmp / "base", base)
    new_tree = tree(tmp / "new", new)
    result = carry_patch(e, base_files(e, base_tree), new_tree, intents, "2.0", "1.0")
    if result.carried:  # a carried patch must apply with -F0 and give our change on the new tree
        (tmp / "carried.patch").write_text(result.diff)
        run = subprocess.run(
            ["patch", "-p1", "-F0", "--batch", "-d", str(new_tree), "-i", str(tmp / "carried.patch")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert run.returncode == 0, run.stdout + run.stderr
    return result, new_tree


def test_lines_moved_applies_with_offset(tmp_path: Path) -> None:
    base = {"f.txt": BODY}
    ours = {"f.txt": BODY.replace("line 10\n", "line 10 pascal\n")}
    new = {"f.txt": "new 1\nnew 2\n" + BODY}
    result, tree_ = carry(tmp_path, base, ours, new)
    assert result.step == Step.APPLIED
    assert "offset +2" in result.detail
    assert "line 10 pascal\n" in (tree_ / "f.txt").read_text()


def test_context_reworded_needs_three_way(tmp_path: Path) -> None:
    base = {"f.txt": BODY}
    ours = {"f.txt": BODY.replace("line 10\n", "line 10 pascal\n")}
    new = {"f.txt": BODY.replace("line 8\n", "line 8 reworded\n").replace("line 12\n", "line 12 too\n")}
    result, tree_ = carry(tmp_path, base, ours, new)
    assert result.step == Step.THREE_WAY
    text = (tree_ / "f.txt").read_text()
    assert "line 8 reworded\nline 9\nline 10 pascal\nline 11\nline 12 too\n" in text


def test_adjacent_insertion_is_settled(tmp_path: Path) -> None:
    base = {"f.txt": BODY}
    ours = {"f.txt": BODY.replace("line 10\nline 11\n", "ours A\nours B\n")}
    new = {"f.txt": BODY.replace("line 10\n", "upstream inserted\nline 10\n")}
    result, tree_ = carry(tmp_path, base, ours, new)
    assert result.step == Step.THREE_WAY
    assert "1 adjacent insertion(s) settled" in result.detail
    assert "line 9\nupstream inserted\nours A\nours B\nline 12\n" in (tree_ / "f.txt").read_text()


def test_changed_line_reworded_needs_a_human_with_both_sides(tmp_path: Path) -> None:
    base = {"f.txt": BODY}
    ours = {"f.txt": BODY.replace("line 10\n", "line 10 pascal\n")}
    new = {"f.txt": BODY.replace("line 10\n", "line 10 upstream\n")}
    result, _ = carry(tmp_path, base, ours, new)
    assert result.step == Step.HUMAN
    assert result.diff == ""
    assert "line 10 upstream" in result.hunk
    assert "line 10 pascal" in result.hunk
    assert "||||||| base\nline 10\n" in result.hunk


def test_file_moved_to_another_folder_is_relocated(tmp_path: Path) -> None:
    base = {"old/f.txt": BODY}
    ours = {"old/f.txt": BODY.replace("line 10\n", "line 10 pascal\n")}
    new = {"moved/deeper/f.txt": BODY.replace("line 1\n", "line 1 changed\n")}
    result, tree_ = carry(tmp_path, base, ours, new)
    assert result.step == Step.RELOCATED
    assert result.targets == ("moved/deeper/f.txt",)
    assert "old/f.txt -> moved/deeper/f.txt" in result.detail
    assert "line 10 pascal" in (tree_ / "moved/deeper/f.txt").read_text()


def test_function_moved_to_another_module_is_relocated_by_its_anchor(tmp_path: Path) -> None:
    base = {"pkg/config.py": PY}
    ours = {
        "pkg/config.py": PY.replace("        dtype = 'bfloat16'\n", "        dtype = 'float16'  # pascal\n")
    }
    moved = "import sys\n\n\nclass Model:\n    pass\n\n\n" + PY.split("\n\n\n", 2)[2]
    new = {"pkg/config/model.py": moved, "pkg/config/__init__.py": "from .model import Model\n"}
    result, tree_ = carry(tmp_path, base, ours, new)
    assert result.step == Step.RELOCATED, result
    assert result.targets == ("pkg/config/model.py",)
    text = (tree_ / "pkg/config/model.py").read_text()
    assert "dtype = 'float16'  # pascal" in text
    assert text.startswith("import sys\n")


def test_code_removed_everywhere_is_obsolete_with_evidence(tmp_path: Path) -> None:
    body = "".join(f"distinctive statement number {i} of the old kernel;\n" for i in range(40))
    base = {"csrc/old.cu": body}
    ours = {"csrc/old.cu": body.replace("number 5 ", "number 5 pascal ")}
    new = {"csrc/other.cu": "int main() { return 0; }\n"}
    result, _ = carry(tmp_path, base, ours, new)
    assert result.step == Step.OBSOLETE
    assert "csrc/old.cu is gone and 40 of its 40 distinctive lines are in no *.cu file" in result.evidence


def test_already_upstream_is_obsolete(tmp_path: Path) -> None:
    base = {"f.txt": BODY}
    ours = {"f.txt": BODY.replace("line 10\n", "line 10 pascal\n")}
    result, _ = carry(tmp_path, base, ours, dict(ours))
    assert result.step == Step.OBSOLETE
    assert result.evidence == ("the patch reverse-applies",)


CMAKE = 'if(X)\n  set(ARCHS "7.0;8.0")\nelse()\n  set(ARCHS "7.0;9.0")\nendif()\n'


def series_with_rule(tmp: Path, count: str) -> Intents:
    (tmp / "series.toml").write_text(
        "[[intent]]\n"
        'patch = "x"\nfile = "CMakeLists.txt"\n'
        "pattern = '(set\\(ARCHS \")(7\\.0;)'\nreplace = '\\g<1>6.0;\\g<2>'\n"
        f"count = {count}\n"
    )
    return load_intents(tmp / "series.toml")["x"]


@pytest.mark.parametrize(("branches", "step"), [(0, Step.HUMAN), (1, Step.RULE), (2, Step.HUMAN)])
def test_intent_rule_count_must_match(tmp_path: Path, branches: int, step: Step) -> None:
    base = {"CMakeLists.txt": 'set(ARCHS "7.0;8.0")\n'}
    ours = {"CMakeLists.txt": 'set(ARCHS "6.0;7.0;8.0")\n'}
    lines = [f'set(OTHER "{i}")' for i in range(3)] + [
        f'  set(ARCHS "7.0;{8 + i}.0")' for i in range(branches)
    ]
    new = {"CMakeLists.txt": "if(Y)\n" + "\n".join(lines) + "\nendif()\n"}
    result, tree_ = carry(tmp_path, base, ours, new, series_with_rule(tmp_path, '{ "<2" = 1, ">=2" = 1 }'))
    assert result.step == step
    if step == Step.RULE:
        assert 'set(ARCHS "6.0;7.0;8.0")' in (tree_ / "CMakeLists.txt").read_text()
    else:
        assert (
            f"CMakeLists.txt: pattern '(set\\\\(ARCHS \")(7\\\\.0;)' matches {branches} time(s), 1 declared"
            in (result.detail)
        )


def test_intent_rule_count_per_version_range(tmp_path: Path) -> None:
    base = {"CMakeLists.txt": 'set(ARCHS "7.0;8.0")\n'}
    ours = {"CMakeLists.txt": 'set(ARCHS "6.0;7.0;8.0")\n'}
    new = {"CMakeLists.txt": CMAKE}
    result, tree_ = carry(tmp_path, base, ours, new, series_with_rule(tmp_path, '{ "<2" = 1, ">=2" = 2 }'))
    assert result.step == Step.RULE
    assert (tree_ / "CMakeLists.txt").read_text() == CMAKE.replace('"7.0;', '"6.0;7.0;')


def test_rule_that_does_not_reproduce_the_base_patch_is_refused(tmp_path: Path) -> None:
    base = {"CMakeLists.txt": 'set(ARCHS "7.0;8.0")\n'}
    ours = {"CMakeLists.txt": 'set(ARCHS "6.0;6.1;7.0;8.0")\n'}  # the rule only adds 6.0
    result, _ = carry(
        tmp_path, base, ours, {"CMakeLists.txt": CMAKE}, series_with_rule(tmp_path, '{ "<2" = 1, ">=2" = 2 }')
    )
    assert result.step == Step.HUMAN
    assert "the rules do not reproduce 0001-x.patch on the base source" in result.detail


def test_obsolete_probe_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "series.toml").write_text(
        '[[obsolete]]\npatch = "x"\nevidence = "upstream resolves auto"\nfiles = ["a.py", "f.txt"]\n'
        "pattern = '^line 10 upstream$'\n"
    )
    base = {"f.txt": BODY}
    ours = {"f.txt": BODY.replace("line 10\n", "line 10 pascal\n")}
    new = {"f.txt": BODY.replace("line 10\n", "line 10 upstream\n")}
    result, _ = carry(tmp_path, base, ours, new, load_intents(tmp_path / "series.toml")["x"])
    assert result.step == Step.OBSOLETE
    assert result.evidence == ("upstream resolves auto (f.txt:10)",)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('count = 0\npattern = "a"\nreplace = "b"', "'count' must be a positive integer"),
        ('count = 1\npattern = "("\nreplace = "b"', "bad pattern"),
        ('count = 1\npattern = "a"\nreplace = "b"\nsed = true', "unknown key(s) ['sed']"),
    ],
)
def test_bad_rules_are_refused(tmp_path: Path, body: str, message: str) -> None:
    (tmp_path / "series.toml").write_text(f'[[intent]]\npatch = "x"\nfile = "f"\n{body}\n')
    with pytest.raises(PatchLibraryError, match=re.escape(message)):
        load_intents(tmp_path / "series.toml")


def test_merge3_reports_a_real_conflict() -> None:
    m = merge3("a\nB\nc\n", "a\nb\nc\n", "a\nβ\nc\n")
    assert not m.clean
    assert m.conflicts[0].new == ("B",)
    assert m.conflicts[0].ours == ("β",)
