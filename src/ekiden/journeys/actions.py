"""Journey actions: each node type that does something, as one small function.

An action runs inside the transaction that records the enrolment's step, so its database
changes commit or roll back with it. Anything leaving the machine goes through the outbox
with an idempotency key made of the enrolment, the node and the visit (``ActionContext.key``),
so a retried step never sends twice. An action returns a detail dict for the history.

Node types without an action here (``unavailable_parts``) cannot be activated: the
capability they need is not part of this build yet.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from ekiden.clock import Clock
from ekiden.config import Settings
from ekiden.contacts.models import STANDARD_FIELDS, ContactChanges
from ekiden.contacts.service import update_contact
from ekiden.contacts.tables import contacts
from ekiden.contacts.tags import add_tags, remove_tag
from ekiden.errors import Conflict, Invalid
from ekiden.journeys import definition as d
from ekiden.journeys.tables import coupons, onsite_messages
from ekiden.outbox import enqueue
from ekiden.segments import lists as list_service


@dataclass(frozen=True)
class ActionContext:
    conn: Connection
    clock: Clock
    settings: Settings
    journey: d.Journey
    journey_id: int
    enrolment_id: int
    contact_id: int
    visit: int  # the enrolment's step number: the same on a retry of this step

    def key(self, node_id: str) -> str:
        return f"journey:{self.enrolment_id}:{node_id}:{self.visit}"


Action = Callable[[ActionContext, Any], dict[str, Any]]


def _tag(ctx: ActionContext, node: d.TagAction) -> dict[str, Any]:
    if node.type == "add_tag":
        return {"changed": bool(add_tags(ctx.conn, ctx.clock, ctx.contact_id, [node.tag]))}
    return {"changed": remove_tag(ctx.conn, ctx.clock, ctx.contact_id, node.tag)}


def _list(ctx: ActionContext, node: d.ListAction) -> dict[str, Any]:
    if node.type == "add_to_list":
        changed = list_service.add_members(
            ctx.conn, ctx.clock, node.list, [ctx.contact_id], source="journey"
        )
    else:
        changed = list_service.remove_members(ctx.conn, ctx.clock, node.list, [ctx.contact_id])
    return {"changed": bool(changed)}


def _update_field(ctx: ActionContext, node: d.UpdateField) -> dict[str, Any]:
    name = node.field
    if name.startswith("custom."):
        changes = ContactChanges(custom={name.removeprefix("custom."): node.value})
    elif name in STANDARD_FIELDS:
        changes = ContactChanges.model_validate({name: node.value})
    else:
        raise Invalid(f"update_field: no contact field {name!r} (custom fields: custom.<key>)")
    update_contact(ctx.conn, ctx.clock, ctx.contact_id, changes)
    return {"field": name}


def _webhook(ctx: ActionContext, node: d.CallWebhook) -> dict[str, Any]:
    email = ctx.conn.execute(
        select(contacts.c.email).where(contacts.c.id == ctx.contact_id)
    ).scalar_one_or_none()
    body = {
        **node.body,
        "journey": ctx.journey.key,
        "node": node.id,
        "enrolment": ctx.enrolment_id,
        "contact": {"id": ctx.contact_id, "email": email},
    }
    outbox_id = enqueue(
        ctx.conn,
        ctx.clock,
        kind="webhook",
        key=ctx.key(node.id),
        payload={"url": node.url, "body": body, "sign": True},
        contact_id=ctx.contact_id,
    )
    return {"outbox_id": outbox_id}


def _send_email(ctx: ActionContext, node: d.SendEmail) -> dict[str, Any]:
    from ekiden.messaging.sending import send_email

    message_id = send_email(
        ctx.conn,
        ctx.clock,
        ctx.settings,
        template=node.email,
        contact_id=ctx.contact_id,
        key=ctx.key(node.id),
        category="marketing",
    )
    return {"email": node.email, "message_id": message_id}


def _onsite(ctx: ActionContext, node: d.OnsiteMessage) -> dict[str, Any]:
    now = ctx.clock.now()
    dialect = postgresql if ctx.conn.dialect.name == "postgresql" else sqlite
    ctx.conn.execute(
        dialect.insert(onsite_messages)
        .values(
            key=ctx.key(node.id),
            contact_id=ctx.contact_id,
            journey_id=ctx.journey_id,
            title=node.title,
            message=node.message,
            created_at=now,
            expires_at=None if node.expires_in is None else now + node.expires_in,
            link=node.link,
            link_text=node.link_text,
            show=node.show,
        )
        .on_conflict_do_nothing(index_elements=["key"])
    )
    return {}


def _coupon(ctx: ActionContext, node: d.IssueCoupon) -> dict[str, Any]:
    """One code per contact and journey: a re-entry gets the code it already has."""
    existing = ctx.conn.execute(
        select(coupons.c.code).where(
            coupons.c.journey_id == ctx.journey_id, coupons.c.contact_id == ctx.contact_id
        )
    ).scalar_one_or_none()
    if existing is not None:
        return {"code": existing, "new": False}
    now = ctx.clock.now()
    dialect = postgresql if ctx.conn.dialect.name == "postgresql" else sqlite
    for _ in range(5):  # a collision of 50 random bits is unlikely; retry it anyway
        code = node.prefix + secrets.token_hex(6).upper()[:10]
        stored = ctx.conn.execute(
            dialect.insert(coupons)
            .values(
                code=code,
                contact_id=ctx.contact_id,
                journey_id=ctx.journey_id,
                field=node.field,
                issued_at=now,
                expires_at=None if node.valid_for is None else now + node.valid_for,
            )
            .on_conflict_do_nothing()
            .returning(coupons.c.code)
        ).scalar_one_or_none()
        if stored is not None:
            return {"code": stored, "new": True}
    raise RuntimeError("could not find a free coupon code")


def _enrol(ctx: ActionContext, node: d.Enrol) -> dict[str, Any]:
    from ekiden.journeys.service import enrol_contacts

    enrolled, _ = enrol_contacts(
        ctx.conn,
        ctx.clock,
        node.journey,
        [ctx.contact_id],
        zone=ctx.settings.zone,
        trigger=f"journey:{ctx.enrolment_id}",
        require_active=False,
    )
    return {"journey": node.journey, "enrolled": bool(enrolled)}


def _stage_kind(conn: Connection, stage: str) -> str:
    from ekiden.lifecycle.stages import list_stages

    lifecycle = {s.key for s in list_stages(conn, "lifecycle")}
    return "lifecycle" if stage in lifecycle else "buying"


def _change_stage(ctx: ActionContext, node: d.ChangeStage) -> dict[str, Any]:
    """A move the stage order does not allow (a skip, a step back) is recorded and passed
    over: the contact is simply further along than the journey assumed."""
    from ekiden.lifecycle.models import MoveIn
    from ekiden.lifecycle.moves import move_contact

    kind = _stage_kind(ctx.conn, node.stage)
    try:
        with ctx.conn.begin_nested():
            move_contact(
                ctx.conn,
                ctx.clock,
                ctx.contact_id,
                MoveIn.model_validate({"stage": node.stage, "kind": kind}),
                moved_by=f"journey:{ctx.journey.key}",
            )
    except Conflict as exc:
        return {"stage": node.stage, "skipped": exc.message}
    return {"stage": node.stage}


def _adjust_score(ctx: ActionContext, node: d.AdjustScore) -> dict[str, Any]:
    """Points outside the score's rules, kept as a manual award (a retry awards once)."""
    from ekiden.scoring.service import adjust_score

    value = adjust_score(
        ctx.conn,
        ctx.clock,
        contact_id=ctx.contact_id,
        score_key=node.score,
        points=node.points,
        reason=node.label or f"journey {ctx.journey.key}",
        ref=ctx.key(node.id),
        zone=ctx.settings.zone,
    )
    return {"score": node.score, "points": node.points, "value": value}


def _owner(conn: Connection, contact_id: int) -> int | None:
    owner: int | None = conn.execute(
        select(contacts.c.owner_id).where(contacts.c.id == contact_id)
    ).scalar_one_or_none()
    return owner


def _create_task(ctx: ActionContext, node: d.CreateTask) -> dict[str, Any]:
    from ekiden.lifecycle.handoff_models import TaskIn
    from ekiden.lifecycle.tasks import create_task

    task = create_task(
        ctx.conn,
        ctx.clock,
        TaskIn(
            contact_id=ctx.contact_id,
            title=node.title,
            kind="follow_up",
            owner_id=node.assign_to or _owner(ctx.conn, ctx.contact_id),
            due_at=ctx.clock.now() + node.due_in,
        ),
    )
    return {"task_id": task.id}


def _assign_owner(ctx: ActionContext, node: d.AssignOwner) -> dict[str, Any]:
    from ekiden.lifecycle.assign import assign_owner
    from ekiden.rules.fields import load_catalog
    from ekiden.rules.sql import SqlEnv

    if node.user_id is not None:
        update_contact(ctx.conn, ctx.clock, ctx.contact_id, ContactChanges(owner_id=node.user_id))
        return {"owner_id": node.user_id}
    env = SqlEnv(
        catalog=load_catalog(ctx.conn),
        now=ctx.clock.now(),
        zone=ctx.settings.zone,
        dialect=ctx.conn.dialect.name,
    )
    return {"owner_id": assign_owner(ctx.conn, env, ctx.contact_id)}


def _notify_sales(ctx: ActionContext, node: d.NotifySales) -> dict[str, Any]:
    """Mail to ``to`` (else the contact's owner) and a Slack-compatible chat message."""
    from ekiden.auth.tables import users
    from ekiden.i18n import gettext

    row = ctx.conn.execute(
        select(
            contacts.c.email, contacts.c.last_name, contacts.c.first_name, contacts.c.owner_id
        ).where(contacts.c.id == ctx.contact_id)
    ).one()
    recipients = list(node.to or [])
    locale = "ja"
    if not recipients and row.owner_id is not None:
        owner = ctx.conn.execute(
            select(users.c.email, users.c.locale).where(
                users.c.id == row.owner_id, users.c.disabled_at.is_(None)
            )
        ).first()
        if owner is not None:
            recipients, locale = [owner.email], owner.locale
    who = " ".join(p for p in (row.last_name, row.first_name) if p) or row.email or ""
    subject = gettext(
        locale, "Journey %(journey)s: %(contact)s", journey=ctx.journey.name, contact=who
    )
    link = f"{ctx.settings.base_url.rstrip('/')}/api/contacts/{ctx.contact_id}"
    text = f"{node.message}\n\n{who} <{row.email or '-'}>\n{link}"
    detail: dict[str, Any] = {"to": recipients}
    if recipients:
        detail["mail"] = enqueue(
            ctx.conn,
            ctx.clock,
            kind="mail",
            key=ctx.key(node.id) + ":mail",
            payload={"to": recipients, "subject": subject, "text": text, "html": None},
            contact_id=ctx.contact_id,
        )
    if node.webhook_url:
        detail["chat"] = enqueue(
            ctx.conn,
            ctx.clock,
            kind="webhook",
            key=ctx.key(node.id) + ":chat",
            payload={
                "url": node.webhook_url,
                "body": {"text": f"{subject}\n{text}"},
                "sign": False,
            },
            contact_id=ctx.contact_id,
        )
    if not recipients and not node.webhook_url:
        detail["skipped"] = "no owner and no recipients"
    return detail


ACTIONS: dict[str, Action] = {
    "change_stage": _change_stage,
    "adjust_score": _adjust_score,
    "create_task": _create_task,
    "assign_owner": _assign_owner,
    "notify_sales": _notify_sales,
    "add_tag": _tag,
    "remove_tag": _tag,
    "add_to_list": _list,
    "remove_from_list": _list,
    "update_field": _update_field,
    "webhook": _webhook,
    "send_email": _send_email,
    "onsite_message": _onsite,
    "issue_coupon": _coupon,
    "enrol": _enrol,
}

# Node types the engine itself handles (flow, not actions).
FLOW = frozenset({"wait", "wait_until", "wait_for", "branch", "split", "exit"})

# Triggers the engine can watch for.
TRIGGERS = (
    d.EventTrigger,
    d.SegmentTrigger,
    d.ManualTrigger,
    d.StageTrigger,
    d.ScoreTrigger,
    d.DateTrigger,
)


def unavailable_parts(journey: d.Journey) -> list[str]:
    """Steps and triggers of ``journey`` this build cannot run, each named."""
    out: list[str] = []
    for i, trigger in enumerate(journey.entry.triggers):
        if not isinstance(trigger, TRIGGERS):
            kind = next(iter(trigger.model_dump()))
            out.append(f"entry.triggers[{i}]: the {kind} trigger is not available yet")
    for i, node in enumerate(journey.nodes):
        if node.type not in ACTIONS and node.type not in FLOW:
            out.append(f"nodes[{i}] ({node.id}): the {node.type} step is not available yet")
    return out
