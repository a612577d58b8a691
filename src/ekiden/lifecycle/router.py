"""REST API of stages and the hand-off to sales (admin key): /api/lifecycle/…,
/api/contacts/{id}/stage…, /api/hot-leads…, /api/tasks."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel

from ekiden.contacts.api_models import ContactId
from ekiden.errors import Malformed
from ekiden.lifecycle import definitions, feedback, moves, rules, stages, tasks
from ekiden.lifecycle.handoff_models import (
    Definition,
    DefinitionChanges,
    DefinitionIn,
    DefinitionStats,
    FeedbackIn,
    Handoff,
    Task,
    TaskChanges,
    TaskIn,
    Territory,
    TerritoryIn,
)
from ekiden.lifecycle.models import (
    MAX_ID,
    HistoryEntry,
    MoveIn,
    Rule,
    RuleChanges,
    RuleIn,
    Stage,
    StageKind,
    StagesIn,
    StageState,
)
from ekiden.web.deps import AdminKey, Conn, Ctx, ReadConn
from ekiden.web.pagination import DEFAULT_LIMIT, Page, check_limit, decode_cursor, encode_cursor

router = APIRouter(prefix="/api", tags=["lifecycle"])

RowId = Annotated[int, Path(ge=1, le=MAX_ID)]


def _cursor_number(cursor: str | None, field: str) -> int | None:
    key = decode_cursor(cursor, fields=(field,))
    if key is None:
        return None
    value = key[field]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ID:
        raise Malformed("the cursor is not valid; pass back the `next` value unchanged")
    return value


class AllStages(BaseModel):
    lifecycle: list[Stage]
    buying: list[Stage]


class Moved(BaseModel):
    state: StageState
    move: HistoryEntry


@router.get("/lifecycle/stages")
def all_stages(_: AdminKey, conn: ReadConn) -> AllStages:
    """Both orders: lifecycle stages and buying stages."""
    return AllStages(
        lifecycle=stages.list_stages(conn, "lifecycle"), buying=stages.list_stages(conn, "buying")
    )


@router.get("/lifecycle/stages/{kind}")
def list_stages(kind: StageKind, _: AdminKey, conn: ReadConn) -> Page[Stage]:
    return Page(items=stages.list_stages(conn, kind), next=None)


@router.put("/lifecycle/stages/{kind}")
def replace_stages(kind: StageKind, body: StagesIn, _: AdminKey, conn: Conn) -> Page[Stage]:
    """Replace the whole order of ``kind``; a stage contacts are in cannot be removed (409)."""
    return Page(items=stages.replace_stages(conn, kind, body.stages), next=None)


@router.get("/lifecycle/rules")
def list_rules(_: AdminKey, conn: ReadConn, kind: StageKind | None = None) -> Page[Rule]:
    return Page(items=rules.list_rules(conn, kind), next=None)


@router.post("/lifecycle/rules", status_code=201)
def create_rule(body: RuleIn, _: AdminKey, conn: Conn, ctx: Ctx) -> Rule:
    return rules.create_rule(conn, ctx.clock, body, ctx.settings.zone)


@router.get("/lifecycle/rules/{rule_id}")
def get_rule(rule_id: RowId, _: AdminKey, conn: ReadConn) -> Rule:
    return rules.get_rule(conn, rule_id)


@router.patch("/lifecycle/rules/{rule_id}")
def update_rule(rule_id: RowId, body: RuleChanges, _: AdminKey, conn: Conn, ctx: Ctx) -> Rule:
    return rules.update_rule(conn, ctx.clock, rule_id, body, ctx.settings.zone)


@router.delete("/lifecycle/rules/{rule_id}", status_code=204)
def delete_rule(rule_id: RowId, _: AdminKey, conn: Conn) -> Response:
    rules.delete_rule(conn, rule_id)
    return Response(status_code=204)


@router.get("/lifecycle/territories")
def list_territories(_: AdminKey, conn: ReadConn) -> Page[Territory]:
    return Page(items=definitions.list_territories(conn), next=None)


@router.post("/lifecycle/territories", status_code=201)
def create_territory(body: TerritoryIn, _: AdminKey, conn: Conn, ctx: Ctx) -> Territory:
    return definitions.create_territory(conn, ctx.clock, body, ctx.settings.zone)


@router.delete("/lifecycle/territories/{territory_id}", status_code=204)
def delete_territory(territory_id: RowId, _: AdminKey, conn: Conn) -> Response:
    definitions.delete_territory(conn, territory_id)
    return Response(status_code=204)


@router.get("/contacts/{contact_id}/stage")
def stage_state(contact_id: ContactId, _: AdminKey, conn: ReadConn) -> StageState:
    return moves.stage_state(conn, contact_id)


@router.post("/contacts/{contact_id}/stage")
def move_contact(contact_id: ContactId, body: MoveIn, key: AdminKey, conn: Conn, ctx: Ctx) -> Moved:
    """Move the contact by hand (e.g. sales sets meeting, won with a deal value, or lost).
    409 when the move skips or goes backwards where the stages do not allow it."""
    move = moves.move_contact(conn, ctx.clock, contact_id, body, moved_by=f"api:{key.prefix}")
    return Moved(state=moves.stage_state(conn, contact_id), move=move)


@router.get("/contacts/{contact_id}/stage-history")
def stage_history(
    contact_id: ContactId, _: AdminKey, conn: ReadConn, kind: StageKind | None = None
) -> Page[HistoryEntry]:
    """Every stage the contact entered, newest first."""
    moves.stage_state(conn, contact_id)  # 404 for an unknown contact
    return Page(items=moves.history(conn, contact_id, kind=kind), next=None)


@router.get("/hot-leads/definitions")
def list_definitions(_: AdminKey, conn: ReadConn) -> Page[Definition]:
    return Page(items=definitions.list_definitions(conn), next=None)


@router.post("/hot-leads/definitions", status_code=201)
def create_definition(body: DefinitionIn, _: AdminKey, conn: Conn, ctx: Ctx) -> Definition:
    return definitions.create_definition(conn, ctx.clock, body, ctx.settings.zone)


@router.get("/hot-leads/definitions/{key}")
def get_definition(key: str, _: AdminKey, conn: ReadConn) -> Definition:
    return definitions.get_definition(conn, key)


@router.patch("/hot-leads/definitions/{key}")
def update_definition(
    key: str, body: DefinitionChanges, _: AdminKey, conn: Conn, ctx: Ctx
) -> Definition:
    return definitions.update_definition(conn, ctx.clock, key, body, ctx.settings.zone)


@router.get("/hot-leads/definitions/{key}/stats")
def definition_stats(key: str, _: AdminKey, conn: ReadConn) -> DefinitionStats:
    """How many alerts it raised, sales' verdicts, the reasons for rejections, and how many
    of its leads were won afterwards."""
    return feedback.definition_stats(conn, key)


@router.delete("/hot-leads/definitions/{key}", status_code=204)
def delete_definition(key: str, _: AdminKey, conn: Conn) -> Response:
    definitions.delete_definition(conn, key)
    return Response(status_code=204)


@router.get("/hot-leads")
def list_handoffs(
    _: AdminKey,
    conn: ReadConn,
    contact_id: int | None = Query(None, ge=1, le=MAX_ID),
    definition: str | None = None,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Page[Handoff]:
    """Alerts raised (hand-offs), newest first, with sales' feedback."""
    items = feedback.list_handoffs(
        conn,
        contact_id=contact_id,
        definition=definition,
        before_id=_cursor_number(cursor, "id"),
        limit=check_limit(limit) + 1,
    )
    more = len(items) > limit
    items = items[:limit]
    return Page(items=items, next=encode_cursor({"id": items[-1].id}) if more else None)


@router.get("/hot-leads/{handoff_id}")
def get_handoff(handoff_id: RowId, _: AdminKey, conn: ReadConn) -> Handoff:
    return feedback.get_handoff(conn, handoff_id)


@router.post("/hot-leads/{handoff_id}/feedback")
def give_feedback(
    handoff_id: RowId, body: FeedbackIn, key: AdminKey, conn: Conn, ctx: Ctx
) -> Handoff:
    """Sales accepts the lead or rejects it (reason required), optionally moving its stage."""
    return feedback.record_feedback(conn, ctx.clock, handoff_id, body, given_by=f"api:{key.prefix}")


@router.get("/tasks")
def call_list(
    _: AdminKey,
    conn: ReadConn,
    status: Literal["open", "done", "cancelled", "all"] = "open",
    owner_id: int | None = Query(None, ge=1, le=MAX_ID),
    contact_id: int | None = Query(None, ge=1, le=MAX_ID),
    score: str | None = Query(None, description="order by this score (default: all summed)"),
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Page[Task]:
    """The sales call list, highest score first, then soonest due."""
    offset = _cursor_number(cursor, "offset") or 0
    items, more = tasks.call_list(
        conn,
        status=None if status == "all" else status,
        owner_id=owner_id,
        contact_id=contact_id,
        score_key=score,
        offset=offset,
        limit=check_limit(limit),
    )
    return Page(items=items, next=encode_cursor({"offset": offset + limit}) if more else None)


@router.post("/tasks", status_code=201)
def create_task(body: TaskIn, _: AdminKey, conn: Conn, ctx: Ctx) -> Task:
    return tasks.create_task(conn, ctx.clock, body)


@router.get("/tasks/{task_id}")
def get_task(task_id: RowId, _: AdminKey, conn: ReadConn) -> Task:
    return tasks.get_task(conn, task_id)


@router.patch("/tasks/{task_id}")
def update_task(task_id: RowId, body: TaskChanges, _: AdminKey, conn: Conn, ctx: Ctx) -> Task:
    """Change status (open / done / cancelled), outcome, due date or owner."""
    return tasks.update_task(conn, ctx.clock, task_id, body)
