"""Journeys (scenarios): definitions, the engine that runs them, triggers and actions."""
