"""Re-arming hot-lead definitions for contacts that stopped matching without changing.

A contact stops matching "visited /pricing within 7 days" (or a score threshold, as points
decay) by the passing of time alone, and nothing queues it for the worker. Without a look,
its state would still say "matching" when it next crosses, and that crossing would raise no
alert. This periodic step looks again at matching contacts not checked for a while.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from sqlalchemy import Engine, and_, select, tuple_, update

from ekiden.clock import Clock
from ekiden.config import Settings
from ekiden.contacts.tables import contacts
from ekiden.lifecycle.tables import hot_lead_definitions, hot_lead_states
from ekiden.rules.fields import load_catalog
from ekiden.rules.model import parse_filter
from ekiden.rules.sql import SqlEnv, compile_filter

CHECK_EVERY = timedelta(minutes=10)
SLICE = 500


def rearm_hot_leads(engine: Engine, clock: Clock, settings: Settings) -> int:
    """Look at up to ``SLICE`` matching states last checked more than ``CHECK_EVERY`` ago;
    those whose contact no longer matches are re-armed. Returns how many were looked at."""
    now = clock.now()
    with engine.begin() as conn:
        query = (
            select(hot_lead_states.c.definition_id, hot_lead_states.c.contact_id)
            .where(
                hot_lead_states.c.matching.is_(True),
                hot_lead_states.c.checked_at <= now - CHECK_EVERY,
            )
            .order_by(hot_lead_states.c.checked_at)
            .limit(SLICE)
        )
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        due = conn.execute(query).all()
        if not due:
            return 0
        by_definition: dict[int, list[int]] = defaultdict(list)
        for definition_id, contact_id in due:
            by_definition[definition_id].append(contact_id)
        filters = dict(
            conn.execute(
                select(hot_lead_definitions.c.id, hot_lead_definitions.c.filter).where(
                    hot_lead_definitions.c.id.in_(sorted(by_definition))
                )
            ).all()
        )
        catalog = load_catalog(conn)
        for definition_id, ids in by_definition.items():
            env = SqlEnv(catalog, now, settings.zone, conn.dialect.name, only=tuple(ids))
            still = set(
                conn.execute(
                    select(contacts.c.id).where(
                        contacts.c.id.in_(ids),
                        contacts.c.merged_into_id.is_(None),
                        compile_filter(parse_filter(filters[definition_id]), env),
                    )
                ).scalars()
            )
            stopped = [c for c in ids if c not in still]
            if stopped:
                conn.execute(
                    update(hot_lead_states)
                    .where(
                        hot_lead_states.c.definition_id == definition_id,
                        hot_lead_states.c.contact_id.in_(stopped),
                    )
                    .values(matching=False, changed_at=now)
                )
        conn.execute(
            update(hot_lead_states)
            .where(
                and_(
                    tuple_(hot_lead_states.c.definition_id, hot_lead_states.c.contact_id).in_(
                        [tuple(r) for r in due]
                    )
                )
            )
            .values(checked_at=now)
        )
    return len(due)
