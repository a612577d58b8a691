"""Behaviour history: the events table, ingestion endpoints, the browser snippet and pixel."""
