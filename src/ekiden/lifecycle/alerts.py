"""A hand-off alert's words and its way out: an email to the owner or the sales team and a
Slack-compatible chat message, both through the outbox."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from ekiden.clock import Clock
from ekiden.i18n import gettext
from ekiden.outbox import enqueue


@dataclass(frozen=True)
class AlertFacts:
    kind: str  # hot_lead | upsell
    definition_name: str
    contact_id: int
    person: str
    company: str | None
    email: str | None
    stage: str | None
    scores: dict[str, float]
    owner: str | None
    due_days: int | None
    link: str


def person_name(row: Any) -> str:
    """How a contact is called in an alert: family then given name, else the email."""
    name = " ".join(p for p in (row.last_name, row.first_name) if p)
    return name or row.email or f"#{row.id}"


def subject(locale: str, facts: AlertFacts) -> str:
    if facts.kind == "upsell":
        return gettext(
            locale,
            "Upsell signal: %(person)s (%(definition)s)",
            person=facts.person,
            definition=facts.definition_name,
        )
    return gettext(
        locale,
        "Hot lead: %(person)s (%(definition)s)",
        person=facts.person,
        definition=facts.definition_name,
    )


def body(locale: str, facts: AlertFacts) -> str:
    none = gettext(locale, "none")
    scores = ", ".join(f"{k} {v:g}" for k, v in sorted(facts.scores.items())) or none
    lines = [
        subject(locale, facts),
        "",
        gettext(locale, "Company: %(value)s", value=facts.company or none),
        gettext(locale, "Email: %(value)s", value=facts.email or none),
        gettext(locale, "Lifecycle stage: %(value)s", value=facts.stage or none),
        gettext(locale, "Scores: %(value)s", value=scores),
        gettext(locale, "Owner: %(value)s", value=facts.owner or none),
    ]
    if facts.due_days is not None:
        lines.append(gettext(locale, "Please call within %(days)s days.", days=facts.due_days))
    lines.extend(["", facts.link])
    return "\n".join(lines)


def queue_alert(
    conn: Connection,
    clock: Clock,
    *,
    handoff_id: int,
    facts: AlertFacts,
    locale: str,
    recipients: list[str],
    webhook_url: str | None,
) -> None:
    """Queue the mail (when there are recipients) and the chat message (when there is a
    URL) in the caller's transaction; keys derive from the hand-off, so never twice."""
    if recipients:
        enqueue(
            conn,
            clock,
            kind="mail",
            key=f"handoff:{handoff_id}:mail",
            payload={
                "to": recipients,
                "subject": subject(locale, facts),
                "text": body(locale, facts),
                "html": None,
            },
            contact_id=facts.contact_id,
        )
    if webhook_url:
        enqueue(
            conn,
            clock,
            kind="webhook",
            key=f"handoff:{handoff_id}:webhook",
            payload={"url": webhook_url, "body": {"text": body(locale, facts)}, "sign": False},
            contact_id=facts.contact_id,
        )
