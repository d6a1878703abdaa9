"""`pascal-forge channel upload`: dry run, token from the environment, the engine's real uploads.

prefix.dev, quetz and artifactory cannot be reached here; a recording HTTP server on 127.0.0.1
stands in for them and the real engine (py-rattler-build's upload functions, run by the real CLI
in a subprocess) sends the packages to it. anaconda.org's protocol (package, release, then a
signed S3 form) has no stand-in here: only its dry run and token handling are tested.
"""

from __future__ import annotations

import email.parser
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from rattler_build import assemble_package

from helpers.condapkgs import TIMESTAMP
from helpers.hostutil import ROOT, Recorded, recording_server
from pascal_forge.build.channel import index_channel, read_packages
from pascal_forge.cli import main
from pascal_forge.errors import HostingUrlError
from pascal_forge.hosting.upload import UploadTarget, parse_target

TOKENS = ("PREFIX_API_KEY", "ANACONDA_API_KEY", "QUETZ_API_KEY", "ARTIFACTORY_TOKEN")


@pytest.fixture(autouse=True)
def _no_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in TOKENS:
        monkeypatch.delenv(name, raising=False)


def _package(root: Path, name: str, version: str, build: str, subdir: str) -> None:
    """A package with info/about.json, as every rattler-build package has (artifactory reads it)."""
    files = root.parent / f"files-{name}"
    (files / "share").mkdir(parents=True)
    (files / "share" / f"{name}.txt").write_text(f"{name}\n")
    out = assemble_package(
        name=name,
        version=version,
        target_platform=subdir,
        build_string=build,
        output_dir=root.parent / "out",
        files_dir=files,
        summary=f"{name} (pascal-forge test package)",
        license="MIT",
        noarch="generic" if subdir == "noarch" else None,
        timestamp=TIMESTAMP,
        detect_prefix=False,
    )
    dest = root / subdir / Path(out.path).name
    shutil.copyfile(out.path, dest)
    dest.chmod(0o644)


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("up") / "channel"
    for sub in ("linux-64", "noarch"):
        (root / sub).mkdir(parents=True)
    _package(root, "triton", "3.2.0", "cuda126py312_pascal_h1a2b3c4_0", "linux-64")
    _package(root, "pascal-forge-docs", "1.0", "0", "noarch")
    index_channel(root)
    return root


def _cli(channel: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess: the engine holds the GIL while it uploads, so the in-process
    stand-in server could not answer."""
    full_env = {k: v for k, v in os.environ.items() if k not in TOKENS} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "pascal_forge", "channel", "upload", "--channel-dir", str(channel), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=full_env,
        timeout=120,
        check=False,
    )


@pytest.mark.integration
def test_dry_run_lists_packages_and_sends_nothing(channel: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with recording_server() as server:
        code = main(
            [
                "channel",
                "upload",
                "--channel-dir",
                str(channel),
                "--to",
                "prefix",
                "pascal",
                "--server",
                server.url,
                "--dry-run",
            ]
        )
    assert code == 0
    assert server.requests == []
    out = capsys.readouterr().out
    for pkg in read_packages(channel):
        line = next(ln for ln in out.splitlines() if ln.startswith(pkg.name + " "))
        for value in (pkg.version, pkg.build, pkg.subdir, str(pkg.size), pkg.sha256):
            assert value in line
        assert f"{server.url}api/v1/upload/pascal" in line
    assert "PREFIX_API_KEY is NOT set" in out
    assert "nothing was sent" in out


@pytest.mark.integration
def test_dry_run_json(
    channel: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUETZ_API_KEY", "k")
    url = "https://quetz.example.org/get/pascal"
    assert (
        main(
            ["channel", "upload", "--channel-dir", str(channel), "--to", "quetz", url, "--dry-run", "--json"]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["dry_run"] is True
    assert report["target"] == {
        "kind": "quetz",
        "server": "https://quetz.example.org/",
        "channel": "pascal",
        "label": "main",
    }
    by_file = {Path(u["file"]).name: u for u in report["uploads"]}
    for pkg in read_packages(channel):
        entry = by_file[pkg.file_name]
        assert entry["sha256"] == pkg.sha256
        assert entry["size"] == pkg.size
        assert entry["destination"] == f"https://quetz.example.org/api/channels/pascal/upload/{pkg.file_name}"


@pytest.mark.integration
@pytest.mark.parametrize(
    ("kind", "dest", "variable"),
    [
        ("prefix", "pascal", "PREFIX_API_KEY"),
        ("anaconda", "pascal-org", "ANACONDA_API_KEY"),
        ("quetz", "https://quetz.example.org/get/pascal", "QUETZ_API_KEY"),
        ("artifactory", "https://example.jfrog.io/artifactory/api/conda/pascal", "ARTIFACTORY_TOKEN"),
    ],
)
def test_missing_token_is_a_clear_error(
    channel: Path, capsys: pytest.CaptureFixture[str], kind: str, dest: str, variable: str
) -> None:
    assert main(["channel", "upload", "--channel-dir", str(channel), "--to", kind, dest]) == 32
    err = capsys.readouterr().err
    assert f"error[upload-token-missing]: {variable} is not set" in err
    assert "--dry-run" in err


def _multipart_file(request: Recorded) -> tuple[dict[str, str], bytes]:
    message = email.parser.BytesParser().parsebytes(
        b"Content-Type: " + request.headers["content-type"].encode() + b"\r\n\r\n" + request.body
    )
    parts = message.get_payload()
    assert isinstance(parts, list)
    (part,) = [p for p in parts if p.get_param("name", header="content-disposition") == "file"]
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return {k.lower(): v for k, v in part.items()}, payload


@pytest.mark.integration
def test_upload_to_prefix_stand_in(channel: Path) -> None:
    with recording_server() as server:
        result = _cli(
            channel, "--to", "prefix", "pascal", "--server", server.url, env={"PREFIX_API_KEY": "pfx_test"}
        )
    assert result.returncode == 0, result.stderr
    packages = read_packages(channel)
    assert len(server.requests) == len(packages)
    sent = {}
    for request in server.requests:
        assert request.method == "POST"
        assert request.path == "/api/v1/upload/pascal"
        assert request.headers["authorization"] == "Bearer pfx_test"
        headers, data = _multipart_file(request)
        sent[headers["x-file-name"]] = data
        assert headers["x-file-sha256"] == hashlib.sha256(data).hexdigest()
    for pkg in packages:
        assert sent[pkg.file_name] == (channel / pkg.subdir / pkg.file_name).read_bytes()
    assert f"uploaded {len(packages)} packages to prefix" in result.stdout


@pytest.mark.integration
def test_upload_to_quetz_and_artifactory_stand_ins(channel: Path) -> None:
    packages = read_packages(channel)
    files = {p.file_name: (channel / p.subdir / p.file_name).read_bytes() for p in packages}
    with recording_server() as server:
        quetz = _cli(channel, "--to", "quetz", f"{server.url}get/pascal", env={"QUETZ_API_KEY": "qk"})
        assert quetz.returncode == 0, quetz.stderr
        got = {r.path.split("?")[0].rsplit("/", 1)[1]: r for r in server.requests}
        assert set(got) == set(files)
        for name, request in got.items():
            assert request.method == "POST"
            assert request.path.startswith(f"/api/channels/pascal/upload/{name}?")
            assert f"sha256={hashlib.sha256(files[name]).hexdigest()}" in request.path
            assert request.headers["x-api-key"] == "qk"
            assert request.body == files[name]
        server.requests.clear()
        art = _cli(
            channel,
            "--to",
            "artifactory",
            f"{server.url}artifactory/api/conda/pascal",
            env={"ARTIFACTORY_TOKEN": "at"},
        )
    assert art.returncode == 0, art.stderr
    by_path = {r.path: r for r in server.requests}
    for pkg in packages:
        request = by_path[f"/artifactory/pascal/{pkg.subdir}/{pkg.file_name}"]
        assert request.method == "PUT"
        assert request.headers["authorization"] == "Bearer at"
        assert request.body == files[pkg.file_name]


@pytest.mark.integration
def test_rejected_token_is_an_upload_error(channel: Path) -> None:
    with recording_server(status=401) as server:
        result = _cli(
            channel, "--to", "prefix", "pascal", "--server", server.url, env={"PREFIX_API_KEY": "bad"}
        )
    assert result.returncode == 33
    assert "error[upload-failed]" in result.stderr
    assert "PREFIX_API_KEY" in result.stderr
    assert len(server.requests) == 1  # 401 is not retried


@pytest.mark.parametrize(
    ("kind", "dest", "server", "expected"),
    [
        ("prefix", "pascal", None, UploadTarget("prefix", "https://prefix.dev/", "pascal")),
        (
            "prefix",
            "pascal",
            "https://pfx.lab.example",
            UploadTarget("prefix", "https://pfx.lab.example/", "pascal"),
        ),
        ("anaconda", "my-org", None, UploadTarget("anaconda", "https://api.anaconda.org/", "my-org")),
        (
            "quetz",
            "https://q.example/get/pascal",
            None,
            UploadTarget("quetz", "https://q.example/", "pascal"),
        ),
        ("quetz", "https://h/quetz/get/pascal/", None, UploadTarget("quetz", "https://h/quetz/", "pascal")),
        (
            "artifactory",
            "https://x.jfrog.io/artifactory/api/conda/pascal",
            None,
            UploadTarget("artifactory", "https://x.jfrog.io/artifactory/", "pascal"),
        ),
        (
            "artifactory",
            "https://x.jfrog.io/artifactory/pascal",
            None,
            UploadTarget("artifactory", "https://x.jfrog.io/artifactory/", "pascal"),
        ),
    ],
)
def test_parse_target(kind: str, dest: str, server: str | None, expected: UploadTarget) -> None:
    assert parse_target(kind, dest, server) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "dest", "server"),
    [
        ("prefix", "https://prefix.dev/pascal", None),  # a name, not a URL
        ("prefix", "pascal", "ftp://x"),
        ("anaconda", "a/b", None),
        ("quetz", "https://q.example/channels/pascal", None),
        ("quetz", "pascal", None),
        ("quetz", "https://q.example/get/pascal", "https://other"),
        ("artifactory", "https://x.jfrog.io/", None),
    ],
)
def test_parse_target_rejects(kind: str, dest: str, server: str | None) -> None:
    with pytest.raises(HostingUrlError) as info:
        parse_target(kind, dest, server)  # type: ignore[arg-type]
    assert info.value.exit_code == 34


def test_unsupported_flag_combinations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for args in (
        ["--to", "ftp", "x"],
        ["--to", "quetz", "https://q/get/c", "--skip-existing"],
        ["--to", "quetz", "https://q/get/c", "--force"],
    ):
        with pytest.raises(SystemExit) as info:
            main(["channel", "upload", "--channel-dir", str(tmp_path), *args])
        assert info.value.code == 2
    assert "only supported" in capsys.readouterr().err
