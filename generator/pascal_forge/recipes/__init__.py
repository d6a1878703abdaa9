"""Rendering the stack into conda recipes and a Nix overlay, from templates only."""
