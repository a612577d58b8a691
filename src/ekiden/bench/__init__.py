"""Benchmarks (`ekiden bench ...`): real servers on scratch databases, honest figures."""
