"""REST API: predictions of open leads, trained models, training, and score calibration."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from ekiden.errors import Malformed
from ekiden.predictive import service
from ekiden.predictive.calibration import Calibration
from ekiden.predictive.evaluation import Evaluation
from ekiden.predictive.outcomes import OutcomeSpec
from ekiden.predictive.score_calibration import score_calibration
from ekiden.predictive.training import MIN_EACH, train
from ekiden.web.deps import AdminKey, Conn, Ctx, ReadConn
from ekiden.web.pagination import DEFAULT_LIMIT, Page, check_limit

router = APIRouter(prefix="/api", tags=["predictive"])


class TrainIn(OutcomeSpec):
    model_config = ConfigDict(extra="forbid", frozen=True)
    min_each: int = Field(MIN_EACH, ge=10, description="contacts needed of each outcome")


class TrainedOut(BaseModel):
    version: int
    positives: int
    negatives: int
    scored: int
    evaluation: Evaluation
    importance: dict[str, float]


@router.get("/contacts/{contact_id}/prediction")
def contact_prediction(contact_id: int, _: AdminKey, conn: ReadConn) -> service.Prediction:
    """The contact's probability of converting and the factors that pushed it most."""
    return service.get_prediction(conn, contact_id)


@router.get("/predictive/leads")
def leads(
    _: AdminKey, conn: ReadConn, cursor: str | None = None, limit: int = Query(DEFAULT_LIMIT)
) -> Page[service.Prediction]:
    """Open leads, most likely to convert first."""
    items, token = service.leads_by_probability(conn, limit=check_limit(limit), cursor=cursor)
    return Page(items=items, next=token)


@router.get("/predictive/models")
def models(_: AdminKey, conn: ReadConn) -> Page[service.ModelSummary]:
    return Page(items=service.list_models(conn), next=None)


@router.get("/predictive/models/{version}")
def model(version: int, _: AdminKey, conn: ReadConn) -> service.ModelSummary:
    return service.get_model(conn, version)


@router.post("/predictive/train", status_code=201)
def train_model(body: TrainIn, _: AdminKey, conn: Conn, ctx: Ctx) -> TrainedOut:
    """Train a new version on contacts with known outcomes and score every open lead."""
    spec = OutcomeSpec(outcome=body.outcome, lost=body.lost, window_days=body.window_days)
    done = train(conn, ctx.clock, spec, ctx.settings.zone, min_each=body.min_each)
    return TrainedOut(
        version=done.version,
        positives=done.positives,
        negatives=done.negatives,
        scored=done.scored,
        evaluation=done.evaluation,
        importance=done.importance,
    )


@router.get("/scores/{key}/calibration")
def calibration(
    key: str,
    _: AdminKey,
    conn: ReadConn,
    ctx: Ctx,
    outcome: str | None = Query(None, description="converted: a filter as JSON"),
    lost: str | None = Query(None, description="not converted: a filter as JSON"),
    window_days: int = Query(90, ge=1, le=3650),
    bands: str | None = Query(None, description="lower edges of score bands, e.g. 0,10,30"),
) -> Calibration:
    """Per rule: lift of conversion with a 95 % interval and suggested points; by score band:
    conversion rate."""
    values: dict[str, Any] = {"window_days": window_days}
    if outcome is not None:
        values["outcome"] = _json(outcome, "outcome")
    if lost is not None:
        values["lost"] = _json(lost, "lost")
    spec = OutcomeSpec.model_validate(values)
    return score_calibration(conn, ctx.clock, key, spec, ctx.settings.zone, bands=_bands(bands))


def _json(text: str, name: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise Malformed(f"{name}: not valid JSON") from None
    if not isinstance(value, dict):
        raise Malformed(f"{name}: must be one filter object")
    return value


def _bands(text: str | None) -> list[float] | None:
    if not text:
        return None
    try:
        edges = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise Malformed("bands: use numbers separated by commas, e.g. 0,10,30") from None
    return sorted(set(edges)) or None
