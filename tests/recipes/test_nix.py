"""`pascal-forge generate --format nix`: a nixpkgs overlay + flake from the same spec and patches.

Unit tests check the tree, the SRI conversion and determinism. Integration tests run the real Nix
parser and evaluator (`nix-instantiate` from Debian's nix-bin, offline, no store access): every
file parses, every path it names exists, pins.nix and config.nix evaluate to exactly the spec's
pins, and overlay.nix + flake.nix evaluate against a stand-in for nixpkgs (tests/data), since
nixpkgs itself cannot be fetched here.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pascal_forge.cli import main
from pascal_forge.errors import NixUnsupportedError
from pascal_forge.recipes.nix import NIXPKGS_FOR_TORCH, nix_string, nixpkgs_input, render_nix_tree, sri_sha256
from pascal_forge.stack.spec import builtin_patch_library, builtin_spec_text, load_spec

ROOT = Path(__file__).resolve().parents[2]
GOLDEN_SPEC = ROOT / "tests" / "data" / "golden-spec.toml"
STANDIN = ROOT / "tests" / "data" / "nixpkgs-standin.nix"
NIX_INSTANTIATE = shutil.which("nix-instantiate")
NIX = shutil.which("nix")
NIX_HASH_TO_SRI = [
    *([NIX] if NIX else []),
    *(
        "--extra-experimental-features",
        "nix-command",
        "--store",
        "dummy://",
        "hash",
        "to-sri",
        "--type",
        "sha256",
    ),
]
SRI = re.compile(r"sha256-[A-Za-z0-9+/]{43}=")
RECIPE_UPSTREAM = {"triton-pascal": "triton", "pytorch-pascal": "torch", "vllm-pascal": "vllm"}


def tree_digest(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


needs_nix = pytest.mark.skipif(
    NIX_INSTANTIATE is None,
    reason="nix-instantiate is not installed (Debian package nix-bin; .ci/run installs it)",
)


def nix_sources(spec_path: Path | None = None) -> list[Any]:
    """The spec sources the Nix build uses: every recipe's except the conda-only pytorch ones."""
    spec = load_spec(spec_path)
    return [
        s
        for s in spec.stack().sources
        if not s.check_only and s.recipe != "pytorch-pascal"  # nixpkgs builds torch from source
    ]


@pytest.fixture(scope="module")
def nix_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("nix") / "nix"
    assert main(["generate", "--format", "nix", "--out", str(out)]) == 0
    return out


# ---------------------------------------------------------------------------------------------
# Unit tests


def test_sri_is_base64_of_the_digest() -> None:
    # sha256("") in Nix's SRI form, as `nix hash to-sri` prints it.
    empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert sri_sha256(empty) == "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
    with pytest.raises(ValueError, match="not a sha256"):
        sri_sha256("abcd")


def test_nix_string_escapes_what_nix_would_interpret() -> None:
    assert nix_string('a"b\\c${d}$e\n') == '"a\\"b\\\\c\\${d}$e\\n"'


def test_generate_nix_writes_overlay_flake_and_patches(nix_tree: Path) -> None:
    spec = load_spec()
    files = set(tree_digest(nix_tree))
    assert {"overlay.nix", "flake.nix", "pins.nix", "config.nix", "README.md"} <= files
    pins = (nix_tree / "pins.nix").read_text()
    for recipe, upstream in RECIPE_UPSTREAM.items():
        expected = spec.patches_for(upstream, spec.stack().version_of(upstream))
        shipped = sorted(p.name for p in (nix_tree / "patches" / recipe).iterdir())
        assert shipped == sorted(p.path.name for p in expected)
        for patch in expected:
            assert (nix_tree / "patches" / recipe / patch.path.name).read_bytes() == patch.path.read_bytes()
        # Listed in series order.
        positions = [pins.index(f"./patches/{recipe}/{p.path.name}") for p in expected]
        assert positions == sorted(positions)
    assert 'cudaCapabilities = [ "6.0" "6.1" ];' in (nix_tree / "config.nix").read_text()
    assert 'cudaPackages = "cudaPackages_12_6";' in pins


def test_overlay_hashes_are_the_spec_pins_in_sri_form(nix_tree: Path) -> None:
    text = "".join(p.read_text() for p in sorted(nix_tree.glob("*.nix")))
    found = set(SRI.findall(text))
    sources = nix_sources()
    want = {sri_sha256(s.sha256) for s in sources if not s.is_git}
    assert want  # the vLLM sdist at least
    assert found == want
    assert "sha256-AAAA" not in text  # git sources use lib.fakeHash by name, never a made-up literal
    for src in sources:
        if src.is_git:
            assert f'rev = "{src.rev}";' in text
        else:
            assert f'url = "{src.url}";' in text


def test_generate_nix_is_byte_identical_across_hash_seeds(tmp_path: Path) -> None:
    digests = []
    for seed in ("0", "1", "12345"):
        out = tmp_path / f"out-{seed}"
        subprocess.run(
            [sys.executable, "-m", "pascal_forge", "generate", "--format", "nix", "--out", str(out)],
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
            cwd=tmp_path,
        )
        digests.append(tree_digest(out))
    assert digests[0] == digests[1] == digests[2]


def test_committed_nix_tree_is_up_to_date(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["generate", "--format", "nix", "--check"]) == 0  # default --out for nix: ./nix


def test_golden_nix_tree_is_current() -> None:
    """tests/golden-nix is the golden spec rendered; regenerate with the command in README."""
    out = ROOT / "tests" / "golden-nix"
    assert (
        main(["generate", "--format", "nix", "--spec", str(GOLDEN_SPEC), "--out", str(out), "--check"]) == 0
    )


def test_golden_nix_follows_the_maintainer_spec() -> None:
    golden = ROOT / "tests" / "golden-nix"
    config = (golden / "config.nix").read_text()
    assert 'cudaCapabilities = [ "6.0" ];' in config  # the golden spec is P100-only
    flake = (golden / "flake.nix").read_text()
    assert "python312Packages.vllm" in flake
    assert "python310" not in flake


def test_nix_check_lists_what_is_stale(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "nix"
    main(["generate", "--format", "nix", "--out", str(out)])
    (out / "overlay.nix").write_text("final: prev: { }\n")
    (out / "patches" / "vllm-pascal" / "0004-gguf-sm60-dp4a.patch").unlink()
    assert main(["generate", "--format", "nix", "--check", "--out", str(out)]) == 7
    err = capsys.readouterr().err
    assert "~ overlay.nix (differs)" in err
    assert "+ patches/vllm-pascal/0004-gguf-sm60-dp4a.patch (missing)" in err
    assert "pascal-forge generate --format nix" in err


def test_source_without_a_nix_place_is_refused_and_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "nix"
    main(["generate", "--format", "nix", "--out", str(out)])
    before = tree_digest(out)
    spec = tmp_path / "extra.toml"
    # The built-in stack plus one more download for vLLM (a stack of the same name replaces it).
    spec.write_text(
        builtin_spec_text()
        + '\n[[stacks."vllm-0.8.5".sources]]\nrecipe = "vllm-pascal"\nname = "extra-data"\n'
        'url = "https://example.org/extra.tar.gz"\nsha256 = "' + "1" * 64 + '"\npinned_by = "test"\n'
    )
    # The conda recipes can carry an extra download; the overlay has nowhere to put it.
    assert main(["generate", "--spec", str(spec), "--out", str(tmp_path / "recipes")]) == 0
    assert main(["generate", "--format", "nix", "--spec", str(spec), "--out", str(out)]) == 50
    err = capsys.readouterr().err
    assert "error[nix-unsupported]: source 'extra-data' of recipe vllm-pascal" in err
    assert "next:" in err
    assert tree_digest(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["extra.toml", "nix", "recipes"]


def test_patch_name_that_is_no_nix_path_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lib = tmp_path / "lib"
    shutil.copytree(builtin_patch_library(), lib)
    old = "0003-prefix-prefill-pascal-tiles.patch"
    (lib / "vllm" / old).rename(lib / "vllm" / "0003 prefix prefill.patch")
    series = lib / "vllm" / "series.toml"
    series.write_text(series.read_text().replace(old, "0003 prefix prefill.patch"))
    spec = tmp_path / "spec.toml"
    spec.write_text('patch_library = "lib"\n')
    assert main(["generate", "--format", "nix", "--spec", str(spec), "--out", str(tmp_path / "nix")]) == 50
    assert "cannot be a Nix path literal" in capsys.readouterr().err
    assert not (tmp_path / "nix").exists()


def test_a_torch_without_a_known_nixpkgs_is_refused() -> None:
    stack = load_spec().stack()
    assert nixpkgs_input(stack) == NIXPKGS_FOR_TORCH["2.6.0"]
    with pytest.raises(NixUnsupportedError, match=r"python3Packages\.torch is 2\.7\.0"):
        nixpkgs_input(dataclasses.replace(stack, torch="2.7.0"))


def test_generate_help_shows_the_nix_format(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    out = capsys.readouterr().out
    assert "--format {conda,nix}" in out
    assert "pascal-forge generate --format nix" in out


# ---------------------------------------------------------------------------------------------
# Integration: the real Nix parser and evaluator


def run_nix(args: list[str], cwd: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """nix-instantiate without a store: `dummy://` computes store paths but writes nothing."""
    assert NIX_INSTANTIATE is not None
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    return subprocess.run(
        [NIX_INSTANTIATE, "--store", "dummy://", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def nix_eval(expr: str, cwd: Path, tmp_path: Path) -> Any:
    result = run_nix(["--eval", "--strict", "--json", "-E", expr], cwd, tmp_path)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def nix_eval_error(expr: str, cwd: Path, tmp_path: Path) -> str:
    result = run_nix(["--eval", "--strict", "--json", "-E", expr], cwd, tmp_path)
    assert result.returncode != 0, result.stdout
    return result.stderr


def trees() -> list[Path]:
    return [ROOT / "nix", ROOT / "tests" / "golden-nix"]


@pytest.mark.integration
@needs_nix
@pytest.mark.parametrize("tree", trees(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_nix_file_parses_and_its_paths_exist(tree: Path, tmp_path: Path) -> None:
    files = sorted(tree.rglob("*.nix"))
    assert {p.name for p in files} == {"overlay.nix", "flake.nix", "pins.nix", "config.nix"}
    named: set[str] = set()
    for path in files:
        result = run_nix(["--parse", str(path)], tree, tmp_path)
        assert result.returncode == 0, f"{path}: {result.stderr}"
        # The parser prints path literals resolved to absolute paths (strings dropped first; the
        # update operator // is no path).
        printed = re.sub(r'"(?:[^"\\]|\\.)*"', '""', result.stdout)
        for literal in re.findall(r"(?:(?<=\s)|(?<=\())(/[\w.+-][\w.+/-]*)", printed):
            assert Path(literal).is_file(), f"{path.name} names {literal}, which does not exist"
            named.add(Path(literal).relative_to(tree).as_posix())
    patches = {p.relative_to(tree).as_posix() for p in (tree / "patches").rglob("*.patch")}
    assert named == patches | {"overlay.nix", "pins.nix", "config.nix"}


@pytest.mark.integration
@needs_nix
def test_parser_rejects_what_it_should(tmp_path: Path) -> None:
    """The check above has teeth: a syntax error and an undefined variable both fail to parse."""
    for text in ("final: prev: { x = ; }\n", "final: prev: { x = pins.stack; }\n"):
        bad = tmp_path / "bad.nix"
        bad.write_text(text)
        assert run_nix(["--parse", str(bad)], tmp_path, tmp_path).returncode != 0


@pytest.mark.integration
@needs_nix
@pytest.mark.parametrize(
    ("tree", "spec_path"), [(ROOT / "nix", None), (ROOT / "tests" / "golden-nix", GOLDEN_SPEC)]
)
def test_pins_evaluate_to_the_spec(tree: Path, spec_path: Path | None, tmp_path: Path) -> None:
    spec = load_spec(spec_path)
    stack = spec.stack()
    pins = nix_eval(
        "let p = import ./pins.nix; in p // { patches = builtins.mapAttrs (_: map toString) p.patches; }",
        tree,
        tmp_path,
    )
    assert pins["stack"] == stack.name
    assert pins["versions"] == {"vllm": stack.vllm, "torch": stack.torch, "triton": stack.triton}
    assert pins["cudaCapabilities"] == list(stack.archs)
    assert pins["pythons"] == list(stack.python)
    want: dict[str, dict[str, str]] = {}
    for src in nix_sources(spec_path):
        key = f"{src.recipe}/{src.name}"
        if src.is_git:
            owner, repo = src.git.removeprefix("https://github.com/").removesuffix(".git").split("/")
            want[key] = {"owner": owner, "repo": repo, "rev": src.rev}
        else:
            want[key] = {"url": src.url, "hash": sri_sha256(src.sha256)}
    assert pins["sources"] == want
    for recipe, upstream in RECIPE_UPSTREAM.items():
        series = spec.patches_for(upstream, stack.version_of(upstream))
        assert pins["patches"][recipe] == [str(tree / "patches" / recipe / p.path.name) for p in series]


@pytest.mark.integration
@needs_nix
@pytest.mark.skipif(NIX is None, reason="the nix command (Debian package nix-bin) is not installed")
def test_sri_hashes_agree_with_nix_itself(tmp_path: Path) -> None:
    assert NIX is not None
    pins = nix_eval("(import ./pins.nix).sources", ROOT / "nix", tmp_path)
    by_url = {s.url: s.sha256 for s in nix_sources() if not s.is_git}
    checked = 0
    for src in pins.values():
        if "hash" not in src:
            continue
        result = subprocess.run(
            [*NIX_HASH_TO_SRI, by_url[src["url"]]],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")},
        )
        assert result.returncode == 0, result.stderr
        assert src["hash"] == result.stdout.strip()
        checked += 1
    assert checked == len(by_url) > 0


@pytest.mark.integration
@needs_nix
def test_config_and_flake_evaluate(tmp_path: Path) -> None:
    tree = ROOT / "nix"
    stack = load_spec().stack()
    assert nix_eval("import ./config.nix", tree, tmp_path) == {
        "allowUnfree": True,
        "cudaSupport": True,
        "cudaCapabilities": list(stack.archs),
        "cudaForwardCompat": False,
    }
    flake = nix_eval(
        "let f = import ./flake.nix; in { inherit (f) description; url = f.inputs.nixpkgs.url; "
        "args = builtins.functionArgs f.outputs; overlay = builtins.isFunction (import ./overlay.nix); }",
        tree,
        tmp_path,
    )
    assert flake["url"] == NIXPKGS_FOR_TORCH[stack.torch]
    assert flake["args"] == {"self": False, "nixpkgs": False}
    assert flake["overlay"] is True
    assert "vLLM 0.8.5" in flake["description"]


@pytest.mark.parametrize(
    "text", ["plain", 'q"uote', "back\\slash", "${not.interpolated}", "a\nb\tc", "$${x}"]
)
@pytest.mark.integration
@needs_nix
def test_nix_string_round_trips_through_the_evaluator(text: str, tmp_path: Path) -> None:
    assert nix_eval(nix_string(text), tmp_path, tmp_path) == text


# The overlay against the stand-in nixpkgs (tests/data/nixpkgs-standin.nix).


def standin_expr(body: str, config: str = "import ./config.nix", extra: str = "", **standin: str) -> str:
    args = " ".join(f"{k} = {v};" for k, v in standin.items())
    return (
        f"let pkgs = import {STANDIN} {{ config = {config}; {args} "
        f"overlays = [ {extra} (import ./overlay.nix) ]; }}; "
        "names = map (p: baseNameOf (toString p)); "
        f"in {body}"
    )


@pytest.mark.integration
@needs_nix
def test_overlay_applies_the_patches_and_pins_in_a_nixpkgs(tmp_path: Path) -> None:
    tree = ROOT / "nix"
    spec = load_spec()
    stack = spec.stack()
    series = {
        r: [p.path.name for p in spec.patches_for(u, stack.version_of(u))] for r, u in RECIPE_UPSTREAM.items()
    }
    srcs = {f"{s.recipe}/{s.name}": s for s in nix_sources()}
    got = nix_eval(
        standin_expr(
            "let py = pkgs.python312Packages; v = py.vllm; t = py.torch; in {"
            " vllm = { inherit (v) version name cmakeFlags env pascalForge; patches = names v.patches;"
            "   src = { inherit (v.src) fetcher url hash; }; };"
            " torch = { patches = names t.patches; triton = map (d: { inherit (d) cudaSupport;"
            "   src = { inherit (d.src) fetcher url hash; }; patches = names d.patches; }) t.dependencies; };"
            " triton = names py.triton.patches;"
            " llvm = { inherit (pkgs.triton-llvm.src) owner repo rev hash; };"
            " cuda = pkgs.cudaPackages.cudaMajorMinorVersion;"
            " py310 = pkgs.python310Packages.vllm.name; }"
        ),
        tree,
        tmp_path,
    )
    vllm_src = srcs["vllm-pascal/vllm"]
    assert got["vllm"]["version"] == stack.vllm
    assert got["vllm"]["name"] == f"python3.12-vllm-{stack.vllm}"
    assert got["py310"] == f"python3.10-vllm-{stack.vllm}"
    assert got["vllm"]["src"] == {
        "fetcher": "fetchurl",
        "url": vllm_src.url,
        "hash": sri_sha256(vllm_src.sha256),
    }
    assert got["vllm"]["patches"] == ["nixpkgs-vllm-own.patch", *series["vllm-pascal"]]
    assert got["vllm"]["pascalForge"] == {"stack": stack.name}
    env = got["vllm"]["env"]
    assert env["TORCH_CUDA_ARCH_LIST"] == " ".join(stack.archs)
    for name, var in (
        ("cutlass", "VLLM_CUTLASS_SRC_DIR"),
        ("flashmla", "FLASH_MLA_SRC_DIR"),
        ("vllm-flash-attn", "VLLM_FLASH_ATTN_SRC_DIR"),
    ):
        assert env[var].endswith(f"-{srcs['vllm-pascal/' + name].rev}"), (var, env[var])
    assert env["CUDA_HOME"].endswith("-cuda_nvcc")  # nixpkgs' own env stays
    # nixpkgs' -D settings for the sub-projects and arch list are gone; the rest stays.
    assert got["vllm"]["cmakeFlags"] == ["-DCUTLASS_ENABLE_CUBLAS:STRING=ON"]
    assert got["torch"]["patches"] == ["nixpkgs-torch-own.patch", *series["pytorch-pascal"]]
    # torch depends on nixpkgs' triton-cuda (`self.triton.override { cudaSupport = true; }`):
    # it must be the patched triton at the spec's commit, still with CUDA; the commit's archive is
    # pinned by sha256, so Nix checks it as it does the conda recipes (no NAR hash needed).
    triton_src = srcs["triton-pascal/triton"]
    assert got["torch"]["triton"] == [
        {
            "cudaSupport": True,
            "src": {"fetcher": "fetchurl", "url": triton_src.url, "hash": sri_sha256(triton_src.sha256)},
            "patches": ["nixpkgs-triton-own.patch", *series["triton-pascal"]],
        }
    ]
    assert got["triton"] == ["nixpkgs-triton-own.patch", *series["triton-pascal"]]
    assert got["llvm"]["rev"] == srcs["triton-pascal/llvm-project"].rev
    assert got["cuda"] == stack.cuda


@pytest.mark.integration
@needs_nix
def test_overlay_takes_git_nar_hashes_from_the_user(tmp_path: Path) -> None:
    nar = "sha256-" + "B" * 43 + "="
    got = nix_eval(
        standin_expr(
            "{ triton = pkgs.python312Packages.triton.src.hash; llvm = pkgs.triton-llvm.src.hash; }",
            extra=f'(final: prev: {{ pascalForgeGitHashes = {{ "triton-pascal/llvm-project" = "{nar}"; }}; }})',
        ),
        ROOT / "nix",
        tmp_path,
    )
    # llvm-project is still a git source (its NAR hash comes from the user); triton is an archive
    triton = {f"{s.recipe}/{s.name}": s for s in nix_sources()}["triton-pascal/triton"]
    assert got == {"llvm": nar, "triton": sri_sha256(triton.sha256)}


@pytest.mark.integration
@needs_nix
def test_overlay_refuses_a_nixpkgs_without_pascal_config(tmp_path: Path) -> None:
    err = nix_eval_error(
        standin_expr("pkgs.python312Packages.torch.patches", config="{ cudaSupport = true; }"),
        ROOT / "nix",
        tmp_path,
    )
    assert "pascal-forge: torch needs nixpkgs imported with config = import ./config.nix" in err
    err = nix_eval_error(
        standin_expr("pkgs.python312Packages.vllm.version", config="{ }"), ROOT / "nix", tmp_path
    )
    assert "pascal-forge: vllm needs nixpkgs imported with config" in err


@pytest.mark.integration
@needs_nix
def test_overlay_refuses_other_torch_and_triton_versions(tmp_path: Path) -> None:
    err = nix_eval_error(
        standin_expr("pkgs.python312Packages.torch.patches", torchVersion='"2.7.0"'), ROOT / "nix", tmp_path
    )
    assert "the patches are for torch 2.6.0, this nixpkgs has torch 2.7.0" in err
    err = nix_eval_error(
        standin_expr("pkgs.python312Packages.triton-cuda.patches", tritonVersion='"3.3.0"'),
        ROOT / "nix",
        tmp_path,
    )
    assert "the patches are for triton 3.2.0, this nixpkgs has triton 3.3.0" in err


@pytest.mark.integration
@needs_nix
def test_flake_outputs_evaluate_against_the_standin(tmp_path: Path) -> None:
    tree = ROOT / "nix"
    got = nix_eval(
        f"let flake = import ./flake.nix; self = flake.outputs {{ inherit self; nixpkgs = {STANDIN}; }}; "
        "in { packages = builtins.mapAttrs (_: d: d.name) self.packages.x86_64-linux; "
        "overlay = builtins.isFunction self.overlays.default; config = self.nixpkgsConfig.cudaCapabilities; }",
        tree,
        tmp_path,
    )
    stack = load_spec().stack()
    assert got["overlay"] is True
    assert got["config"] == list(stack.archs)
    packages = got["packages"]
    assert packages["default"] == f"python3.12-vllm-{stack.vllm}"
    for py in stack.python:
        attr = "python" + py.replace(".", "")
        assert packages[f"vllm-{attr}"] == f"python{py}-vllm-{stack.vllm}"
        assert packages[f"torch-{attr}"] == f"python{py}-torch-{stack.torch}"
        assert packages[f"triton-{attr}"] == f"python{py}-triton-{stack.triton}"


def test_render_nix_tree_is_sorted_and_complete() -> None:
    files = render_nix_tree(load_spec())
    paths = [f.path for f in files]
    assert paths == sorted(paths)
    assert len(paths) == len(set(paths))
