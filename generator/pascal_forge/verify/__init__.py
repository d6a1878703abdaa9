"""Proving the patches: source checks, the CUDA toolchain and compile runner, the CMake evaluator, torch gates, fatbin reader."""
