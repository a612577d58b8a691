"""Property: nobody without consent, unsubscribed or suppressed ever receives marketing
mail — whatever the states at sending time and whatever changes between queueing and
delivery. Checked at a real SMTP server."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

import ekiden.messaging.handler  # noqa: F401  (registers the "email" handler)
from ekiden.clock import FrozenClock
from ekiden.config import Settings
from ekiden.contacts.consent import record_consent, suppress, unsubscribe
from ekiden.messaging import sends
from ekiden.messaging.sends_models import SendIn
from ekiden.messaging.tables import email_templates
from ekiden.outbox import deliver_due
from test_sending_support import SmtpSink, add_contacts, add_template, mail_settings, smtp_sink


@dataclass(frozen=True)
class State:
    consent: str  # none | granted | withdrawn
    unsubscribed: bool
    suppressed: bool


@dataclass(frozen=True)
class Change:
    """What happens to the contact after its message was queued, before delivery."""

    unsubscribe: bool
    suppress: bool
    grant: bool  # consent granted late: the message still may go (it was queued)


states = st.builds(
    State,
    consent=st.sampled_from(["none", "granted", "withdrawn"]),
    unsubscribed=st.booleans(),
    suppressed=st.booleans(),
)
changes = st.builds(Change, unsubscribe=st.booleans(), suppress=st.booleans(), grant=st.booleans())
_examples = itertools.count()


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with smtp_sink() as server:
        yield server


@pytest.fixture
def mail(db_url: str, sink: SmtpSink) -> Settings:
    return mail_settings(db_url, sink.port)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(people=st.lists(st.tuples(states, changes), min_size=1, max_size=8))
def test_marketing_mail_reaches_only_allowed_contacts(
    engine: Engine, clock: FrozenClock, mail: Settings, sink: SmtpSink, people: list[Any]
) -> None:
    example = next(_examples)
    with engine.connect() as conn:
        fresh = conn.execute(select(func.count()).select_from(email_templates)).scalar_one() == 0
    if fresh:  # the first example on this database
        add_template(engine, clock)
    prefix = f"p{example}x"
    ids = add_contacts(
        engine,
        clock,
        len(people),
        prefix=prefix,
        consent="none",
        states=[
            {
                "email_consent": state.consent,
                "unsubscribed_at": clock.now() if state.unsubscribed else None,
                "suppressed_at": clock.now() if state.suppressed else None,
                "suppression_reason": "manual" if state.suppressed else None,
            }
            for state, _ in people
        ],
    )
    with engine.begin() as conn:
        sends.create_send(
            conn,
            clock,
            mail,
            SendIn.model_validate(
                {
                    "template": "news",
                    "audience": {
                        "filter": {"field": "email", "op": "starts_with", "value": prefix}
                    },
                }
            ),
        )
    while sends.dispatch_due(engine, clock, mail):
        pass
    with engine.begin() as conn:
        for contact, (state, change) in zip(ids, people, strict=True):
            if change.unsubscribe and not state.unsubscribed:
                unsubscribe(conn, clock, contact)
            if change.suppress and not state.suppressed:
                suppress(conn, clock, contact, reason="manual")
            if change.grant and not change.unsubscribe:
                record_consent(conn, clock, contact, status="granted", source="api")
    before = len(sink.received)
    while deliver_due(engine, clock, mail):
        pass
    clock.advance(timedelta(minutes=1))

    arrived = sink.per_recipient()
    for n, (state, change) in enumerate(people):
        address = f"{prefix}{n}@example.jp"
        allowed_when_queued = (
            state.consent == "granted" and not state.unsubscribed and not state.suppressed
        )
        allowed_at_delivery = allowed_when_queued and not change.unsubscribe and not change.suppress
        assert arrived[address] == (1 if allowed_at_delivery else 0), (address, state, change)
    assert len(sink.received) - before == sum(
        1 for n in range(len(people)) if arrived[f"{prefix}{n}@example.jp"]
    )
