"""Ekiden: a marketing automation server."""

__version__ = "0.1.0.dev0"
