"""Form submissions: validate, then in one transaction create or update the contact, record
consent evidence, join the visitor's anonymous history and store a ``form_submitted`` event."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, select

from ekiden.clock import Clock
from ekiden.contacts.consent import record_consent
from ekiden.contacts.identity import link_anonymous_id, lock_browsers
from ekiden.contacts.service import touch_last_seen, upsert_contact
from ekiden.errors import Invalid, NotFound
from ekiden.forms.answers import CheckedAnswers, Problem, check_answers
from ekiden.forms.definition import UTM_FIELDS, FormDefinition
from ekiden.forms.store import StoredForm, count_spam
from ekiden.i18n import gettext
from ekiden.segments.lists import add_members
from ekiden.tracking.events import NewEvent, record_events
from ekiden.tracking.tables import events

log = logging.getLogger("ekiden.forms")

Outcome = Literal["stored", "duplicate", "spam", "machine"]


@dataclass(frozen=True)
class SubmissionResult:
    """What happened, and what the visitor is shown next.

    ``outcome``: stored (contact, consent and event written), duplicate (this submission was
    already stored), spam (honeypot filled: nothing stored) or machine (sent faster than a
    person fills a form: the event is kept, flagged, but no contact or consent is written).
    The visitor gets the same success answer in every case, so bots learn nothing.
    """

    outcome: Outcome
    contact_id: int | None
    redirect_url: str | None
    message: str
    document_url: str | None


class SubmissionRejected(Invalid):
    """Some answers are not acceptable; ``problems`` names each field. Nothing was stored."""

    code = "invalid_submission"

    def __init__(self, problems: dict[str, Problem], locale: str) -> None:
        self.problems = problems
        texts = {key: p.text(locale) for key, p in problems.items()}
        summary = "; ".join(f"{key}: {p.text('en')}" for key, p in problems.items())
        super().__init__(f"the form has errors: {summary}", details=texts)


def submit_form(
    conn: Connection,
    clock: Clock,
    form: StoredForm,
    answers: Mapping[str, Sequence[str]],
    *,
    ip: str | None,
    user_agent: str | None,
    anonymous_id: str | None,
    page_url: str | None,
    referrer: str | None,
    locale: str = "ja",
    submission_id: str | None = None,
    rendered_at: datetime | None = None,
) -> SubmissionResult:
    """Handle one submission of ``form``. ``answers`` maps input names to their values.

    ``submission_id`` (the nonce of the ``_sid`` token) makes a repeated POST of the same
    rendering a no-op; ``rendered_at`` (from the same token) flags submissions sent sooner than
    the form's ``min_fill_seconds`` as machine activity. Raises SubmissionRejected (422) naming
    every bad answer; then nothing is stored.
    """
    definition = form.definition
    if _honeypot_filled(definition, answers):
        count_spam(conn, form.id)
        log.warning("form %s: honeypot filled from %s, submission dropped", form.slug, ip)
        return _success(definition, locale, "spam", None)
    checked = check_answers(conn, definition, answers)
    if checked.problems:
        raise SubmissionRejected(checked.problems, locale)
    message_id = f"form:{definition.slug}:{submission_id or uuid.uuid4().hex}"
    if conn.execute(select(events.c.id).where(events.c.message_id == message_id)).first():
        return _success(definition, locale, "duplicate", None)
    now = clock.now()
    event = NewEvent(
        type="form_submitted",
        occurred_at=now,
        source="form",
        anonymous_id=anonymous_id,
        name=definition.name,
        properties=_properties(definition, checked, answers, page_url, referrer),
        context={"locale": locale, "page_url": page_url, "referrer": referrer},
        ip=ip,
        user_agent=user_agent,
        message_id=message_id,
    )
    elapsed = (now - rendered_at).total_seconds() if rendered_at is not None else None
    if elapsed is not None and elapsed < definition.min_fill_seconds:
        # A person cannot read and fill a form this fast: keep the evidence, trust nothing.
        event.machine = True
        event.machine_reason = f"form sent {max(elapsed, 0):.1f} s after it was shown"
        record_events(conn, clock, [event])
        log.warning("form %s: machine submission from %s (%s)", form.slug, ip, event.machine_reason)
        return _success(definition, locale, "machine", None)
    if anonymous_id:
        # before any contact row: ingestion locks browsers first too (no lock-order cycle)
        lock_browsers(conn, [anonymous_id])
    # A savepoint: if anything below fails, none of it stays (the caller may still commit).
    with conn.begin_nested():
        contact_id = _store_contact(conn, clock, form, checked, locale)
        if checked.consent_given and definition.consent is not None:
            record_consent(
                conn,
                clock,
                contact_id,
                status="granted",
                source="form",
                source_ref=definition.slug,
                text_shown=definition.consent.text.get(locale),
                ip=ip,
                user_agent=user_agent,
            )
        if anonymous_id:
            link_anonymous_id(conn, clock, anonymous_id, contact_id)
        for slug in definition.add_to_lists:
            try:
                add_members(conn, clock, slug, [contact_id], source="form")
            except NotFound:  # the list was archived after the form was built: keep the lead
                log.warning("form %s: list %s no longer exists", form.slug, slug)
        event.contact_id = contact_id
        record_events(conn, clock, [event])
        touch_last_seen(conn, {contact_id: now})
    return _success(definition, locale, "stored", contact_id)


def _honeypot_filled(definition: FormDefinition, answers: Mapping[str, Sequence[str]]) -> bool:
    if definition.honeypot is None:
        return False
    return any(v.strip() for v in answers.get(definition.honeypot, ()))


def _store_contact(
    conn: Connection, clock: Clock, form: StoredForm, checked: CheckedAnswers, locale: str
) -> int:
    try:
        upserted = upsert_contact(
            conn,
            clock,
            email=checked.email,
            changes=checked.contact_changes(),
            source_kind="form",
            source_ref=form.slug,
            require_custom=True,
        )
    except Invalid as exc:
        # e.g. a custom field made required after the form was built: say so on the form.
        problems: dict[str, Problem] = {}
        details = exc.details if isinstance(exc.details, dict) else {}
        for key, reason in details.items():
            target = f"custom.{key}" if form.definition.field(f"custom.{key}") else "_form"
            problems[target] = Problem(
                "This value cannot be stored (%(reason)s).", {"reason": reason}
            )
        raise SubmissionRejected(
            problems or {"_form": Problem("The form could not be stored.")}, locale
        ) from None
    return upserted.contact_id


def _properties(
    definition: FormDefinition,
    checked: CheckedAnswers,
    answers: Mapping[str, Sequence[str]],
    page_url: str | None,
    referrer: str | None,
) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "form": definition.slug,
        "form_kind": definition.kind,
        "answers": checked.answers,
        "consent": checked.consent_given,
        "page_url": page_url,
        "referrer": referrer,
    }
    for key in UTM_FIELDS:
        value = next((v.strip() for v in answers.get(key, ()) if v.strip()), None)
        if value:
            properties[key] = value[:500]
    return properties


def _success(
    definition: FormDefinition, locale: str, outcome: Outcome, contact_id: int | None
) -> SubmissionResult:
    success = definition.success
    redirect = success.redirect_url
    if success.redirect_to_document:
        redirect = success.document_url
    message = success.message.get(locale) if success.message else gettext(locale, "Thank you.")
    return SubmissionResult(
        outcome=outcome,
        contact_id=contact_id,
        redirect_url=redirect,
        message=message,
        document_url=success.document_url,
    )
