"""The engine runs a batch node by node, with set-based versions of the busiest actions and
of the contact loader (``ekiden.journeys.bulk``). They must write exactly what the one-row
code writes: the same journey is played once with the bulk actions switched off and once
with them on, over two sets of alike contacts, and everything written is compared."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import Engine, insert, text

from ekiden.clock import FrozenClock
from ekiden.config import Settings
from ekiden.contacts.models import ContactChanges
from ekiden.contacts.service import upsert_contact
from ekiden.contacts.tables import accounts
from ekiden.contacts.tags import add_tags
from ekiden.journeys import bulk, service
from ekiden.journeys.engine import run_due
from ekiden.lifecycle.models import MoveIn
from ekiden.lifecycle.moves import move_contact
from ekiden.messaging.models import EmailTemplateIn
from ekiden.messaging.store import create_template
from ekiden.rules.loader import load_contact_data
from ekiden.segments import lists
from ekiden.segments.models import ListIn
from ekiden.tracking.events import NewEvent, record_events


def journey(key: str) -> dict[str, Any]:
    return {
        "key": key,
        "name": key,
        "entry": {"triggers": [{"manual": True}]},
        "start": "mail",
        "nodes": [
            {"id": "mail", "type": "send_email", "email": "hello", "next": "decide"},
            {
                "id": "decide",
                "type": "branch",
                "branches": [
                    {"when": {"any": [{"tag": "vip"}, {"event": "page"}]}, "next": "hook"}
                ],
                "otherwise": "tag",
            },
            {"id": "hook", "type": "webhook", "url": "http://partner.example/a",
             "body": {"campaign": "winter"}, "next": "tag"},
            {"id": "tag", "type": "add_tag", "tag": "done", "next": "stage"},
            {"id": "stage", "type": "change_stage", "stage": "hot"},
        ],
    }  # fmt: skip


def alike_contacts(engine: Engine, clock: FrozenClock, prefix: str) -> list[int]:
    """Five contacts: plain, tagged vip, with a page view, already hot, already tagged done."""
    ids = []
    with engine.begin() as conn:
        for n in range(5):
            ids.append(
                upsert_contact(
                    conn,
                    clock,
                    email=f"{prefix}{n}@example.jp",
                    changes=ContactChanges(last_name=f"山田{n}"),
                    source_kind="api",
                ).contact_id
            )
        add_tags(conn, clock, ids[1], ["vip"])
        record_events(
            conn,
            clock,
            [NewEvent(type="page", occurred_at=clock.now(), source="api", contact_id=ids[2],
                      path="/pricing")],
        )  # fmt: skip
        move_contact(conn, clock, ids[3], MoveIn(stage="hot", kind="lifecycle"), moved_by="t")
        add_tags(conn, clock, ids[4], ["done"])
        conn.execute(text("DELETE FROM dirty_contacts"))
    return ids


def written(engine: Engine, key: str, ids: list[int]) -> dict[str, Any]:
    """What the journey ``key`` wrote for ``ids``, with ids replaced by positions."""
    at = {contact: n for n, contact in enumerate(ids)}
    params = {"ids": ids}
    with engine.connect() as conn:
        enrolment_of = {
            r.id: r.contact_id
            for r in conn.execute(
                text("SELECT e.id, e.contact_id FROM enrolments e JOIN journeys j "
                     "ON j.id = e.journey_id WHERE j.key = :key"), {"key": key},
            )
        }  # fmt: skip

        def rows(sql: str) -> list[Any]:
            found = conn.execute(text(sql).bindparams(), params).all()
            return sorted(found, key=repr)

        def clean(value: Any) -> Any:
            if isinstance(value, str) and value.startswith("{"):  # JSON text on SQLite
                value = json.loads(value)
            if isinstance(value, dict):
                out = {}
                for k, v in value.items():
                    if k in ("message_id", "outbox_id", "enrolment") and v is not None:
                        v = "<id>"
                    elif k == "id" and v in at:
                        v = at[v]
                    elif k == "journey":
                        v = "<key>"
                    elif k == "email" and isinstance(v, str):
                        v = v.replace(key, "<key>", 1)
                    out[k] = clean(v)
                return out
            return value

        in_ids = "(" + ", ".join(map(str, ids)) + ")"
        steps = [
            (at[enrolment_of[r.enrolment_id]], r.node, r.node_type, r.result, clean(r.detail))
            for r in rows(f"SELECT * FROM enrolment_steps WHERE contact_id IN {in_ids}")
        ]
        outbox = [
            (at[r.contact_id], r.kind, r.status, r.key.split(":")[0], clean(r.payload))
            for r in rows(f"SELECT * FROM outbox WHERE contact_id IN {in_ids}")
        ]
        messages = [
            (at[r.contact_id], r.template_key, r.template_version, r.category, r.status)
            for r in rows(f"SELECT * FROM email_messages WHERE contact_id IN {in_ids}")
        ]
        moves = [
            (at[r.contact_id], r.kind, r.from_stage, r.to_stage, r.source,
             r.moved_by.replace(key, "<key>") if r.moved_by else None)
            for r in rows(f"SELECT * FROM stage_history WHERE contact_id IN {in_ids}")
        ]  # fmt: skip
        events = [
            (at[r.contact_id], r.type, r.source, clean(r.properties))
            for r in rows(f"SELECT * FROM events WHERE contact_id IN {in_ids}")
        ]
        tags = [
            (at[r.contact_id], r.tag)
            for r in rows(f"SELECT * FROM contact_tags WHERE contact_id IN {in_ids}")
        ]
        dirty = sorted(
            at[r.contact_id]
            for r in rows(f"SELECT * FROM dirty_contacts WHERE contact_id IN {in_ids}")
        )
        states = [
            (at[r.contact_id], r.node, r.state, r.steps, r.attempts)
            for r in rows(f"SELECT * FROM enrolments WHERE contact_id IN {in_ids}")
        ]
    return {
        "steps": sorted(steps, key=repr), "outbox": sorted(outbox, key=repr),
        "messages": sorted(messages), "moves": sorted(moves, key=repr),
        "events": sorted(events, key=repr), "tags": sorted(tags), "dirty": dirty,
        "states": sorted(states),
    }  # fmt: skip


def test_bulk_actions_write_what_the_one_row_actions_write(
    engine: Engine, clock: FrozenClock, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with engine.begin() as conn:
        create_template(
            conn, clock, EmailTemplateIn(key="hello", name="hello", subject="やあ", html="<p>x</p>")
        )
    results = {}
    for key, bulk_on in (("one", False), ("many", True)):
        ids = alike_contacts(engine, clock, key)
        with engine.begin() as conn:
            service.create_journey(conn, clock, journey(key), settings.zone)
            service.activate_journey(conn, clock, key, settings.zone)
            service.enrol_contacts(conn, clock, key, ids, zone=settings.zone)
        with monkeypatch.context() as patch:
            if not bulk_on:
                patch.setattr(bulk, "BULK", {})
            assert run_due(engine, clock, settings) == len(ids)
            assert run_due(engine, clock, settings) == 0
        results[key] = written(engine, key, ids)
    assert results["many"] == results["one"]
    one = results["one"]
    assert [s for s in one["states"] if s[2] != "completed"] == []
    # the contact already hot: its move recorded as skipped
    assert [s[0] for s in one["steps"] if "skipped" in s[4]] == [3]
    assert sorted(c for c, kind, *_ in one["outbox"] if kind == "webhook") == [1, 2]
    assert len(one["messages"]) == 5


def test_the_bulk_contact_loader_reads_what_the_one_contact_loader_reads(
    engine: Engine, clock: FrozenClock
) -> None:
    ids = alike_contacts(engine, clock, "load")
    with engine.begin() as conn:
        account = conn.execute(
            insert(accounts).values(name="駅伝工業", custom={"tier": "gold"},
                                    created_at=clock.now(), updated_at=clock.now())
            .returning(accounts.c.id)
        ).scalar_one()  # fmt: skip
        conn.execute(text(f"UPDATE contacts SET account_id = {account} WHERE id = {ids[0]}"))
        lists.create_list(conn, clock, ListIn(slug="vip", name="VIP"))
        lists.add_members(conn, clock, "vip", [ids[0], ids[2]], source="api")
        for types in (None, {"page"}, set()):
            many = bulk.load_contacts_data(conn, [*ids, 999_999], event_types=types)
            assert sorted(many) == sorted(ids)  # an unknown id is simply not there
            for contact in ids:
                assert many[contact] == load_contact_data(conn, contact, event_types=types)
        assert many[ids[0]].account is not None
        assert many[ids[0]].lists == {"vip"}
