"""REST API for journeys under /api/journeys, and a contact's journeys (admin key)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict, Field

from ekiden.journeys import reports, service
from ekiden.journeys.models import (
    CouponOut,
    EnrolIn,
    EnrolmentOut,
    EnrolOut,
    JourneyOut,
    JourneyStats,
    OnsiteMessageOut,
)
from ekiden.journeys.simulate import MAX_DAYS, Simulation, simulate
from ekiden.web.deps import AdminKey, Conn, Ctx, ReadConn
from ekiden.web.pagination import Page

router = APIRouter(prefix="/api", tags=["journeys"])

Definition = Annotated[
    dict[str, Any], Body(description="a journey definition (see docs/JOURNEYS.md)")
]


@router.get("/journeys")
def list_journeys(_: AdminKey, conn: ReadConn) -> Page[JourneyOut]:
    return Page(items=service.list_journeys(conn), next=None)


@router.post("/journeys", status_code=201)
def create_journey(body: Definition, _: AdminKey, conn: Conn, ctx: Ctx) -> JourneyOut:
    """A new journey in draft (version 1), checked against what exists."""
    return service.create_journey(conn, ctx.clock, body, ctx.settings.zone)


class SimulateIn(BaseModel):
    """Either a definition (a draft, not saved) or the key of a saved journey."""

    model_config = ConfigDict(extra="forbid")

    definition: dict[str, Any] | None = Field(
        None, description="a journey definition, checked as when saving"
    )
    journey: str | None = Field(None, description="or: a saved journey's key (current version)")
    days: int = Field(30, ge=1, le=MAX_DAYS, description="replay the last this many days")
    play_out: bool = Field(
        False, description="run waits still open now to their end, as if nothing more happened"
    )


@router.post("/journeys/simulate")
def simulate_journey(body: SimulateIn, _: AdminKey, conn: ReadConn, ctx: Ctx) -> Simulation:
    """Dry-run: replay against the last ``days`` days of history and count, per node and
    edge, who would enter, branch and get each email. Nothing is written or sent."""
    return simulate(
        conn,
        ctx.clock,
        ctx.settings.zone,
        definition=body.definition,
        key=body.journey,
        days=body.days,
        play_out=body.play_out,
    )


@router.get("/journeys/{key}")
def get_journey(key: str, _: AdminKey, conn: ReadConn) -> JourneyOut:
    return service.get_journey(conn, key)


@router.put("/journeys/{key}")
def update_journey(key: str, body: Definition, _: AdminKey, conn: Conn, ctx: Ctx) -> JourneyOut:
    """Store a new version; running enrolments finish on the version they started."""
    return service.update_journey(conn, ctx.clock, key, body, ctx.settings.zone)


@router.post("/journeys/{key}/activate")
def activate(key: str, _: AdminKey, conn: Conn, ctx: Ctx) -> JourneyOut:
    return service.activate_journey(conn, ctx.clock, key, ctx.settings.zone)


@router.post("/journeys/{key}/pause")
def pause(key: str, _: AdminKey, conn: Conn, ctx: Ctx) -> JourneyOut:
    return service.pause_journey(conn, ctx.clock, key)


@router.post("/journeys/{key}/resume")
def resume(key: str, _: AdminKey, conn: Conn, ctx: Ctx) -> JourneyOut:
    return service.resume_journey(conn, ctx.clock, key, ctx.settings.zone)


@router.post("/journeys/{key}/archive")
def archive(key: str, _: AdminKey, conn: Conn, ctx: Ctx) -> JourneyOut:
    return service.archive_journey(conn, ctx.clock, key)


@router.post("/journeys/{key}/enrolments")
def enrol(key: str, body: EnrolIn, _: AdminKey, conn: Conn, ctx: Ctx) -> EnrolOut:
    """Enrol contacts by id (the journey must be active); unknown ids are a 422 naming them."""
    enrolled, skipped = service.enrol_contacts(
        conn, ctx.clock, key, body.contact_ids, zone=ctx.settings.zone
    )
    return EnrolOut(enrolled=enrolled, skipped=skipped)


@router.get("/journeys/{key}/stats")
def stats(key: str, _: AdminKey, conn: ReadConn) -> JourneyStats:
    return reports.journey_stats(conn, key)


@router.get("/contacts/{contact_id}/journeys")
def contact_journeys(contact_id: int, _: AdminKey, conn: ReadConn) -> Page[EnrolmentOut]:
    """The contact's enrolments, newest first, with each step taken."""
    return Page(items=reports.contact_history(conn, contact_id), next=None)


@router.get("/contacts/{contact_id}/onsite-messages")
def onsite_messages(
    contact_id: int, _: AdminKey, conn: ReadConn, ctx: Ctx
) -> Page[OnsiteMessageOut]:
    """On-site messages waiting for the contact's next visit."""
    return Page(items=reports.pending_onsite_messages(conn, ctx.clock, contact_id), next=None)


@router.get("/contacts/{contact_id}/coupons")
def contact_coupons(contact_id: int, _: AdminKey, conn: ReadConn) -> Page[CouponOut]:
    return Page(items=reports.coupons_of(conn, contact_id), next=None)
