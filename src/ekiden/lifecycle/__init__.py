"""Lifecycle stages, buying stages and the hand-off to sales."""

# Lifecycle state follows contact merges (a registered merge step).
from ekiden.lifecycle import merge as _merge  # noqa: F401
