"""The worker's "lifecycle" contact step: stages and hand-offs for changed contacts."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, select

from ekiden.clock import Clock
from ekiden.config import Settings
from ekiden.contacts.tables import contacts
from ekiden.lifecycle.automatic import advance_by_rules, enter_first_stages
from ekiden.lifecycle.handoff import detect_hot_leads
from ekiden.rules.fields import load_catalog
from ekiden.rules.sql import SqlEnv


def lifecycle_step(
    conn: Connection, clock: Clock, settings: Settings, contact_ids: Sequence[int]
) -> None:
    """In the claiming transaction, after scores: new contacts enter the first stages, stage
    rules move contacts forward, then hot-lead and upsell definitions are checked (so a
    definition may name the stage just reached)."""
    if not contact_ids:
        return
    ids = sorted(set(contact_ids))
    if conn.dialect.name == "postgresql":
        # A contact queued again while another worker still handles it must wait for that
        # worker: both would otherwise see "no alert yet" and "no stage yet". Id order: no
        # deadlock between workers with overlapping batches.
        conn.execute(
            select(contacts.c.id)
            .where(contacts.c.id.in_(ids))
            .order_by(contacts.c.id)
            .with_for_update()
        )
    enter_first_stages(conn, clock, ids)
    env = SqlEnv(
        catalog=load_catalog(conn),
        now=clock.now(),
        zone=settings.zone,
        dialect=conn.dialect.name,
        only=tuple(ids),
    )
    advance_by_rules(conn, clock, env, ids)
    detect_hot_leads(conn, clock, settings, env, ids)
