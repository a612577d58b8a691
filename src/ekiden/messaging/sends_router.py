"""REST API for sends (/api/sends), email metrics and test sends (admin key)."""

from __future__ import annotations

from fastapi import APIRouter, Query

from ekiden.errors import NotFound
from ekiden.messaging import ab, metrics, sends
from ekiden.messaging.ab import AbResult
from ekiden.messaging.metrics import EmailMetrics
from ekiden.messaging.sending import pinned_template
from ekiden.messaging.sending_proof import ProofIn, ProofSent, send_proof
from ekiden.messaging.sends_models import AbTest, Send, SendIn
from ekiden.web.deps import AdminKey, Conn, Ctx, ReadConn
from ekiden.web.pagination import DEFAULT_LIMIT, Page, check_limit, decode_cursor, encode_cursor

router = APIRouter(prefix="/api", tags=["sends"])


@router.post("/sends", status_code=201)
def create_send(body: SendIn, _: AdminKey, conn: Conn, ctx: Ctx) -> Send:
    """Send a template to an audience now, or at ``scheduled_at``; the worker writes the
    messages and delivers them."""
    return sends.create_send(conn, ctx.clock, ctx.settings, body)


@router.get("/sends")
def list_sends(
    _: AdminKey,
    conn: ReadConn,
    cursor: str | None = None,
    limit: int = Query(DEFAULT_LIMIT),
) -> Page[Send]:
    key = decode_cursor(cursor, fields=("id",))
    items = sends.list_sends(
        conn, before=None if key is None else int(key["id"]), limit=check_limit(limit)
    )
    more = len(items) == limit
    return Page(items=items, next=encode_cursor({"id": items[-1].id}) if more else None)


@router.get("/sends/{send_id}")
def get_send(send_id: int, _: AdminKey, conn: ReadConn) -> Send:
    return sends.get_send(conn, send_id)


@router.post("/sends/{send_id}/cancel")
def cancel_send(send_id: int, _: AdminKey, conn: Conn, ctx: Ctx) -> Send:
    """Stop an unfinished send; messages not yet delivered are skipped ("cancelled")."""
    return sends.cancel_send(conn, ctx.clock, send_id)


@router.get("/sends/{send_id}/metrics")
def send_metrics(send_id: int, _: AdminKey, conn: ReadConn) -> EmailMetrics:
    sends.get_send(conn, send_id)
    return metrics.send_metrics(conn, send_id)


@router.get("/sends/{send_id}/ab")
def ab_standing(send_id: int, _: AdminKey, conn: ReadConn) -> AbResult:
    """The A/B test's result: the decided one once the window ended, else the standing now."""
    send = sends.get_send(conn, send_id)
    if send.ab is None:
        raise NotFound(f"send {send_id} has no A/B test")
    if send.ab_result is not None:
        return AbResult.model_validate(send.ab_result)
    return ab.ab_results(conn, send_id, AbTest.model_validate(send.ab))


@router.get("/emails/{key}/metrics")
def email_metrics(key: str, _: AdminKey, conn: ReadConn) -> EmailMetrics:
    """Every message of the template: its sends and its single messages (journeys)."""
    pinned_template(conn, key, None)
    return metrics.template_metrics(conn, key)


@router.post("/emails/{key}/test-send")
def send_test_email(key: str, body: ProofIn, _: AdminKey, conn: Conn, ctx: Ctx) -> ProofSent:
    """Render the template for a contact (or sample data) and send it at once to ``to``,
    marked as a test; it is no message of any send and never counts in metrics."""
    return send_proof(conn, ctx.clock, ctx.settings, key, body)
