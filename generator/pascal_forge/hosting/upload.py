"""Upload the channel's packages to a hosted channel with the engine's upload functions.

Targets and where the token comes from (the variable names rattler-build's own CLI reads):

| target        | DEST                                                   | token variable       |
|---------------|--------------------------------------------------------|----------------------|
| `prefix`      | channel name (server: --server, default prefix.dev)     | `PREFIX_API_KEY`     |
| `anaconda`    | owner (user or organisation) on anaconda.org            | `ANACONDA_API_KEY`   |
| `quetz`       | channel URL, ``https://HOST/get/CHANNEL``                | `QUETZ_API_KEY`      |
| `artifactory` | channel URL, ``https://HOST/artifactory/api/conda/REPO`` | `ARTIFACTORY_TOKEN`  |

Tokens are only read from the environment (never from a flag: it would land in shell history).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pascal_forge.build.channel import ChannelPackage, channel_lock, consistency_problems, read_packages
from pascal_forge.errors import ChannelError, HostingUrlError, UploadError, UploadTokenError

Kind = Literal["prefix", "anaconda", "quetz", "artifactory"]
KINDS: tuple[Kind, ...] = ("prefix", "anaconda", "quetz", "artifactory")
TOKEN_ENV: dict[Kind, str] = {
    "prefix": "PREFIX_API_KEY",
    "anaconda": "ANACONDA_API_KEY",
    "quetz": "QUETZ_API_KEY",
    "artifactory": "ARTIFACTORY_TOKEN",
}
DEFAULT_SERVER = {"prefix": "https://prefix.dev/", "anaconda": "https://api.anaconda.org/"}


@dataclass(frozen=True)
class UploadTarget:
    """Where packages go: the kind of server, its base URL and the channel (or owner) on it."""

    kind: Kind
    server: str
    channel: str
    label: str = "main"

    @property
    def token_env(self) -> str:
        return TOKEN_ENV[self.kind]

    def destination(self, pkg: ChannelPackage) -> str:
        """The URL (or account/label) one package is sent to, as the engine builds it."""
        match self.kind:
            case "prefix":
                return f"{self.server}api/v1/upload/{self.channel}"
            case "quetz":
                return f"{self.server}api/channels/{self.channel}/upload/{pkg.file_name}"
            case "artifactory":
                return f"{self.server}{self.channel}/{pkg.subdir}/{pkg.file_name}"
            case "anaconda":
                return f"{self.server} owner {self.channel}, label {self.label}"


@dataclass(frozen=True)
class PlannedUpload:
    """One package file and where it goes."""

    package: ChannelPackage
    path: Path
    destination: str


def _server_url(url: str, flag: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc or parts.query or parts.fragment:
        raise HostingUrlError(f"{flag} {url!r} is not an http(s) server URL", "e.g. https://prefix.dev")
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _plain_name(text: str, what: str) -> str:
    if not text or any(c in text for c in "/?#%\\ ") or text.startswith("."):
        raise HostingUrlError(f"{what} {text!r} is not a plain name", f"pass the {what} alone, e.g. pascal")
    return text


def parse_target(kind: Kind, dest: str, server: str | None = None, label: str = "main") -> UploadTarget:
    """Turn ``--to KIND DEST [--server URL]`` into an UploadTarget (no network)."""
    if kind in {"prefix", "anaconda"}:
        base = _server_url(server or DEFAULT_SERVER[kind], "--server")
        what = "prefix.dev channel" if kind == "prefix" else "anaconda.org owner"
        return UploadTarget(kind, base, _plain_name(dest, what), _plain_name(label, "label"))
    if server is not None:
        raise HostingUrlError(
            f"--server is not used with --to {kind}: DEST is the channel URL",
            "pass only the channel URL",
        )
    parts = urlsplit(dest)
    if parts.scheme not in {"http", "https"} or not parts.netloc or parts.query or parts.fragment:
        raise HostingUrlError(f"{dest!r} is not an http(s) channel URL", _URL_HINT[kind])
    segments = [s for s in parts.path.split("/") if s]
    if kind == "quetz" and len(segments) >= 2 and segments[-2] == "get":
        server_path = segments[:-2]
    elif kind == "artifactory" and len(segments) >= 3 and segments[-3:-1] == ["api", "conda"]:
        server_path = segments[:-3]
    elif kind == "artifactory" and segments:  # the deploy form, https://HOST/artifactory/REPO
        server_path = segments[:-1]
    else:
        raise HostingUrlError(f"{dest!r} is not a {kind} channel URL", _URL_HINT[kind])
    base = urlunsplit((parts.scheme, parts.netloc, "/" + "".join(f"{s}/" for s in server_path), "", ""))
    return UploadTarget(kind, base, _plain_name(segments[-1], f"{kind} channel"))


_URL_HINT = {
    "quetz": "pass the URL users add as a channel, e.g. https://quetz.example.org/get/pascal",
    "artifactory": "pass the conda URL of the repository, e.g. "
    "https://example.jfrog.io/artifactory/api/conda/pascal",
}


def plan_upload(channel: Path, target: UploadTarget) -> list[PlannedUpload]:
    """Every package of a consistent channel, with its destination."""
    channel = channel.resolve()
    if not (channel / "noarch" / "repodata.json").is_file():
        raise ChannelError(
            f"{channel} is not an indexed channel (no noarch/repodata.json)",
            "build into it with `pascal-forge build`, or run `pascal-forge channel index`",
        )
    problems = consistency_problems(channel)
    if problems:
        raise ChannelError(
            f"{channel} is not consistent: " + "; ".join(problems[:5]),
            "rebuild, or run `pascal-forge channel index` to re-index the files that are there",
        )
    return [
        PlannedUpload(pkg, channel / pkg.subdir / pkg.file_name, target.destination(pkg))
        for pkg in read_packages(channel)
    ]


def token_present(target: UploadTarget) -> bool:
    return bool(os.environ.get(target.token_env, "").strip())


def token_for(target: UploadTarget) -> str:
    token = os.environ.get(target.token_env, "").strip()
    if not token:
        raise UploadTokenError(
            f"{target.token_env} is not set; --to {target.kind} needs a token with write access to "
            f"{target.channel}",
            f"export {target.token_env}=... (in GitHub Actions from a secret), or preview with --dry-run",
        )
    return token


def upload(
    channel: Path,
    target: UploadTarget,
    force: bool = False,
    skip_existing: bool = False,
) -> list[PlannedUpload]:
    """Upload every package of ``channel`` to ``target``; the channel is locked meanwhile."""
    token = token_for(target)
    with channel_lock(channel.resolve()):
        planned = plan_upload(channel, target)
        if planned:
            _engine_upload([str(p.path) for p in planned], target, token, force, skip_existing)
    return planned


def _engine_upload(
    files: list[str], target: UploadTarget, token: str, force: bool, skip_existing: bool
) -> None:
    from rattler_build import upload as engine

    try:
        match target.kind:
            case "prefix":
                engine.upload_package_to_prefix(
                    files,
                    target.server,
                    target.channel,
                    api_key=token,
                    force=force,
                    skip_existing=skip_existing,
                )
            case "anaconda":
                engine.upload_package_to_anaconda(
                    files,
                    target.channel,
                    channel=[target.label],
                    api_key=token,
                    url=target.server,
                    force=force,
                )
            case "quetz":
                engine.upload_package_to_quetz(files, target.server, target.channel, api_key=token)
            case "artifactory":
                engine.upload_package_to_artifactory(files, target.server, target.channel, token=token)
    except Exception as exc:  # the engine raises its own exception types
        raise UploadError(
            f"upload to {target.kind} {target.server} ({target.channel}) failed: {exc}",
            f"check that {target.token_env} is valid and has write access; packages that were "
            "sent before the failure stay on the server (re-run with --skip-existing for prefix.dev)",
        ) from exc
