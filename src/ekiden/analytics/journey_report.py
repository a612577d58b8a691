"""The journey report: per node what visits did in the period, and conversion to the
journey's goal (definitions: docs/ANALYTICS.md). Node results follow the journey's own
statistics (ekiden.journeys.reports): a visit passes by a port, or ends there as exited,
converted or failed, or waits."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select

from ekiden.analytics.reports import (
    Option,
    Report,
    ReportParams,
    ReportResult,
    ReportTable,
    contact_condition,
    register,
)
from ekiden.clock import Clock
from ekiden.contacts.tables import contacts
from ekiden.errors import Invalid, NotFound
from ekiden.i18n import gettext
from ekiden.journeys.reports import _NOT_PASSED
from ekiden.journeys.service import definition_of, journey_row
from ekiden.journeys.tables import enrolment_steps, enrolments

_ENDINGS = ("exited", "converted", "failed")


def _journey_key(value: str) -> str:
    if not value.strip():
        raise ValueError("must name a journey")
    return value.strip()


def _rate(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 1) if whole else None


def run_journey(
    conn: Connection, clock: Clock, params: ReportParams, options: dict[str, Any]
) -> ReportResult:
    period = params.period
    start, end = period.starts_at, period.ends_at
    key: str | None = options["journey"]
    if key is None:
        raise Invalid(
            "option 'journey' is required: the key of the journey to report on",
            code="invalid_option",
            details={"option": "journey"},
        )
    try:
        row = journey_row(conn, key)
    except NotFound:
        raise Invalid(
            f"option 'journey': no journey {key!r}",
            code="invalid_option",
            details={"option": "journey", "value": key},
        ) from None
    journey = definition_of(conn, row.id, row.version)
    who = contact_condition(conn, clock, params.filter, period.zone)

    steps = (
        select(
            enrolment_steps.c.node,
            enrolment_steps.c.result,
            func.count().label("n"),
        )
        .join(contacts, contacts.c.id == enrolment_steps.c.contact_id)
        .where(
            who,
            enrolment_steps.c.journey_id == row.id,
            enrolment_steps.c.at >= start,
            enrolment_steps.c.at < end,
        )
        .group_by(enrolment_steps.c.node, enrolment_steps.c.result)
    )
    counts: dict[str, dict[str, int]] = {}
    for node, result, n in conn.execute(steps):
        counts.setdefault(node, {})[result] = int(n)
    entered: dict[str, int] = {
        node: int(n)
        for node, n in conn.execute(
            select(enrolment_steps.c.node, func.count(enrolment_steps.c.enrolment_id.distinct()))
            .join(contacts, contacts.c.id == enrolment_steps.c.contact_id)
            .where(
                who,
                enrolment_steps.c.journey_id == row.id,
                enrolment_steps.c.at >= start,
                enrolment_steps.c.at < end,
            )
            .group_by(enrolment_steps.c.node)
        )
    }
    waiting: dict[str, int] = {
        node: int(n)
        for node, n in conn.execute(
            select(enrolments.c.node, func.count())
            .join(contacts, contacts.c.id == enrolments.c.contact_id)
            .where(who, enrolments.c.journey_id == row.id, enrolments.c.state == "waiting")
            .group_by(enrolments.c.node)
        )
    }
    node_rows: list[list[Any]] = []
    known: list[tuple[str, str | None]] = [(n.id, n.type) for n in journey.nodes]
    known += [(n, None) for n in sorted(set(entered) - {k for k, _ in known})]  # older versions
    for node_id, node_type in known:
        mine = counts.get(node_id, {})
        node_rows.append(
            [
                node_id,
                node_type,
                entered.get(node_id, 0),
                sum(n for result, n in mine.items() if result not in _NOT_PASSED),
                *(mine.get(r, 0) for r in _ENDINGS),
                waiting.get(node_id, 0),
            ]
        )

    cohort = (
        select(
            func.count().label("enrolled"),
            func.count(enrolments.c.contact_id.distinct()).label("contacts"),
            func.count()
            .filter(enrolments.c.state == "converted", enrolments.c.ended_at < end)
            .label("converted"),
        )
        .join(contacts, contacts.c.id == enrolments.c.contact_id)
        .where(
            who,
            enrolments.c.journey_id == row.id,
            enrolments.c.entered_at >= start,
            enrolments.c.entered_at < end,
        )
    )
    got = conn.execute(cohort).one()
    enrolled, converted = int(got.enrolled), int(got.converted or 0)
    converted_in_period = int(
        conn.execute(
            select(func.count())
            .select_from(enrolments)
            .join(contacts, contacts.c.id == enrolments.c.contact_id)
            .where(
                who,
                enrolments.c.journey_id == row.id,
                enrolments.c.state == "converted",
                enrolments.c.ended_at >= start,
                enrolments.c.ended_at < end,
            )
        ).scalar_one()
    )
    if journey.goal is None:
        note = gettext(params.locale, "The journey %(key)s has no goal", key=key)
    else:
        note = gettext(
            params.locale,
            "Of %(enrolled)s enrolments that began in the period, %(converted)s reached the "
            "goal by its end (%(rate)s)",
            enrolled=enrolled,
            converted=converted,
            rate="-" if not enrolled else f"{_rate(converted, enrolled):g}%",
        )
    return ReportResult(
        report="journey",
        period_from=period.first,
        period_to=period.last,
        zone=str(period.zone),
        filter=params.filter,
        options=options,
        notes=[note],
        tables=[
            ReportTable(
                name="nodes",
                columns=[
                    "node",
                    "type",
                    "entered",
                    "passed",
                    "exited",
                    "converted",
                    "failed",
                    "waiting_now",
                ],
                rows=node_rows,
            ),
            ReportTable(
                name="goal",
                columns=[
                    "journey",
                    "has_goal",
                    "enrolled",
                    "contacts",
                    "converted",
                    "rate",
                    "converted_in_period",
                ],
                rows=[
                    [
                        key,
                        journey.goal is not None,
                        enrolled,
                        int(got.contacts),
                        converted,
                        _rate(converted, enrolled),
                        converted_in_period,
                    ]
                ],
            ),
        ],
    )


JOURNEY = register(
    Report(
        name="journey",
        description="A journey: per node what visits did in the period, and conversion of the "
        "period's enrolments to the journey goal.",
        options={"journey": Option("The journey's key (required).", _journey_key)},
        run=run_journey,
    )
)
