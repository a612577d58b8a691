"""Journeys (scenarios): definitions, the engine that runs them, triggers and actions."""

# Journey state follows contact merges (a registered merge step).
from ekiden.journeys import merge as _merge  # noqa: F401
