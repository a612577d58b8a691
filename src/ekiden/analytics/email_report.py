"""The email performance report (definitions: docs/ANALYTICS.md).

The messages are those sent in the period; each is followed through its email events (the
events carry the message id as ``send_id``, as for ``ekiden.messaging.metrics``) and, after a
person's first click, to the forms its contact submitted and the stage moves it made within
``window_days``. Per-message facts are computed once in the database and summed per email
(template), per journey node and per day of sending in the user's time zone.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import (
    CTE,
    BigInteger,
    ColumnElement,
    Connection,
    Interval,
    String,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    or_,
    select,
)

from ekiden.analytics.days import day_number, day_of, local_day
from ekiden.analytics.reports import (
    Option,
    Report,
    ReportParams,
    ReportResult,
    ReportTable,
    contact_condition,
    register,
    whole_number,
)
from ekiden.clock import Clock
from ekiden.contacts.tables import contacts
from ekiden.i18n import gettext
from ekiden.journeys.tables import enrolments, journeys
from ekiden.lifecycle.tables import stage_history
from ekiden.messaging.metrics import ACTIVITY
from ekiden.messaging.sends_tables import email_messages
from ekiden.messaging.tables import email_templates
from ekiden.tracking.tables import events

DEFAULT_WINDOW_DAYS = 7
K = TypeVar("K", bound=Hashable)
JOURNEY_PREFIX = "journey:"  # message keys of journey sends: journey:<enrolment>:<node>:<visit>
EVENT_TYPES = (*ACTIVITY, "email_bounced")

METRICS = [
    "sent",
    "delivered",
    "bounced",
    "opened",
    "opened_machine",
    "clicked",
    "clicked_machine",
    "unsubscribed",
    "complained",
    "open_rate",
    "click_rate",
    "led_to_form",
    "led_to_stage",
]
# the per-message flags summed, in this order, after the count of messages
_FLAGS = [
    "bounced",
    "opened",
    "opened_machine",
    "clicked",
    "clicked_machine",
    "unsubscribed",
    "complained",
    "formed",
    "moved",
]


def _later(column: ColumnElement[Any], days: int, dialect: str) -> ColumnElement[Any]:
    """The instant ``days`` days after ``column`` (stored naive UTC on both backends)."""
    if dialect == "postgresql":
        return column + literal(timedelta(days=days), Interval())
    # SQLite keeps instants as 'YYYY-MM-DD HH:MM:SS.ffffff' text, which compares in order
    return func.strftime("%Y-%m-%d %H:%M:%f", column, f"+{days} days")


def _key_parts(key: ColumnElement[str], dialect: str) -> tuple[Any, Any]:
    """(enrolment id, node id) of a journey message key; NULLs for other keys."""
    is_journey: ColumnElement[bool] = key.like(JOURNEY_PREFIX + "%")
    if dialect == "postgresql":
        # a number is checked before the cast (SQLite casts anything else to 0)
        is_journey = key.regexp_match(f"^{JOURNEY_PREFIX}[0-9]{{1,18}}:")
        enrolment: Any = func.split_part(key, ":", 2)
        node: Any = func.split_part(key, ":", 3)
    else:
        rest = func.substr(key, len(JOURNEY_PREFIX) + 1)  # <enrolment>:<node>:<visit>
        enrolment = func.substr(rest, 1, func.instr(rest, ":") - 1)
        tail = func.substr(rest, func.instr(rest, ":") + 1)  # <node>:<visit>
        node = func.substr(tail, 1, func.instr(tail, ":") - 1)
    return (
        case((is_journey, cast(enrolment, BigInteger))),
        case((is_journey, node)),
    )


def _event_ref(dialect: str) -> ColumnElement[Any]:
    """The message an email event is about: its ``send_id`` property (the message id as
    text). SQLite compares it as an integer, which it extracts faster (a non-number is 0)."""
    text = events.c.properties["send_id"].as_string()
    return text if dialect == "postgresql" else cast(text, BigInteger)


def _message_ref(message_id: ColumnElement[int], dialect: str) -> ColumnElement[Any]:
    """``email_messages.id`` in the form ``_event_ref`` compares with."""
    return cast(message_id, String) if dialect == "postgresql" else message_id


class _Messages:
    """The messages sent in the period, one row each with its facts (``pm``)."""

    def __init__(
        self, conn: Connection, clock: Clock, params: ReportParams, window_days: int
    ) -> None:
        period = params.period
        dialect = conn.dialect.name
        start, end = period.starts_at, period.ends_at
        who = contact_condition(conn, clock, params.filter, period.zone)
        recipient = contacts.alias("recipient")
        enrolment, node = _key_parts(email_messages.c.key, dialect)
        # a merged-away recipient counts as the contact it was merged into
        self.m = (
            select(
                email_messages.c.id,
                _message_ref(email_messages.c.id, dialect).label("ref"),
                email_messages.c.template_key,
                email_messages.c.status,
                local_day(email_messages.c.sent_at, period.zone, start, end, dialect).label("day"),
                enrolment.label("enrolment_id"),
                node.label("node"),
            )
            .select_from(
                email_messages.join(recipient, recipient.c.id == email_messages.c.contact_id).join(
                    contacts,
                    contacts.c.id == func.coalesce(recipient.c.merged_into_id, recipient.c.id),
                )
            )
            .where(
                who,
                email_messages.c.sent_at >= start,
                email_messages.c.sent_at < end,
                email_messages.c.status.in_(("sent", "bounced")),
            )
            .cte("m")
        )
        m = self.m
        kind, person = events.c.type, events.c.machine.is_(False)
        ref = _event_ref(dialect)

        def flag(condition: ColumnElement[bool]) -> Any:
            return func.max(case((condition, 1), else_=0))

        clicked = and_(kind == "email_clicked", person)
        self.act = (
            select(
                ref.label("ref"),
                flag(and_(kind == "email_opened", person)).label("opened"),
                flag(and_(kind == "email_opened", ~person)).label("opened_machine"),
                flag(clicked).label("clicked"),
                flag(and_(kind == "email_clicked", ~person)).label("clicked_machine"),
                flag(kind == "email_unsubscribed").label("unsubscribed"),
                flag(kind == "email_complained").label("complained"),
                flag(kind == "email_bounced").label("bounce_event"),
            )
            .where(kind.in_(EVENT_TYPES), events.c.occurred_at >= start, ref.in_(select(m.c.ref)))
            .group_by(ref)
            .subquery("act")
        )
        act = self.act
        # a person's first click on each message and whose it is (the contact the event is on
        # now: after a merge, the contact merged into); read apart from the other activity,
        # as what a click led to needs only these few events
        self.clicks = (
            select(
                ref.label("ref"),
                func.min(events.c.occurred_at).label("first_click"),
                func.max(events.c.contact_id).label("clicker"),
            )
            .where(
                clicked,
                events.c.occurred_at >= start,
                events.c.contact_id.is_not(None),
                ref.in_(select(m.c.ref)),
            )
            .group_by(ref)
            .subquery("clicks")
        )
        first = self.clicks
        until = _later(first.c.first_click, window_days, dialect)
        later_form = events.alias("later_form")
        self.formed = and_(
            later_form.c.contact_id == first.c.clicker,
            later_form.c.type == "form_submitted",
            later_form.c.machine.is_(False),
            later_form.c.occurred_at >= first.c.first_click,
            later_form.c.occurred_at < until,
        )
        self.later_form = later_form
        self.moved = and_(
            stage_history.c.contact_id == first.c.clicker,
            stage_history.c.kind == "lifecycle",
            stage_history.c.source != "entry",
            stage_history.c.moved_at >= first.c.first_click,
            stage_history.c.moved_at < until,
        )

        def value(column: Any) -> Any:
            return func.coalesce(column, 0)

        self.pm: CTE = (
            select(
                m.c.id,
                m.c.template_key,
                m.c.day,
                m.c.enrolment_id,
                m.c.node,
                case(
                    (or_(m.c.status == "bounced", value(act.c.bounce_event) == 1), 1), else_=0
                ).label("bounced"),
                *(
                    value(act.c[name]).label(name)
                    for name in (
                        "opened",
                        "opened_machine",
                        "clicked",
                        "clicked_machine",
                        "unsubscribed",
                        "complained",
                    )
                ),
                case((exists().where(self.formed), 1), else_=0).label("formed"),
                case((exists().where(self.moved), 1), else_=0).label("moved"),
            )
            .select_from(
                m.outerjoin(act, act.c.ref == m.c.ref).outerjoin(first, first.c.ref == m.c.ref)
            )
            .cte("pm")
        )

    def totals(self) -> list[Any]:
        return [func.count(), *(func.sum(self.pm.c[name]) for name in _FLAGS)]


def _summed(pairs: Iterable[tuple[K, list[int]]]) -> dict[K, list[int]]:
    """The count lists of equal keys added up."""
    out: dict[K, list[int]] = {}
    for key, counts in pairs:
        if key in out:
            out[key] = [a + b for a, b in zip(out[key], counts, strict=True)]
        else:
            out[key] = list(counts)
    return out


def _metrics(counts: list[Any]) -> list[Any]:
    """The METRICS columns from [messages, *_FLAGS sums]."""
    sent, bounced, opened, opened_m, clicked, clicked_m, unsub, complained, formed, moved = (
        int(v or 0) for v in counts
    )
    delivered = max(sent - bounced, 0)

    def rate(part: int) -> float | None:
        return round(100 * part / delivered, 1) if delivered else None

    return [
        sent, delivered, bounced, opened, opened_m, clicked, clicked_m, unsub, complained,
        rate(opened), rate(clicked), formed, moved,
    ]  # fmt: skip


def run_emails(
    conn: Connection, clock: Clock, params: ReportParams, options: dict[str, Any]
) -> ReportResult:
    found = _Messages(conn, clock, params, options["window_days"])
    pm = found.pm
    # one pass over the messages: counts per (email, journey, node, day), summed per table below
    groups = [
        (key, journey, node, int(day), [int(v or 0) for v in counts])
        for key, journey, node, day, *counts in conn.execute(
            select(pm.c.template_key, journeys.c.key, pm.c.node, pm.c.day, *found.totals())
            .select_from(
                pm.outerjoin(enrolments, enrolments.c.id == pm.c.enrolment_id).outerjoin(
                    journeys, journeys.c.id == enrolments.c.journey_id
                )
            )
            .group_by(pm.c.template_key, journeys.c.key, pm.c.node, pm.c.day)
        )
    ]
    by_email = _summed((key, counts) for key, _, _, _, counts in groups)
    by_node = _summed(
        ((journey, node, key), counts) for key, journey, node, _, counts in groups if journey
    )
    per_day = _summed((day, counts) for _, _, _, day, counts in groups)
    names: dict[str, str] = {
        r.key: r.name
        for r in conn.execute(
            select(email_templates.c.key, email_templates.c.name).where(
                email_templates.c.key.in_(list(by_email))
            )
        )
    }
    email_rows = sorted(
        ([key, names.get(key), *_metrics(counts)] for key, counts in by_email.items()),
        key=lambda r: (-r[2], r[0]),
    )
    node_rows = [[*k, *_metrics(by_node[k])] for k in sorted(by_node)]
    period = params.period
    zero = [0] * (len(_FLAGS) + 1)
    day_rows: list[list[Any]] = []
    number = day_number(period.first)
    while day_of(number) <= period.last:
        day_rows.append([day_of(number).isoformat(), *_metrics(per_day.get(number, zero))])
        number += 1

    outcome_rows = _outcomes(conn, found)
    total = _metrics([sum(c[i] for c in per_day.values()) for i in range(len(_FLAGS) + 1)])
    return ReportResult(
        report="emails",
        period_from=period.first,
        period_to=period.last,
        zone=str(period.zone),
        filter=params.filter,
        options=options,
        notes=_notes(params.locale, total),
        tables=[
            ReportTable(name="emails", columns=["email", "name", *METRICS], rows=email_rows),
            ReportTable(
                name="journey_nodes", columns=["journey", "node", "email", *METRICS], rows=node_rows
            ),
            ReportTable(name="days", columns=["day", *METRICS], rows=day_rows),
            ReportTable(
                name="led_to", columns=["email", "kind", "target", "messages"], rows=outcome_rows
            ),
        ],
    )


def _outcomes(conn: Connection, found: _Messages) -> list[list[Any]]:
    """Per email: each form submitted and each stage entered within the window after a
    person's first click, and by how many of its messages."""
    m, form = found.m, found.later_form
    clicks = m.join(found.clicks, found.clicks.c.ref == m.c.ref)
    slug = func.nullif(form.c.properties["form"].as_string(), "")
    forms = conn.execute(
        select(m.c.template_key, slug, func.count(func.distinct(m.c.id)))
        .select_from(clicks.join(form, found.formed))
        .group_by(m.c.template_key, slug)
    ).all()
    stages = conn.execute(
        select(m.c.template_key, stage_history.c.to_stage, func.count(func.distinct(m.c.id)))
        .select_from(clicks.join(stage_history, found.moved))
        .group_by(m.c.template_key, stage_history.c.to_stage)
    ).all()
    rows = [[e, "form", t, int(n)] for e, t, n in forms]
    rows += [[e, "stage", t, int(n)] for e, t, n in stages]
    return sorted(rows, key=lambda r: (r[0], r[1], -r[3], str(r[2])))


def _shown(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def _notes(locale: str, total: list[Any]) -> list[str]:
    metrics = dict(zip(METRICS, total, strict=True))
    if not metrics["sent"]:
        return [gettext(locale, "No email was sent in the period")]
    return [
        gettext(
            locale,
            "%(sent)s emails sent, %(delivered)s delivered: %(opened)s opened and "
            "%(clicked)s clicked by people (%(open_rate)s%% / %(click_rate)s%%); "
            "machine activity counted apart: %(opened_machine)s opens, %(clicked_machine)s "
            "clicks",
            **{k: _shown(v) for k, v in metrics.items()},
        )
    ]


EMAILS = register(
    Report(
        name="emails",
        description="Email performance per email, per journey node and per day: sent, "
        "delivered, bounced, human and machine opens and clicks, unsubscribes, and the forms "
        "and stage moves that followed a click.",
        options={
            "window_days": Option(
                "Days after a person's first click in which a form or a stage move counts as "
                "led to by the email.",
                whole_number("days", 1, 90),
                DEFAULT_WINDOW_DAYS,
            ),
        },
        run=run_emails,
    )
)
