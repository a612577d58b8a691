"""REST API of campaign costs (admin key): ``/api/campaign-costs``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from ekiden.analytics import costs
from ekiden.analytics.costs import Cost, CostIn
from ekiden.lifecycle.models import MAX_ID
from ekiden.web.deps import AdminKey, Conn, Ctx, ReadConn
from ekiden.web.pagination import Page

router = APIRouter(prefix="/api", tags=["reports"])

CostId = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.get("/campaign-costs")
def list_costs(
    _: AdminKey,
    conn: ReadConn,
    campaign: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[Cost]:
    """Every cost (of one campaign with ``campaign=``), by campaign and first day."""
    return Page(items=costs.list_costs(conn, campaign), next=None)


@router.post("/campaign-costs", status_code=201)
def create_cost(body: CostIn, _: AdminKey, conn: Conn, ctx: Ctx) -> Cost:
    return costs.create_cost(conn, ctx.clock, body)


@router.get("/campaign-costs/{cost_id}")
def get_cost(cost_id: CostId, _: AdminKey, conn: ReadConn) -> Cost:
    return costs.get_cost(conn, cost_id)


@router.put("/campaign-costs/{cost_id}")
def replace_cost(cost_id: CostId, body: CostIn, _: AdminKey, conn: Conn, ctx: Ctx) -> Cost:
    return costs.replace_cost(conn, ctx.clock, cost_id, body)


@router.delete("/campaign-costs/{cost_id}", status_code=204)
def delete_cost(cost_id: CostId, _: AdminKey, conn: Conn) -> Response:
    costs.delete_cost(conn, cost_id)
    return Response(status_code=204)
