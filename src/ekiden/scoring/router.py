"""REST API for scores under /api/scores, and each contact's scores, explained (admin key)."""

from __future__ import annotations

import yaml
from fastapi import APIRouter, Query, Response
from pydantic import BaseModel

from ekiden.errors import Invalid
from ekiden.scoring import definitions, service
from ekiden.scoring.models import (
    ContactScores,
    HistoryEntry,
    Recomputed,
    Rule,
    RuleIn,
    Score,
    ScoreIn,
)
from ekiden.web.deps import AdminKey, Conn, Ctx, ReadConn
from ekiden.web.pagination import DEFAULT_LIMIT, Page, check_limit, decode_cursor, encode_cursor

router = APIRouter(prefix="/api", tags=["scores"])


class Valid(BaseModel):
    valid: bool = True


class Leader(BaseModel):
    contact_id: int
    value: float


@router.get("/scores")
def list_scores(_: AdminKey, conn: ReadConn) -> Page[Score]:
    return Page(items=definitions.list_scores(conn), next=None)


@router.post("/scores", status_code=201)
def create_score(body: ScoreIn, _: AdminKey, conn: Conn, ctx: Ctx, recompute: bool = True) -> Score:
    """Create a score with its rules; with ``recompute`` (default) every contact's value is
    computed at once, otherwise the worker does it shortly."""
    definitions.create_score(conn, ctx.clock, body, ctx.settings.zone)
    if recompute:
        service.recompute_scores(conn, ctx.clock, ctx.settings, score_keys=[body.key])
    return definitions.get_score(conn, body.key)


@router.post("/scores/validate")
def validate_score(body: ScoreIn, _: AdminKey, conn: ReadConn, ctx: Ctx) -> Valid:
    """Check a definition without storing it: 422 naming the bad part, or ``{"valid": true}``."""
    definitions.validate_score(conn, body, ctx.settings.zone)
    return Valid()


@router.post("/scores/recompute")
def recompute_all(_: AdminKey, conn: Conn, ctx: Ctx) -> Recomputed:
    """Full recompute of every score for the whole population."""
    return service.recompute_scores(conn, ctx.clock, ctx.settings)


@router.get(
    "/scores/{key}.yaml",
    response_class=Response,
    responses={200: {"content": {"application/yaml": {}}}},
)
def score_yaml(key: str, _: AdminKey, conn: ReadConn) -> Response:
    """The definition as a YAML document (what ``ekiden scores apply`` reads)."""
    data = definitions.get_score(conn, key).as_input().model_dump(mode="json", exclude_none=True)
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    return Response(text, media_type="application/yaml")


@router.get("/scores/{key}")
def get_score(key: str, _: AdminKey, conn: ReadConn) -> Score:
    return definitions.get_score(conn, key)


@router.put("/scores/{key}")
def replace_score(
    key: str, body: ScoreIn, _: AdminKey, conn: Conn, ctx: Ctx, recompute: bool = True
) -> Score:
    """Replace the definition and all its rules."""
    definitions.replace_score(conn, ctx.clock, key, body, ctx.settings.zone)
    if recompute:
        service.recompute_scores(conn, ctx.clock, ctx.settings, score_keys=[key])
    return definitions.get_score(conn, key)


@router.delete("/scores/{key}", status_code=204)
def delete_score(key: str, _: AdminKey, conn: Conn) -> Response:
    definitions.delete_score(conn, key)
    return Response(status_code=204)


@router.post("/scores/{key}/recompute")
def recompute_score(key: str, _: AdminKey, conn: Conn, ctx: Ctx) -> Recomputed:
    return service.recompute_scores(conn, ctx.clock, ctx.settings, score_keys=[key])


@router.put("/scores/{key}/rules/{rule_key}")
def put_rule(
    key: str,
    rule_key: str,
    body: RuleIn,
    _: AdminKey,
    conn: Conn,
    ctx: Ctx,
    recompute: bool = True,
) -> Rule:
    """Create or replace one rule (the body's key must be ``rule_key``)."""
    if body.key != rule_key:
        raise Invalid(f"key: the body names {body.key!r} but the path names {rule_key!r}")
    rule = definitions.put_rule(conn, ctx.clock, key, body, ctx.settings.zone)
    if recompute:
        service.recompute_scores(conn, ctx.clock, ctx.settings, score_keys=[key])
    return rule


@router.delete("/scores/{key}/rules/{rule_key}", status_code=204)
def delete_rule(
    key: str, rule_key: str, _: AdminKey, conn: Conn, ctx: Ctx, recompute: bool = True
) -> Response:
    definitions.delete_rule(conn, ctx.clock, key, rule_key)
    if recompute:
        service.recompute_scores(conn, ctx.clock, ctx.settings, score_keys=[key])
    return Response(status_code=204)


@router.get("/scores/{key}/leaders")
def leaders(
    key: str, _: AdminKey, conn: ReadConn, limit: int = Query(DEFAULT_LIMIT)
) -> Page[Leader]:
    """Contacts with the highest values of the score first."""
    definitions.get_score(conn, key)
    found = service.leaders(conn, key, limit=check_limit(limit))
    return Page(items=[Leader(contact_id=c, value=v) for c, v in found], next=None)


@router.get("/contacts/{contact_id}/scores")
def contact_scores(contact_id: int, _: AdminKey, conn: ReadConn, ctx: Ctx) -> ContactScores:
    """Every score of the contact with the awards behind it: rule, event, points as awarded
    and what they count now after decay or expiry."""
    return service.explain(conn, ctx.clock, contact_id)


@router.get("/contacts/{contact_id}/scores/history")
def score_history(
    contact_id: int,
    _: AdminKey,
    conn: ReadConn,
    score: str | None = None,
    cursor: str | None = None,
    limit: int = Query(DEFAULT_LIMIT),
) -> Page[HistoryEntry]:
    """The contact's score changes, newest first (``score`` narrows to one score)."""
    after = decode_cursor(cursor, fields=("id",))
    size = check_limit(limit)
    if score is not None:
        definitions.get_score(conn, score)
    items = service.history(
        conn, contact_id, score_key=score, before_id=after["id"] if after else None, limit=size
    )
    following = encode_cursor({"id": items[-1].id}) if len(items) == size else None
    return Page(items=items, next=following)
