"""Email metrics per send and per email template, from messages and email events.

A message's email events carry ``send_id`` = the message's id (as text), so every count is
"distinct messages with at least one such event": unique opens, unique clicks. Machine
activity (scanners, privacy proxies; R9) is counted apart: ``opened`` / ``clicked`` count
messages with a human event, ``opened_machine`` / ``clicked_machine`` messages with a
machine one (a message may have both). Test sends are not messages and never count.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, Connection, String, and_, cast, exists, func, or_, select

from ekiden.messaging.sends_tables import email_messages
from ekiden.tracking.tables import events

ACTIVITY = {
    "email_opened": "opened",
    "email_clicked": "clicked",
    "email_unsubscribed": "unsubscribed",
    "email_complained": "complained",
}


class EmailMetrics(BaseModel):
    messages: int = Field(description="messages written for the audience")
    queued: int = Field(description="waiting for delivery (or for an A/B winner)")
    skipped: int = Field(description="not sent: no consent, unsubscribed, cap, cancelled …")
    failed: int = Field(description="refused permanently by the SMTP server")
    sent: int = Field(description="accepted by the SMTP server")
    delivered: int = Field(description="sent and not bounced")
    bounced: int
    opened: int = Field(description="messages opened by a person (unique)")
    opened_machine: int = Field(description="messages opened by machine activity")
    clicked: int = Field(description="messages with a person's click (unique)")
    clicked_machine: int = Field(description="messages with a machine click")
    unsubscribed: int
    complained: int
    open_rate: float | None = Field(description="opened / delivered")
    click_rate: float | None = Field(description="clicked / delivered")
    skipped_reasons: dict[str, int] = Field(default_factory=dict)


def event_of_message() -> ColumnElement[bool]:
    """Join condition: the event belongs to the ``email_messages`` row."""
    condition: ColumnElement[bool] = events.c.properties["send_id"].as_string() == cast(
        email_messages.c.id, String
    )
    return condition


def _rate(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 4)


def metrics_where(conn: Connection, scope: ColumnElement[bool]) -> EmailMetrics:
    """Metrics of the messages matching ``scope`` (a condition on ``email_messages``)."""
    by_status: dict[str, int] = {}
    reasons: dict[str, int] = {}
    rows = conn.execute(
        select(email_messages.c.status, email_messages.c.reason, func.count())
        .where(scope)
        .group_by(email_messages.c.status, email_messages.c.reason)
    )
    for status, reason, count in rows:
        by_status[status] = by_status.get(status, 0) + int(count)
        if status == "skipped":
            reasons[reason or "unknown"] = reasons.get(reason or "unknown", 0) + int(count)
    activity: dict[str, int] = {}
    rows = conn.execute(
        select(events.c.type, events.c.machine, func.count(func.distinct(email_messages.c.id)))
        .select_from(email_messages.join(events, event_of_message()))
        .where(scope, events.c.type.in_(ACTIVITY))
        .group_by(events.c.type, events.c.machine)
    )
    for kind, machine, count in rows:
        name = ACTIVITY[kind] + ("_machine" if machine else "")
        activity[name] = int(count)
    bounced = conn.execute(
        select(func.count())
        .select_from(email_messages)
        .where(
            scope,
            or_(
                email_messages.c.status == "bounced",
                exists().where(event_of_message(), events.c.type == "email_bounced"),
            ),
        )
    ).scalar_one()
    sent = by_status.get("sent", 0) + by_status.get("bounced", 0)
    bounced_count = int(bounced)
    delivered = max(sent - bounced_count, 0)
    values: dict[str, Any] = {
        "messages": sum(by_status.values()),
        "queued": by_status.get("queued", 0) + by_status.get("held", 0),
        "skipped": by_status.get("skipped", 0),
        "failed": by_status.get("failed", 0),
        "sent": sent,
        "delivered": delivered,
        "bounced": bounced_count,
        "opened": activity.get("opened", 0),
        "opened_machine": activity.get("opened_machine", 0),
        "clicked": activity.get("clicked", 0),
        "clicked_machine": activity.get("clicked_machine", 0),
        "unsubscribed": activity.get("unsubscribed", 0) + activity.get("unsubscribed_machine", 0),
        "complained": activity.get("complained", 0) + activity.get("complained_machine", 0),
        "open_rate": _rate(activity.get("opened", 0), delivered),
        "click_rate": _rate(activity.get("clicked", 0), delivered),
        "skipped_reasons": reasons,
    }
    return EmailMetrics.model_validate(values)


def send_metrics(conn: Connection, send_id: int) -> EmailMetrics:
    return metrics_where(conn, email_messages.c.send_id == send_id)


def template_metrics(conn: Connection, template_key: str) -> EmailMetrics:
    """Every message of the template: its sends and its single messages (journeys)."""
    return metrics_where(conn, and_(email_messages.c.template_key == template_key))
