"""The ASGI app a benchmark serves: settings from the environment, like `ekiden serve`."""

from __future__ import annotations

from fastapi import FastAPI

from ekiden.config import load_settings
from ekiden.web.app import create_app, prepare_to_serve


def create() -> FastAPI:
    """uvicorn factory (``--factory ekiden.bench.server:create``)."""
    return prepare_to_serve(create_app(load_settings()))
