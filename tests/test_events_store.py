"""Writing the behaviour history: a batch stores exactly its rows, whichever way the database
receives them (COPY on PostgreSQL from COPY_FROM rows on, INSERT otherwise), and a message id
already stored is skipped, never doubled and never failing the batch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select

from ekiden.clock import FrozenClock
from ekiden.tracking.events import COPY_FROM, NewEvent, record_events
from ekiden.tracking.tables import events

MOMENT = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)


def _event(i: int, message_id: str | None) -> NewEvent:
    return NewEvent(
        type="page" if i % 2 else "track",
        name=None if i % 2 else "資料請求",
        occurred_at=MOMENT + timedelta(seconds=i),
        source="api",
        anonymous_id=f"anon-{i}",
        path="/pricing" if i % 2 else None,
        dwell_ms=1500 * i if i % 3 == 0 else None,
        properties={"url": f"https://example.jp/p/{i}", "日本語": "値\t\n\\", "n": i, "ok": True},
        context={"page": {"title": "料金 'プラン'"}},
        ip="203.0.113.9",
        user_agent="Mozilla/5.0",
        machine=i % 5 == 0,
        machine_reason="scanner" if i % 5 == 0 else None,
        message_id=message_id,
    )


def _rows(engine: Engine) -> list[tuple[object, ...]]:
    columns = [c for c in events.c if c.name not in ("id", "received_at")]
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(*columns).order_by(events.c.occurred_at))]


@pytest.mark.parametrize("size", [COPY_FROM - 1, COPY_FROM, 3 * COPY_FROM])
def test_a_batch_stores_exactly_its_rows(engine: Engine, clock: FrozenClock, size: int) -> None:
    batch = [_event(i, f"m-{i}" if i % 4 else None) for i in range(size)]
    with engine.begin() as conn:
        record_events(conn, clock, batch)
    rows = _rows(engine)
    assert len(rows) == size
    first = rows[1]  # event 1: a page view with a message id, human
    assert first[:4] == ("page", None, None, "anon-1")
    names = [c.name for c in events.c if c.name not in ("id", "received_at")]
    stored = dict(zip(names, first, strict=True))
    assert stored["properties"] == {
        "url": "https://example.jp/p/1", "日本語": "値\t\n\\", "n": 1, "ok": True,
    }  # fmt: skip
    assert stored["context"] == {"page": {"title": "料金 'プラン'"}}
    assert stored["path"] == "/pricing"
    assert stored["machine"] is False
    assert stored["message_id"] == "m-1"
    assert stored["occurred_at"] == MOMENT + timedelta(seconds=1)
    machine = dict(zip(names, rows[5], strict=True))
    assert (machine["machine"], machine["machine_reason"], machine["dwell_ms"]) == (
        True, "scanner", None,
    )  # fmt: skip
    assert dict(zip(names, rows[3], strict=True))["dwell_ms"] == 4500


def test_a_stored_message_id_is_skipped_not_doubled(engine: Engine, clock: FrozenClock) -> None:
    """A concurrent batch stored one of these messages first: the COPY is refused as a whole
    and the rows go in again by INSERT … ON CONFLICT DO NOTHING, without the duplicate."""
    with engine.begin() as conn:
        record_events(conn, clock, [_event(7, "m-7")])
    batch = [_event(i, f"m-{i}") for i in range(2 * COPY_FROM)]
    with engine.begin() as conn:
        record_events(conn, clock, batch)
        # the transaction goes on normally after the refused COPY
        record_events(conn, clock, [_event(1000, "m-1000")])
    rows = _rows(engine)
    message_ids = sorted(str(r[-2]) for r in rows)
    assert len(rows) == 2 * COPY_FROM + 1
    assert message_ids.count("m-7") == 1
    assert "m-1000" in message_ids
