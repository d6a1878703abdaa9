# A stand-in for the parts of nixpkgs that pascal-forge's overlay.nix touches, written for the
# tests (nixpkgs itself cannot be fetched on our machines). It models nixpkgs' interfaces, not
# its builds: overlays composed with lib.extends, config, the versioned CUDA package sets,
# pythonPackagesExtensions, callPackage's `override`, and buildPythonPackage's
# overridePythonAttrs as pkgs/development/interpreters/python/python-packages-base.nix defines it
# (its result has no `override`). Packages carry the names, versions and the attributes the
# overlay reads or writes in nixpkgs' expressions: triton + triton-cuda (`self.triton.override
# { cudaSupport = true; }`), torch (depends on triton-cuda), vllm (cmakeFlags from lib.cmakeFeature,
# env), triton-llvm. "Derivations" are attribute sets; nothing is built.
{
  system ? "x86_64-linux",
  overlays ? [ ],
  config ? { },
  torchVersion ? "2.6.0",
  tritonVersion ? "3.2.0",
}:
let
  lib = {
    inherit (builtins)
      all
      any
      attrNames
      concatStringsSep
      elem
      filter
      ;
    fakeHash = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    throwIfNot = cond: msg: if cond then x: x else throw msg;
    optionalAttrs = cond: attrs: if cond then attrs else { };
    hasPrefix = prefix: str: builtins.substring 0 (builtins.stringLength prefix) str == prefix;
    fix =
      f:
      let
        x = f x;
      in
      x;
    extends =
      overlay: f: final:
      let
        prev = f final;
      in
      prev // overlay final prev;
    cmakeFeature = name: value: "-D${name}:STRING=${value}";
  };

  # nixpkgs' config with its defaults filled in.
  fullConfig = {
    cudaSupport = false;
    cudaCapabilities = [ ];
    cudaForwardCompat = true;
  } // config;

  storePath = name: "/nix/store/00000000000000000000000000000000-${name}";
  fetcher =
    kind: args:
    args
    // {
      fetcher = kind;
      # Named after what was fetched, so tests can tell the sources apart.
      outPath = storePath (args.name or "${args.repo or "git"}-${args.rev or "url"}");
    };

  # lib.makeOverridable, as callPackage applies it.
  makeOverridable =
    f: args:
    f args
    // {
      override = newArgs: makeOverridable f (args // newArgs);
    };

  mkDerivation =
    args:
    args
    // (args.passthru or { })
    // {
      type = "derivation";
      outPath = storePath "${args.pname}-${args.version}";
      overrideAttrs = g: mkDerivation (args // g args);
    };

  # python-packages-base.nix: overridePythonAttrs re-calls buildPythonPackage with new arguments.
  makeOverridablePythonPackage =
    f: origArgs:
    let
      args = origArgs // {
        passthru = (origArgs.passthru or { }) // {
          overridePythonAttrs = newArgs: makeOverridablePythonPackage f (overrideWith newArgs);
        };
      };
      overrideWith = newArgs: args // (if builtins.isFunction newArgs then newArgs args else newArgs);
    in
    f args;

  pythonSet =
    pkgs: pythonVersion:
    let
      buildPythonPackage = makeOverridablePythonPackage (
        args: mkDerivation (args // { name = "python${pythonVersion}-${args.pname}-${args.version}"; })
      );
      base = self: {
        triton = makeOverridable (
          { cudaSupport ? false }:
          buildPythonPackage {
            pname = "triton";
            version = tritonVersion;
            src = pkgs.fetchFromGitHub {
              owner = "triton-lang";
              repo = "triton";
              rev = "v${tritonVersion}";
              hash = "sha256-nixpkgs-triton-source";
            };
            patches = [ "nixpkgs-triton-own.patch" ];
            passthru = { inherit cudaSupport; };
          }
        ) { };
        triton-cuda = self.triton.override { cudaSupport = true; };
        torch = makeOverridable (
          { triton-cuda }:
          buildPythonPackage {
            pname = "torch";
            version = torchVersion;
            src = pkgs.fetchFromGitHub {
              owner = "pytorch";
              repo = "pytorch";
              rev = "v${torchVersion}";
              hash = "sha256-nixpkgs-torch-source";
            };
            patches = [ "nixpkgs-torch-own.patch" ];
            dependencies = [ triton-cuda ];
            passthru = {
              inherit (pkgs.config) cudaCapabilities;
              cudaPackages = pkgs.cudaPackages;
            };
          }
        ) { inherit (self) triton-cuda; };
        vllm = makeOverridable (
          { torch }:
          buildPythonPackage {
            pname = "vllm";
            version = "0.8.3";
            src = pkgs.fetchFromGitHub {
              owner = "vllm-project";
              repo = "vllm";
              rev = "v0.8.3";
              hash = "sha256-nixpkgs-vllm-source";
            };
            patches = [ "nixpkgs-vllm-own.patch" ];
            dependencies = [ torch ];
            cmakeFlags = [
              (lib.cmakeFeature "FETCHCONTENT_SOURCE_DIR_CUTLASS" (storePath "nixpkgs-cutlass"))
              (lib.cmakeFeature "FLASH_MLA_SRC_DIR" (storePath "nixpkgs-flashmla"))
              (lib.cmakeFeature "VLLM_FLASH_ATTN_SRC_DIR" (storePath "nixpkgs-vllm-flash-attn"))
              (lib.cmakeFeature "TORCH_CUDA_ARCH_LIST" (lib.concatStringsSep ";" pkgs.config.cudaCapabilities))
              (lib.cmakeFeature "CUTLASS_ENABLE_CUBLAS" "ON")
            ];
            env = {
              VLLM_TARGET_DEVICE = "cuda";
              CUDA_HOME = storePath "cuda_nvcc";
            };
          }
        ) { inherit (self) torch; };
      };
    in
    lib.fix (builtins.foldl' (f: ext: lib.extends ext f) base pkgs.pythonPackagesExtensions);

  cudaSet = version: { cudaMajorMinorVersion = version; };

  nixpkgs = final: {
    inherit lib system;
    config = fullConfig;
    fetchurl = fetcher "fetchurl";
    fetchFromGitHub = fetcher "fetchFromGitHub";
    fetchgit = fetcher "fetchgit";
    cudaPackages_12_6 = cudaSet "12.6";
    cudaPackages_12_8 = cudaSet "12.8";
    cudaPackages = final.cudaPackages_12_8;
    triton-llvm = mkDerivation {
      pname = "triton-llvm";
      version = "19.1.0-rc1";
      src = final.fetchFromGitHub {
        owner = "llvm";
        repo = "llvm-project";
        rev = "nixpkgs-llvm-rev";
        hash = "sha256-nixpkgs-llvm-source";
      };
    };
    pythonPackagesExtensions = [ ];
    python310Packages = pythonSet final "3.10";
    python312Packages = pythonSet final "3.12";
  };
in
lib.fix (builtins.foldl' (f: overlay: lib.extends overlay f) nixpkgs overlays)
