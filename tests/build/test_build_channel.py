"""`pascal-forge build` orchestration on small real recipes built by the rattler-build engine.

The three recipes mirror the real stack's shape (a triton-like base, a torch-like overlay that
requires it, a vllm-like package requiring both), so dependency order, incremental rebuilds,
the channel lock and failure atomicity are exercised with real engine builds, offline.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pascal_forge.build.backends import BuildOptions, build_channel, definition_hash, plan_targets
from pascal_forge.build.channel import (
    BUILD_RECORD,
    channel_lock,
    consistency_problems,
    index_channel,
    read_packages,
)
from pascal_forge.cli import main
from pascal_forge.errors import BuildError, ChannelLockedError

pytestmark = pytest.mark.integration

VARIANTS = 'flavor:\n  - "a"\n  - "b"\n'


def recipe(name: str, run: list[str], script: str = "", flavored: bool = False) -> str:
    build_string = "  string: ${{ flavor }}_pascal_h${{ hash }}_0\n" if flavored else ""
    reqs = "".join(f"    - {r}\n" for r in run)
    body = script or f"mkdir -p $PREFIX/share/{name} && echo {name} > $PREFIX/share/{name}/{name}.txt"
    text = (
        f'package:\n  name: {name}\n  version: "1.0"\n'
        f"build:\n  number: 0\n{build_string}  script:\n    - {body}\n"
    )
    if flavored:
        text += "requirements:\n  host:\n    - demo-base\n  run:\n" + reqs if run else ""
    elif run:
        text += "requirements:\n  host:\n" + reqs + "  run:\n" + reqs
    return text


def make_tree(root: Path, vllm_script: str = "") -> Path:
    """demo-base <- demo-overlay <- demo-app, in folders named so alphabetical order is wrong."""
    tree = root / "recipes"
    specs = {
        "c-base": recipe("demo-base", []),
        "b-overlay": recipe("demo-overlay", ["demo-base"]),
        "a-app": recipe("demo-app", ["demo-overlay", "demo-base"], vllm_script),
    }
    for folder, text in specs.items():
        (tree / folder).mkdir(parents=True)
        (tree / folder / "recipe.yaml").write_text(text, "utf-8")
    (tree / "variants.yaml").write_text(VARIANTS, "utf-8")
    return tree


def options(channel: Path, **kw: object) -> BuildOptions:
    kw.setdefault("channels", ())
    return BuildOptions(channel_dir=channel, test="skip", **kw)  # type: ignore[arg-type]


def build_args(tree: Path, channel: Path, *extra: str) -> list[str]:
    """`pascal-forge build` arguments for a test tree and channel (package tests skipped)."""
    return ["build", "--recipes", str(tree), "--channel-dir", str(channel), "--test", "skip", *extra]


def empty_upstream(root: Path) -> Path:
    """An indexed, empty channel standing in for conda-forge (the recipes need nothing from it)."""
    upstream = root / "upstream"
    for sub in ("linux-64", "noarch"):
        (upstream / sub).mkdir(parents=True, exist_ok=True)
    index_channel(upstream)
    return upstream


def test_builds_in_dependency_order_into_a_valid_channel(tmp_path: Path) -> None:
    tree, channel = make_tree(tmp_path), tmp_path / "channel"
    log: list[str] = []
    outcomes = build_channel(tree, options(channel), log.append)
    assert [o.target.recipe for o in outcomes] == ["c-base", "b-overlay", "a-app"]
    assert all(o.status == "built" for o in outcomes)
    assert [line.split()[1] for line in log if "building" in line] == ["building"] * 3
    assert consistency_problems(channel) == []
    assert sorted(p.name for p in read_packages(channel)) == ["demo-app", "demo-base", "demo-overlay"]
    for sub in ("linux-64", "noarch"):
        assert (channel / sub / "repodata.json").is_file()
    for pkg in (channel / "linux-64").glob("*.conda"):
        assert pkg.stat().st_mode & 0o777 == 0o644, f"{pkg} is not world-readable"
    published = {p.name for p in channel.rglob("*")}
    assert not published & {"bld", "src_cache", ".tmp", "work"}, published
    # The recorded definition hashes are the ones the planner computes.
    record = json.loads((channel / "linux-64" / BUILD_RECORD).read_text())
    assert sorted(record.values()) == sorted(t.definition for t in plan_targets(tree, options(channel)))


def test_second_run_builds_nothing_and_one_changed_recipe_rebuilds_alone(tmp_path: Path) -> None:
    tree, channel = make_tree(tmp_path), tmp_path / "channel"
    build_channel(tree, options(channel), lambda _: None)
    before = {p.name: p.stat().st_mtime_ns for p in (channel / "linux-64").glob("*.conda")}
    again = build_channel(tree, options(channel), lambda _: None)
    assert [o.status for o in again] == ["up to date"] * 3
    assert {p.name: p.stat().st_mtime_ns for p in (channel / "linux-64").glob("*.conda")} == before

    # A new "patch" in the app recipe changes only its definition.
    (tree / "a-app" / "patches").mkdir()
    (tree / "a-app" / "patches" / "0001-fix.patch").write_text("--- a/x\n+++ b/x\n", "utf-8")
    third = build_channel(tree, options(channel), lambda _: None)
    assert {o.target.recipe: o.status for o in third} == {
        "c-base": "up to date",
        "b-overlay": "up to date",
        "a-app": "built",
    }
    assert consistency_problems(channel) == []


def test_only_and_variant_filters(tmp_path: Path) -> None:
    tree = make_tree(tmp_path)
    (tree / "c-base" / "recipe.yaml").write_text(recipe("demo-base", [], flavored=True), "utf-8")
    targets = plan_targets(tree, options(tmp_path / "ch"))
    assert [t.recipe for t in targets].count("c-base") == 2  # flavor a and b
    only = plan_targets(tree, options(tmp_path / "ch", only=("c-base",), variants=(("flavor", "b"),)))
    assert [(t.recipe, t.variant.build_string.split("_")[0]) for t in only] == [("c-base", "b")]
    with pytest.raises(BuildError, match="--only nope: no such recipe"):
        plan_targets(tree, options(tmp_path / "ch", only=("nope",)))


def test_definition_hash_covers_files_and_variant(tmp_path: Path) -> None:
    tree = make_tree(tmp_path)
    base = definition_hash(tree / "a-app", {"python": "3.12"})
    assert definition_hash(tree / "a-app", {"python": "3.12"}) == base
    assert definition_hash(tree / "a-app", {"python": "3.10"}) != base
    (tree / "a-app" / "build.sh").write_text("echo\n", "utf-8")
    assert definition_hash(tree / "a-app", {"python": "3.12"}) != base


def test_a_second_writer_is_refused_by_the_lock(tmp_path: Path) -> None:
    tree, channel = make_tree(tmp_path), tmp_path / "channel"
    channel.mkdir()
    with channel_lock(channel), pytest.raises(ChannelLockedError, match=r"pid \d+"):
        build_channel(tree, options(channel), lambda _: None)
    rc = None
    with channel_lock(channel):
        rc = main(build_args(tree, channel))
    assert rc == ChannelLockedError.exit_code


def test_a_failing_build_leaves_the_channel_as_it_was(tmp_path: Path) -> None:
    good, channel = make_tree(tmp_path / "good"), tmp_path / "channel"
    build_channel(good, options(channel), lambda _: None)
    before = {p.file_name: p.sha256 for p in read_packages(channel)}
    bad = make_tree(tmp_path / "bad", vllm_script="echo compiling && exit 3")
    (bad / "c-base" / "extra.txt").write_text("changed\n", "utf-8")  # base rebuilds, then app fails
    with pytest.raises(BuildError, match="a-app: building demo-app"):
        build_channel(bad, options(channel), lambda _: None)
    after = {p.file_name: p.sha256 for p in read_packages(channel)}
    assert consistency_problems(channel) == []
    assert set(after) == set(before)  # base was replaced in place (same file name), app untouched
    assert not (tmp_path / ".channel.staging").exists()


def test_killing_a_build_midway_leaves_index_and_files_in_agreement(tmp_path: Path) -> None:
    tree = make_tree(tmp_path, vllm_script="sleep 60")
    channel, upstream = tmp_path / "channel", empty_upstream(tmp_path)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pascal_forge",
            *build_args(tree, channel, "-c", str(upstream), "--no-resolve-check"),
        ],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if (channel / "linux-64").is_dir() and len(
            list((channel / "linux-64").glob("demo-overlay-*.conda"))
        ) == 1:
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("the build never reached the app recipe")
    time.sleep(0.5)  # inside the app's build script now
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert consistency_problems(channel) == []
    assert sorted(p.name for p in read_packages(channel)) == ["demo-base", "demo-overlay"]
    # The next run clears the killed run's leftovers and finishes the job.
    tree_ok = make_tree(tmp_path / "ok")
    outcomes = build_channel(tree_ok, options(channel), lambda _: None)
    assert {o.target.recipe: o.status for o in outcomes}["a-app"] == "built"
    assert consistency_problems(channel) == []


def test_cli_summary_and_missing_backend(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree, channel = make_tree(tmp_path), tmp_path / "channel"
    upstream = empty_upstream(tmp_path)
    rc = main(build_args(tree, channel, "-c", str(upstream)))
    out = capsys.readouterr()
    assert rc == 0
    assert "demo-app 1.0" in out.out and "built" in out.out
    assert "resolve-check skipped" in out.err
    for pkg in read_packages(channel):
        assert pkg.sha256 in out.out
    if os.environ.get("PATH") and not any(
        (Path(d) / "conda-build").exists() for d in os.environ["PATH"].split(os.pathsep)
    ):
        rc = main([*build_args(tree, channel), "--backend", "conda-build"])
        assert rc == BuildError.exit_code
        assert "`conda-build` is not on PATH" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["rattler-build", "conda-build"])
def test_cli_backends_give_the_same_channel(backend: str, tmp_path: Path) -> None:
    if shutil.which(backend) is None:
        pytest.skip(f"the {backend} CLI is not installable here (it comes from conda channels, unreachable)")
    tree, upstream = make_tree(tmp_path), empty_upstream(tmp_path)
    engine = build_channel(tree, options(tmp_path / "engine", channels=(str(upstream),)), lambda _: None)
    cli = build_channel(
        tree, options(tmp_path / backend, channels=(str(upstream),), backend=backend), lambda _: None
    )
    assert [o.target.recipe for o in cli] == [o.target.recipe for o in engine]
    assert consistency_problems(tmp_path / backend) == []
    assert sorted(p.name for p in read_packages(tmp_path / backend)) == [
        "demo-app",
        "demo-base",
        "demo-overlay",
    ]
