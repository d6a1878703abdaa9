"""`pascal-forge channel publish`: a static tree, consistent, deterministic, atomic; CEP-15 base_url."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import zstandard

from helpers.condapkgs import Pkg, install_prefix, make_channel, solve
from helpers.hostutil import cli_server, stop_and_log
from pascal_forge.build.channel import ChannelPackage, consistency_problems, read_packages
from pascal_forge.cli import main
from pascal_forge.errors import HostingUrlError, PublishError
from pascal_forge.hosting import publish as publish_module
from pascal_forge.hosting.publish import MARKER, normalize_base_url, publish, render_index

PACKAGES = [
    Pkg("triton", "3.2.0", "cuda126py312_pascal_h1a2b3c4_0"),
    Pkg("pytorch", "2.6.0", "cuda126_py312_pascal_h5d6e7f8_0", depends=("triton ==3.2.0 *pascal*",)),
    Pkg(
        "vllm-pascal",
        "0.8.5",
        "cuda126py312_pascal_h9a8b7c6_0",
        depends=("pytorch ==2.6.0 *pascal*", "triton ==3.2.0 *pascal*"),
    ),
    Pkg("pascal-forge-docs", "1.0", "0", subdir="noarch"),
]
RELEASE = "https://github.com/example/pascal-forge/releases/download/channel-1/"


@pytest.fixture(scope="module")
def built_channel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A channel as `pascal-forge build` leaves it: packages, repodata, shards, the build record."""
    channel = make_channel(tmp_path_factory.mktemp("built") / "channel", PACKAGES)
    (channel / "linux-64" / ".pascal-forge-build.json").write_text('{"x": "y"}\n')
    return channel


@pytest.fixture
def channel(built_channel: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "channel"
    shutil.copytree(built_channel, copy)
    return copy


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if not p.is_dir())


def _package_names(channel: Path) -> list[str]:
    return sorted(f"{p.subdir}/{p.file_name}" for p in read_packages(channel))


@pytest.mark.integration
def test_published_tree_is_static_channel(channel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = publish(channel, site)
    pkgs = _package_names(channel)
    assert len(pkgs) == 4
    expected = sorted(
        [
            ".nojekyll",
            MARKER,
            "index.html",
            "linux-64/repodata.json",
            "linux-64/repodata.json.zst",
            "noarch/repodata.json",
            "noarch/repodata.json.zst",
            *pkgs,
        ]
    )
    assert _files(site) == expected  # no shards, no build record, nothing else
    assert list(result.files) == expected
    assert consistency_problems(site) == []
    assert read_packages(site) == read_packages(channel)
    for sub in ("linux-64", "noarch"):
        plain = (site / sub / "repodata.json").read_bytes()
        assert plain == (channel / sub / "repodata.json").read_bytes()
        assert (
            zstandard.ZstdDecompressor().decompress((site / sub / "repodata.json.zst").read_bytes()) == plain
        )
    for rel in expected:
        assert (site / rel).stat().st_mode & 0o777 == 0o644, rel
    assert (site.stat().st_mode & 0o777) == 0o755
    # Nothing left beside the target (staging folders) but the channel's own lock.
    assert sorted(p.name for p in tmp_path.iterdir()) == [".channel.lock", "channel", "site"]

    page = (site / "index.html").read_text()
    for pkg in read_packages(channel):
        row = re.search(
            rf'<tr><td><a href="{re.escape(pkg.subdir)}/{re.escape(pkg.file_name)}">.*?</tr>', page
        )
        assert row, pkg.file_name
        for value in (pkg.name, pkg.version, pkg.build, pkg.subdir, pkg.sha256, f"{pkg.size} bytes"):
            assert html.escape(value) in row.group(0)


@pytest.mark.integration
def test_publish_is_deterministic_and_replaces_its_own_output(channel: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    publish(channel, first)
    publish(channel, second)
    assert _files(first) == _files(second)
    for rel in _files(first):
        assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel
    # Republishing into an earlier output replaces it as a whole.
    (first / "linux-64" / "stale.conda").write_bytes(b"old")
    publish(channel, first, RELEASE)
    assert not (first / "linux-64" / "stale.conda").exists()
    assert not list(first.rglob("*.conda"))


@pytest.mark.integration
def test_published_tree_installs_over_http(channel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    publish(channel, site)
    with cli_server(site) as (url, proc):
        records = install_prefix(tmp_path / "env", [url], ["vllm-pascal"], tmp_path / "pkgs")
        code, log = stop_and_log(proc)
    assert code == 0
    assert sorted(r.name.normalized for r in records) == ["pytorch", "triton", "vllm-pascal"]
    assert all(str(r.url).startswith(url + "linux-64/") for r in records)
    assert (tmp_path / "env" / "share" / "pascal-forge-test" / "vllm-pascal.txt").is_file()
    assert any('"GET /linux-64/repodata.json' in line for line in log)


@pytest.mark.integration
def test_base_url_publishes_repodata_only(channel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    publish(channel, site, RELEASE.rstrip("/"))  # the trailing "/" is added
    assert not [f for f in _files(site) if f.endswith((".conda", ".tar.bz2"))]
    for sub in ("linux-64", "noarch"):
        data = json.loads((site / sub / "repodata.json").read_text())
        assert data["info"] == {"base_url": RELEASE, "subdir": sub}
        assert data["repodata_version"] == 2
        plain = (site / sub / "repodata.json").read_bytes()
        assert (
            zstandard.ZstdDecompressor().decompress((site / sub / "repodata.json.zst").read_bytes()) == plain
        )
    assert read_packages(site) == read_packages(channel)
    assert f'href="{RELEASE}vllm-pascal-0.8.5-' in (site / "index.html").read_text()
    # A client resolves every package URL against base_url (py-rattler, file:// channel).
    records = solve([site], ["vllm-pascal", "pascal-forge-docs"])
    assert len(records) == 4
    for rec in records:
        assert str(rec.url) == RELEASE + rec.file_name


@pytest.mark.integration
def test_base_url_install_fetches_from_the_other_host(channel: Path, tmp_path: Path) -> None:
    """Repodata from `channel serve` on one port, package files from a release stand-in on another."""
    release = tmp_path / "release"
    release.mkdir()
    for pkg in read_packages(channel):
        shutil.copyfile(channel / pkg.subdir / pkg.file_name, release / pkg.file_name)
    assets = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(release), "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert assets.stdout is not None
        match = re.search(r"port (\d+)", assets.stdout.readline())
        assert match
        base = f"http://127.0.0.1:{match.group(1)}/"
        site = tmp_path / "site"
        publish(channel, site, base)
        with cli_server(site) as (url, proc):
            records = install_prefix(tmp_path / "env", [url], ["vllm-pascal"], tmp_path / "pkgs")
            code, log = stop_and_log(proc)
    finally:
        assets.terminate()
        _, asset_log = assets.communicate(timeout=10)
    assert code == 0
    assert all(str(r.url) == base + r.file_name for r in records)
    assert (tmp_path / "env" / "share" / "pascal-forge-test" / "vllm-pascal.txt").is_file()
    assert not any(".conda" in line for line in log)  # no package came from the repodata host
    for rec in records:
        assert f"GET /{rec.file_name} " in asset_log


@pytest.mark.integration
def test_publish_refuses_foreign_or_overlapping_targets(
    channel: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("years of work\n")
    assert main(["channel", "publish", "--channel-dir", str(channel), "--to", str(foreign)]) == 30
    assert "publish-refused" in capsys.readouterr().err
    assert _files(foreign) == ["thesis.tex"]
    for target in (channel, channel / "linux-64" / "site", tmp_path):
        before = _files(channel)
        assert main(["channel", "publish", "--channel-dir", str(channel), "--to", str(target)]) == 30
        assert _files(channel) == before
    assert "overlaps" in capsys.readouterr().err


@pytest.mark.integration
def test_publish_refuses_an_inconsistent_channel(
    channel: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copyfile(channel / "noarch" / "repodata.json", channel / "linux-64" / "extra-1.0-0.conda")
    assert main(["channel", "publish", "--channel-dir", str(channel), "--to", str(tmp_path / "site")]) == 12
    err = capsys.readouterr().err
    assert "extra-1.0-0.conda is not in repodata.json" in err
    assert "pascal-forge channel index" in err
    assert not (tmp_path / "site").exists()


@pytest.mark.integration
def test_failed_publish_keeps_the_previous_tree(
    channel: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    publish(channel, site)
    before = {rel: (site / rel).read_bytes() for rel in _files(site)}

    def broken(*_: object) -> str:
        raise RuntimeError("disk full while rendering")

    monkeypatch.setattr(publish_module, "render_index", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        publish(channel, site, RELEASE)
    assert {rel: (site / rel).read_bytes() for rel in _files(site)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".channel.lock", "channel", "site"]


@pytest.mark.integration
def test_publish_cli_json(channel: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = tmp_path / "site"
    args = ["channel", "publish", "--channel-dir", str(channel), "--to", str(site), "--base-url", RELEASE]
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["base_url"] == RELEASE
    assert sorted(p["file_name"] for p in report["packages"]) == sorted(
        p.file_name for p in read_packages(channel)
    )


@pytest.mark.parametrize(
    "url",
    ["ftp://host/x/", "github.com/o/r/releases/download/t/", "/releases/", "https:///x", "https://h/x?a=1"],
)
def test_base_url_must_be_absolute_http(url: str) -> None:
    with pytest.raises(HostingUrlError) as info:
        normalize_base_url(url)
    assert info.value.exit_code == 34


def test_base_url_gets_a_trailing_slash() -> None:
    assert normalize_base_url("https://h/r/download/t") == "https://h/r/download/t/"
    assert normalize_base_url("http://127.0.0.1:9/") == "http://127.0.0.1:9/"


def _pkg(subdir: str, name: str) -> ChannelPackage:
    return ChannelPackage(subdir, f"{name}-1.0-0.conda", name, "1.0", "0", 0, (), 1536, "ab" * 32)


def test_base_url_refuses_same_file_in_two_subdirs(tmp_path: Path) -> None:
    with pytest.raises(PublishError, match="in both linux-64 and noarch"):
        publish_module._check_flat_names((_pkg("linux-64", "a"), _pkg("noarch", "a")))
    publish_module._check_flat_names((_pkg("linux-64", "a"), _pkg("noarch", "b")))
    del tmp_path


def test_index_html_escapes_and_is_stable() -> None:
    evil = ChannelPackage("noarch", "x.conda", "<script>", "1.0", "0", 0, (), 1536, "cd" * 32)
    page = render_index((evil, _pkg("linux-64", "a")), None)
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert "1.5 KiB" in page
    assert page == render_index((_pkg("linux-64", "a"), evil), None)  # input order does not matter


@pytest.mark.integration
def test_channel_index_reindexes_and_fixes_modes(
    channel: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`channel index` (used by build.yml to merge the jobs' packages) makes the channel publishable."""
    extra = (
        make_channel(tmp_path / "other", [Pkg("extra", "1.0", "h0_0")]) / "linux-64" / "extra-1.0-h0_0.conda"
    )
    added = channel / "linux-64" / extra.name
    shutil.copyfile(extra, added)
    added.chmod(0o600)  # as the engine writes packages
    assert consistency_problems(channel)
    assert main(["channel", "index", "--channel-dir", str(channel)]) == 0
    assert "5 packages" in capsys.readouterr().out
    assert consistency_problems(channel) == []
    assert added.stat().st_mode & 0o777 == 0o644
    publish(channel, tmp_path / "site")
    assert (tmp_path / "site" / "linux-64" / extra.name).is_file()
