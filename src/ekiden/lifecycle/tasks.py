"""The sales call list: tasks with due dates, status and outcome, highest score first."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select, update

from ekiden.clock import Clock
from ekiden.contacts.service import require_live_contact
from ekiden.errors import Conflict, Invalid, NotFound
from ekiden.lifecycle.definitions import require_user
from ekiden.lifecycle.handoff_models import Task, TaskChanges, TaskIn, TaskStatus
from ekiden.lifecycle.tables import sales_tasks
from ekiden.scoring.service import current_scores

_FAR_FUTURE = float("inf")


def _to_model(row: Any) -> Task:
    return Task.model_validate(dict(row._mapping))


def get_task(conn: Connection, task_id: int) -> Task:
    row = conn.execute(select(sales_tasks).where(sales_tasks.c.id == task_id)).first()
    if row is None:
        raise NotFound(f"no task with id {task_id}")
    task = _to_model(row)
    task.scores = current_scores(conn, [task.contact_id]).get(task.contact_id, {})
    return task


def create_task(conn: Connection, clock: Clock, data: TaskIn) -> Task:
    require_live_contact(conn, data.contact_id)
    if data.owner_id is not None:
        require_user(conn, data.owner_id)
    now = clock.now()
    task_id = conn.execute(
        insert(sales_tasks)
        .values(
            contact_id=data.contact_id,
            kind=data.kind,
            title=data.title,
            owner_id=data.owner_id,
            due_at=data.due_at,
            status="open",
            created_at=now,
            updated_at=now,
        )
        .returning(sales_tasks.c.id)
    ).scalar_one()
    return get_task(conn, task_id)


def update_task(conn: Connection, clock: Clock, task_id: int, changes: TaskChanges) -> Task:
    """Change a task; closing it (done / cancelled) stamps ``closed_at``. A closed task can
    only be reopened (status open) before anything else changes (Conflict otherwise)."""
    current = get_task(conn, task_id)
    given = changes.model_dump(exclude_unset=True)
    if "status" in given and given["status"] is None:
        raise Invalid("status cannot be null; use open, done or cancelled", code="invalid_status")
    if current.status != "open" and given.get("status") != "open" and given:
        raise Conflict(f"task {task_id} is {current.status}; reopen it first", code="task_closed")
    if changes.owner_id is not None:
        require_user(conn, changes.owner_id)
    if not given:
        return current
    now = clock.now()
    values: dict[str, Any] = {**given, "updated_at": now}
    if changes.status in ("done", "cancelled"):
        values["closed_at"] = now
    elif changes.status == "open":
        values["closed_at"] = None
    conn.execute(update(sales_tasks).where(sales_tasks.c.id == task_id).values(**values))
    updated = get_task(conn, task_id)
    if updated.outcome != current.outcome or updated.status != current.status:
        _record_outcome(conn, clock, updated, current.status)
    return updated


def _record_outcome(conn: Connection, clock: Clock, task: Task, previous: str) -> None:
    """A ``task_outcome`` event for the contact (status or outcome changed), so journeys can
    wait on it ("the call did not connect") and wake at once: the contact is queued for the
    worker in this transaction."""
    from ekiden.segments.dirty import mark_dirty
    from ekiden.tracking.events import NewEvent, record_events

    event = NewEvent(
        type="task_outcome",
        occurred_at=clock.now(),
        source="system",
        contact_id=task.contact_id,
        properties={
            "task_id": task.id,
            "kind": task.kind,
            "title": task.title,
            "status": task.status,
            "previous_status": previous,
            "outcome": task.outcome,
            "owner_id": task.owner_id,
        },
    )
    record_events(conn, clock, [event])
    mark_dirty(conn, clock, [task.contact_id])  # system events do not queue by themselves


def call_list(
    conn: Connection,
    *,
    status: TaskStatus | None = "open",
    owner_id: int | None = None,
    contact_id: int | None = None,
    score_key: str | None = None,
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[Task], bool]:
    """Tasks ordered by the contact's score, highest first (``score_key``, or the sum of all
    the contact's scores), then by due date, soonest first. Returns the page and whether
    more follow."""
    query = select(sales_tasks)
    if status is not None:
        query = query.where(sales_tasks.c.status == status)
    if owner_id is not None:
        query = query.where(sales_tasks.c.owner_id == owner_id)
    if contact_id is not None:
        query = query.where(sales_tasks.c.contact_id == contact_id)
    tasks = [_to_model(r) for r in conn.execute(query)]
    scores = current_scores(conn, sorted({t.contact_id for t in tasks}))
    for task in tasks:
        task.scores = scores.get(task.contact_id, {})
        if score_key is None:
            task.score = sum(task.scores.values()) if task.scores else None
        else:
            task.score = task.scores.get(score_key)
    tasks.sort(
        key=lambda t: (
            t.score is None,
            -(t.score or 0.0),
            t.due_at.timestamp() if t.due_at else _FAR_FUTURE,
            t.id,
        )
    )
    return tasks[offset : offset + limit], len(tasks) > offset + limit
