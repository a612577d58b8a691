"""Lifecycle stages, buying stages and the hand-off to sales."""
