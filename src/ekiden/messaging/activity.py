"""What the email links record: opens, clicks (with machine flags), unsubscribes and
preference changes. Each function takes a verified token (``tokens.unseal``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, select, update

from ekiden.clock import Clock
from ekiden.config import Settings
from ekiden.contacts.consent import record_consent, resubscribe, unsubscribe
from ekiden.contacts.identity import link_anonymous_id
from ekiden.contacts.service import live_contact_id
from ekiden.contacts.tables import contacts
from ekiden.messaging.machine import HONEYPOT, click_reason, every_link_reason, open_reason
from ekiden.messaging.tokens import EmailToken
from ekiden.tracking.events import NewEvent, record_events
from ekiden.tracking.machine import device_class
from ekiden.tracking.pixel import ANONYMOUS_ID
from ekiden.tracking.tables import events


@dataclass(frozen=True)
class Visit:
    """The request behind an open or a click."""

    ip: str | None
    user_agent: str | None
    anonymous_id: str | None = None  # the browser's id, when a cookie gives one


def _properties(token: EmailToken) -> dict[str, Any]:
    props: dict[str, Any] = {"send_id": token.send_id, "email": token.email}
    if token.send:
        props["send"] = token.send
    if token.variant is not None:
        props["variant"] = token.variant
    return props


def _event(
    token: EmailToken, contact_id: int, kind: str, clock: Clock, visit: Visit, **props: Any
) -> NewEvent:
    return NewEvent(
        type=kind,
        occurred_at=clock.now(),
        source="email",
        contact_id=contact_id,
        properties={**_properties(token), **props},
        ip=visit.ip,
        user_agent=visit.user_agent,
    )


def record_open(conn: Connection, clock: Clock, token: EmailToken, visit: Visit) -> bool:
    """Store an ``email_opened`` event (flagged when a machine fetched the pixel); False when
    the contact no longer exists."""
    contact_id = live_contact_id(conn, token.contact_id)
    if contact_id is None:
        return False
    event = _event(token, contact_id, "email_opened", clock, visit)
    reason = open_reason(visit.ip, visit.user_agent)
    event.machine, event.machine_reason = reason is not None, reason
    record_events(conn, clock, [event])
    return True


def record_click(
    conn: Connection, clock: Clock, settings: Settings, token: EmailToken, visit: Visit
) -> bool:
    """Store an ``email_clicked`` event for a tracked link or the honeypot, with its machine
    flag. A person's click links the browser's anonymous id to the contact (R2). Returns
    whether the click was a person's; False also when the contact no longer exists."""
    contact_id = live_contact_id(conn, token.contact_id)
    if contact_id is None:
        return False
    now = clock.now()
    window = timedelta(seconds=settings.email_machine_click_seconds)
    if token.kind == "h":
        event = _event(token, contact_id, "email_clicked", clock, visit, honeypot=True)
        event.machine, event.machine_reason = True, HONEYPOT
        record_events(conn, clock, [event])
        return False
    event = _event(token, contact_id, "email_clicked", clock, visit, url=token.url, link=token.link)
    reason = click_reason(
        ip=visit.ip,
        user_agent=visit.user_agent,
        delivered_at=token.issued_at,
        clicked_at=now,
        window=window,
    )
    if reason is None and token.links >= 2:
        reason = _burst(conn, token, contact_id, now - window, window)
    event.machine, event.machine_reason = reason is not None, reason
    human = reason is None
    if human and visit.anonymous_id and ANONYMOUS_ID.fullmatch(visit.anonymous_id):
        event.anonymous_id = visit.anonymous_id
        link_anonymous_id(
            conn, clock, visit.anonymous_id, contact_id, device=device_class(visit.user_agent)
        )
    record_events(conn, clock, [event])
    return human


def _burst(
    conn: Connection, token: EmailToken, contact_id: int, since: Any, window: timedelta
) -> str | None:
    """When this click completes a burst on every link of the message, flag the burst's
    earlier clicks too and give the reason; None otherwise."""
    rows = conn.execute(
        select(events.c.id, events.c.properties, events.c.machine).where(
            events.c.contact_id == contact_id,
            events.c.type == "email_clicked",
            events.c.occurred_at >= since,
        )
    ).all()
    same = [r for r in rows if (r.properties or {}).get("send_id") == token.send_id]
    links = {(r.properties or {}).get("link") for r in same} | {token.link}
    if len(links & set(range(token.links))) < token.links:
        return None
    reason = every_link_reason(window)
    earlier = [r.id for r in same if not r.machine]
    if earlier:
        # a correction of the machine flag, not of what happened: the clicks stay
        conn.execute(
            update(events)
            .where(events.c.id.in_(earlier))
            .values(machine=True, machine_reason=reason)
        )
    return reason


def unsubscribe_by_token(
    conn: Connection, clock: Clock, token: EmailToken, visit: Visit, *, method: str
) -> bool:
    """Unsubscribe the token's contact at once (``method``: one-click | page | preferences),
    with consent evidence and an ``email_unsubscribed`` event. Idempotent: False when the
    contact was already unsubscribed or no longer exists."""
    contact_id = live_contact_id(conn, token.contact_id)
    if contact_id is None:
        return False
    changed = unsubscribe(
        conn,
        clock,
        contact_id,
        source="unsubscribe",
        source_ref=f"email:{token.email}:{token.send_id}:{method}",
        ip=visit.ip,
        user_agent=visit.user_agent,
    )
    if changed:
        event = _event(token, contact_id, "email_unsubscribed", clock, visit, method=method)
        record_events(conn, clock, [event])
    return changed


def subscription_status(conn: Connection, token: EmailToken) -> str | None:
    """subscribed | unsubscribed for the token's contact; None when it no longer exists."""
    contact_id = live_contact_id(conn, token.contact_id)
    if contact_id is None:
        return None
    row = conn.execute(
        select(contacts.c.unsubscribed_at, contacts.c.email_consent).where(
            contacts.c.id == contact_id
        )
    ).one()
    subscribed = row.unsubscribed_at is None and row.email_consent == "granted"
    return "subscribed" if subscribed else "unsubscribed"


def stay_subscribed(
    conn: Connection, clock: Clock, token: EmailToken, visit: Visit, *, text_shown: str
) -> bool:
    """The recipient chose to keep receiving marketing email on the preference page: clear an
    opt-out and record the choice as consent with its evidence. False when nothing changed."""
    contact_id = live_contact_id(conn, token.contact_id)
    if contact_id is None:
        return False
    if subscription_status(conn, token) == "subscribed":
        return False
    resubscribe(conn, clock, contact_id)
    record_consent(
        conn,
        clock,
        contact_id,
        status="granted",
        source="form",
        source_ref=f"email-preferences:{token.email}:{token.send_id}",
        text_shown=text_shown,
        ip=visit.ip,
        user_agent=visit.user_agent,
    )
    return True
