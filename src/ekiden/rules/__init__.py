"""The one filter language: a declarative condition over a contact and its behaviour.

Segments, scoring rules, journey conditions, hot-lead definitions and report filters all use it.
Two evaluators with identical meaning: ``sql.compile_filter`` (whole populations, SQLite and
PostgreSQL) and ``memory.evaluate`` (one contact, in real time).
"""

from ekiden.rules.model import Filter, parse_filter

__all__ = ["Filter", "parse_filter"]
