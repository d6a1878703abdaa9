"""One error class per kind of failure, each with its own exit code and a next step.

The CLI catches `PascalForgeError`, prints ``error[<code>]: <message>`` and the hint, and exits
with the class's exit code. Nothing else in the package prints tracebacks at users.
"""

from __future__ import annotations


class PascalForgeError(Exception):
    """Base class: what happened (message) and what to do next (hint)."""

    exit_code = 1
    code = "error"

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        text = f"error[{self.code}]: {self.message}"
        if self.hint:
            text += f"\n  next: {self.hint}"
        return text


class SpecError(PascalForgeError):
    """A spec file (or the built-in spec) is malformed or inconsistent."""

    exit_code = 2
    code = "spec-invalid"


class UnknownPackageError(PascalForgeError):
    """A package or recipe name that no recipe provides."""

    exit_code = 2
    code = "unknown-package"


class UnknownVersionError(PascalForgeError):
    """An upstream version that no stack in the spec covers."""

    exit_code = 2
    code = "version-not-in-stack"


class PatchLibraryError(PascalForgeError):
    """The patch library is inconsistent: a missing file, a path outside it, bad metadata."""

    exit_code = 3
    code = "patch-library"


class PatchFailedError(PascalForgeError):
    """A patch does not apply cleanly (no fuzz) to its pinned source."""

    exit_code = 4
    code = "patch-failed"


class SourceError(PascalForgeError):
    """A pinned source could not be obtained."""

    exit_code = 5
    code = "source-unavailable"


class HashMismatchError(SourceError):
    """A downloaded or cached file does not match its pinned sha256."""

    exit_code = 6
    code = "hash-mismatch"


class StaleRecipesError(PascalForgeError):
    """`generate --check`: the committed recipes differ from what the spec renders."""

    exit_code = 7
    code = "recipes-stale"


class RenderError(PascalForgeError):
    """A template failed to render, or the engine rejected a generated recipe."""

    exit_code = 8
    code = "render-failed"


class ToolchainError(PascalForgeError):
    """A compiler or tool is missing, or cannot target Pascal (e.g. CUDA 13 nvcc)."""

    exit_code = 9
    code = "arch-unsupported"


class CompileError(PascalForgeError):
    """A CUDA source failed to compile for a Pascal arch."""

    exit_code = 10
    code = "compile-failed"


class CMakeEvalError(PascalForgeError):
    """vLLM's CMake text uses a construct the arch evaluator does not model, or is malformed."""

    exit_code = 11
    code = "cmake-unsupported"


class ChannelError(PascalForgeError):
    """The local channel cannot be read, indexed or changed."""

    exit_code = 12
    code = "channel-invalid"


class ChannelLockedError(ChannelError):
    """Another process holds the channel's write lock."""

    exit_code = 13
    code = "channel-locked"


class BuildError(PascalForgeError):
    """A package build failed (the channel is left as it was)."""

    exit_code = 14
    code = "build-failed"


class StockResolvableError(PascalForgeError):
    """A solve put a triton or pytorch without the Pascal token into the environment."""

    exit_code = 15
    code = "stock-triton-resolvable"


class UnsatisfiableError(PascalForgeError):
    """No solution exists for a channel setup (fails loudly instead of swapping packages)."""

    exit_code = 16
    code = "unsatisfiable"


class ArchiveError(PascalForgeError):
    """An upstream package archive is malformed or unsafe (a member escapes the target folder)."""

    exit_code = 17
    code = "archive-unsafe"


class NixUnsupportedError(PascalForgeError):
    """A spec source or patch file that the Nix overlay has no way to express."""

    exit_code = 50
    code = "nix-unsupported"


class UpstreamError(PascalForgeError):
    """An upstream index (PyPI's Simple API, a conda channel) did not answer usefully: network
    failure, timeout, server error after retries, or a response that is not what the API promises."""

    exit_code = 20
    code = "upstream-unreachable"


class UpstreamNotFoundError(PascalForgeError):
    """The index answered, but lacks the project, release or file asked for."""

    exit_code = 21
    code = "upstream-not-found"


class PinUnresolvedError(PascalForgeError):
    """A pin of a new stack cannot be derived from what is reachable; the user must supply it."""

    exit_code = 22
    code = "pin-unresolved"


class UpdateBlockedError(PascalForgeError):
    """`update`: the new stack is not ready (a patch fails or is obsolete, a changed source went
    unchecked, no patch covers a version); nothing was written."""

    exit_code = 23
    code = "update-blocked"


class DraftStackError(PascalForgeError):
    """A stack marked ``draft`` (written by `update --allow-failing`) cannot be rendered into recipes."""

    exit_code = 24
    code = "stack-draft"


class PublishError(PascalForgeError):
    """`channel publish` refused its target (unsafe folder, overlap with the channel, name clash)."""

    exit_code = 30
    code = "publish-refused"


class ServeError(PascalForgeError):
    """`channel serve` could not start (address in use, not allowed to bind)."""

    exit_code = 31
    code = "serve-failed"


class UploadTokenError(PascalForgeError):
    """`channel upload` has no token: the environment variable the target needs is unset or empty."""

    exit_code = 32
    code = "upload-token-missing"


class UploadError(PascalForgeError):
    """The engine's upload to prefix.dev / anaconda.org / quetz / artifactory failed."""

    exit_code = 33
    code = "upload-failed"


class HostingUrlError(PascalForgeError):
    """A URL given to publish or upload (--base-url, a server, a channel URL) is not usable."""

    exit_code = 34
    code = "url-invalid"


class EnvironmentBrokenError(PascalForgeError):
    """`doctor` found at least one problem in the environment (each printed with its fix)."""

    exit_code = 40
    code = "environment-broken"


class PrefixError(PascalForgeError):
    """No conda environment to inspect: none given and none active, or the path is not one."""

    exit_code = 41
    code = "prefix-invalid"


class FatbinError(PascalForgeError):
    """A compiled library's ELF or ``.nv_fatbin`` section cannot be read."""

    exit_code = 42
    code = "fatbin-unreadable"
