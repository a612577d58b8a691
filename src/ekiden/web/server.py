"""The ASGI app a server process serves, built from the environment's settings: the factory
behind ``ekiden serve --workers N`` (each worker process builds its own) and the benchmarks."""

from __future__ import annotations

from fastapi import FastAPI

from ekiden.config import load_settings
from ekiden.web.app import create_app, prepare_to_serve


def create() -> FastAPI:
    """uvicorn factory (``--factory ekiden.web.server:create``)."""
    return prepare_to_serve(create_app(load_settings()))
