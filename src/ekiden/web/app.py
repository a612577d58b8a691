"""The application factory."""

from __future__ import annotations

import gc

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from sqlalchemy import Engine, text

from ekiden import __version__
from ekiden.clock import Clock, SystemClock
from ekiden.config import Settings
from ekiden.db import create_db_engine
from ekiden.web.deps import AppContext, Ctx
from ekiden.web.errors import install_error_handlers


def create_app(
    settings: Settings, *, engine: Engine | None = None, clock: Clock | None = None
) -> FastAPI:
    """Build the ASGI app. The schema must already be migrated (``ekiden migrate``)."""
    app = FastAPI(
        title="Ekiden",
        version=__version__,
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.ctx = AppContext(
        settings=settings,
        engine=engine or create_db_engine(settings.database_url),
        clock=clock or SystemClock(),
    )
    install_error_handlers(app)
    _include_routers(app)

    @app.get("/healthz", include_in_schema=False)
    def healthz(ctx: Ctx) -> PlainTextResponse:
        with ctx.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return PlainTextResponse("ok")

    return app


def _include_routers(app: FastAPI) -> None:
    # Each capability owns its router; the web layer only composes them.
    from ekiden.tracking.router import router as tracking_router

    app.include_router(tracking_router)
    from ekiden.contacts.router import router as contacts_router

    app.include_router(contacts_router)
    from ekiden.tracking.browser import router as browser_router

    app.include_router(browser_router)
    from ekiden.forms.public import router as forms_public_router
    from ekiden.forms.router import router as forms_router

    app.include_router(forms_router)
    app.include_router(forms_public_router)
    from ekiden.contacts.import_router import router as import_export_router

    app.include_router(import_export_router)
    from ekiden.segments.router import router as segments_router

    app.include_router(segments_router)
    from ekiden.journeys.onsite import router as onsite_router
    from ekiden.journeys.router import router as journeys_router

    app.include_router(journeys_router)
    app.include_router(onsite_router)
    from ekiden.lifecycle.router import router as lifecycle_router

    app.include_router(lifecycle_router)
    from ekiden.predictive.router import router as predictive_router

    app.include_router(predictive_router)
    from ekiden.scoring.router import router as scoring_router

    app.include_router(scoring_router)
    from ekiden.messaging.sends_router import router as sends_router

    app.include_router(sends_router)
    from ekiden.messaging.public import router as email_links_router
    from ekiden.messaging.router import router as emails_router

    app.include_router(emails_router)
    app.include_router(email_links_router)
    from ekiden.outbox.router import router as delivery_router

    app.include_router(delivery_router)
    from ekiden.analytics.router import router as reports_router

    app.include_router(reports_router)
    from ekiden.analytics.costs_router import router as campaign_costs_router

    app.include_router(campaign_costs_router)


def prepare_to_serve(app: FastAPI) -> FastAPI:
    """Ready a built app for a long-lived server process: load what the first requests would
    otherwise load (the user-agent parser's tables), then move every object alive at start-up
    out of the cyclic garbage collector's sight (``gc.freeze``). The app, its routes, models
    and imported modules live as long as the process; without this, every full collection
    walks them again, which costs more than the work of an ingestion batch."""
    from ekiden.tracking.machine import device_class

    device_class("Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0 Safari/537.36")
    gc.collect()
    gc.freeze()
    return app
