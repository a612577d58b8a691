"""The hand-off to sales (R8, R18): hot-lead and upsell alerts once per crossing, owner
assignment and a call-list task (sales' verdict on a hand-off: ``feedback.py``).

A definition's state per contact (``hot_lead_states``) says whether the contact matched when
last looked at. Crossing from not matching to matching raises one alert; the alert is re-armed
only after the contact is seen not matching. Mail and chat messages go through the outbox
with keys derived from the hand-off's id, in the transaction that decided them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from ekiden.auth.tables import users
from ekiden.clock import Clock
from ekiden.config import Settings
from ekiden.contacts.tables import accounts, contacts
from ekiden.i18n import gettext
from ekiden.lifecycle.alerts import AlertFacts, person_name, queue_alert
from ekiden.lifecycle.assign import assign_owner
from ekiden.lifecycle.definitions import list_definitions
from ekiden.lifecycle.handoff_models import Definition
from ekiden.lifecycle.tables import handoffs, hot_lead_states, sales_tasks
from ekiden.rules.model import parse_filter
from ekiden.rules.sql import SqlEnv, compile_filter
from ekiden.scoring.service import current_scores
from ekiden.tracking.events import NewEvent, record_events


def detect_hot_leads(
    conn: Connection, clock: Clock, settings: Settings, env: SqlEnv, contact_ids: Sequence[int]
) -> int:
    """Look at these contacts against every enabled definition; raise an alert for each new
    crossing and re-arm those that stopped matching. Returns the number of alerts raised."""
    raised = 0
    ids = sorted(set(contact_ids))
    for definition in list_definitions(conn, enabled_only=True):
        matching = set(
            conn.execute(
                select(contacts.c.id).where(
                    contacts.c.id.in_(ids),
                    contacts.c.merged_into_id.is_(None),
                    compile_filter(parse_filter(definition.filter), env),
                )
            ).scalars()
        )
        crossings = _record_states(conn, clock.now(), definition, ids, matching)
        scores = current_scores(conn, list(crossings)) if crossings else {}
        for contact_id, crossing in crossings.items():
            raise_alert(
                conn,
                clock,
                settings,
                env,
                definition,
                contact_id,
                crossing,
                scores=scores.get(contact_id, {}),
            )
            raised += 1
    return raised


def _record_states(
    conn: Connection, now: datetime, definition: Definition, ids: list[int], matching: set[int]
) -> dict[int, int]:
    """Store whether each of ``ids`` matches now; returns {contact id: crossing number} for
    those that started matching."""
    states = {
        r.contact_id: r
        for r in conn.execute(
            select(hot_lead_states).where(
                hot_lead_states.c.definition_id == definition.id,
                hot_lead_states.c.contact_id.in_(ids),
            )
        )
    }
    stopped = [c for c, s in states.items() if s.matching and c not in matching]
    if stopped:
        conn.execute(
            update(hot_lead_states)
            .where(
                hot_lead_states.c.definition_id == definition.id,
                hot_lead_states.c.contact_id.in_(stopped),
            )
            .values(matching=False, changed_at=now, checked_at=now)
        )
    crossed = [c for c in sorted(matching) if c not in states or not states[c].matching]
    if not crossed:
        return {}
    # a definition deleted and created again under its key continues the numbering
    earlier = dict(
        conn.execute(
            select(handoffs.c.contact_id, func.max(handoffs.c.crossing))
            .where(handoffs.c.definition_key == definition.key, handoffs.c.contact_id.in_(crossed))
            .group_by(handoffs.c.contact_id)
        ).all()
    )
    numbers: dict[int, int] = {}
    for contact_id in crossed:
        state = states.get(contact_id)
        crossing = max(0 if state is None else state.crossings, earlier.get(contact_id, 0)) + 1
        values = {"matching": True, "crossings": crossing, "changed_at": now, "checked_at": now}
        if state is None:
            conn.execute(
                insert(hot_lead_states).values(
                    definition_id=definition.id, contact_id=contact_id, **values
                )
            )
        else:
            conn.execute(
                update(hot_lead_states)
                .where(
                    hot_lead_states.c.definition_id == definition.id,
                    hot_lead_states.c.contact_id == contact_id,
                )
                .values(**values)
            )
        numbers[contact_id] = crossing
    return numbers


def _owner_of(conn: Connection, definition: Definition, row: Any) -> int | None:
    if definition.kind == "upsell" and row.account_id is not None:
        account_owner = conn.execute(
            select(accounts.c.owner_id).where(accounts.c.id == row.account_id)
        ).scalar_one_or_none()
        if account_owner is not None:
            return int(account_owner)
    return None if row.owner_id is None else int(row.owner_id)


def raise_alert(
    conn: Connection,
    clock: Clock,
    settings: Settings,
    env: SqlEnv,
    definition: Definition,
    contact_id: int,
    crossing: int,
    *,
    scores: dict[str, float],
) -> int:
    """Record the hand-off, assign an owner if needed, add the call task and queue the mail
    and chat message. Returns the hand-off's id."""
    now = clock.now()
    row = conn.execute(select(contacts).where(contacts.c.id == contact_id)).one()
    owner_id = _owner_of(conn, definition, row)
    if owner_id is None and definition.assign_owner:
        owner_id = assign_owner(conn, env, contact_id)
    owner = None
    if owner_id is not None:
        owner = conn.execute(
            select(users.c.email, users.c.name, users.c.locale).where(
                users.c.id == owner_id, users.c.disabled_at.is_(None)
            )
        ).first()
    locale = owner.locale if owner is not None else settings.default_locale
    handoff_id = conn.execute(
        insert(handoffs)
        .values(
            definition_key=definition.key,
            kind=definition.kind,
            contact_id=contact_id,
            crossing=crossing,
            raised_at=now,
            owner_id=owner_id,
        )
        .returning(handoffs.c.id)
    ).scalar_one()
    facts = AlertFacts(
        kind=definition.kind,
        definition_name=definition.name,
        contact_id=contact_id,
        person=person_name(row),
        company=row.company,
        email=row.email,
        stage=row.lifecycle_stage,
        scores=scores,
        owner=(owner.name or owner.email) if owner is not None else None,
        due_days=definition.task_due_days,
        link=f"{settings.base_url}/api/contacts/{contact_id}",
    )
    if definition.task_due_days is not None:
        title_text = (
            "Follow up the upsell signal of %(person)s"
            if definition.kind == "upsell"
            else "Call %(person)s"
        )
        conn.execute(
            insert(sales_tasks).values(
                contact_id=contact_id,
                handoff_id=handoff_id,
                kind="upsell" if definition.kind == "upsell" else "call",
                title=gettext(locale, title_text, person=facts.person),
                owner_id=owner_id,
                due_at=now + timedelta(days=definition.task_due_days),
                status="open",
                created_at=now,
                updated_at=now,
            )
        )
    recipients = ([owner.email] if owner is not None else []) + [
        e for e in definition.emails if owner is None or e != owner.email
    ]
    if not recipients:
        recipients = [a for a in settings.sales_team_emails.split(",") if a]
    queue_alert(
        conn,
        clock,
        handoff_id=handoff_id,
        facts=facts,
        locale=locale,
        recipients=recipients,
        webhook_url=definition.webhook_url or settings.sales_webhook_url,
    )
    record_events(
        conn,
        clock,
        [
            NewEvent(
                type="handoff_raised",
                occurred_at=now,
                source="system",
                contact_id=contact_id,
                properties={
                    "handoff_id": handoff_id,
                    "definition": definition.key,
                    "kind": definition.kind,
                    "crossing": crossing,
                    "owner_id": owner_id,
                },
            )
        ],
    )
    return int(handoff_id)
