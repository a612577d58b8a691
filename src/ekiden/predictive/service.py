"""Reading stored models and predictions (for the API and the CLI)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Connection, and_, or_, select

from ekiden.errors import NotFound
from ekiden.predictive.tables import predictions, predictive_models
from ekiden.web.pagination import decode_cursor, encode_cursor


class FactorOut(BaseModel):
    feature: str
    value: float | int | str | None
    contribution: float  # log-odds; positive raises the probability


class Prediction(BaseModel):
    contact_id: int
    probability: float
    factors: list[FactorOut]
    model_version: int
    scored_at: datetime


class ModelSummary(BaseModel):
    version: int
    trained_at: datetime
    outcome: dict[str, Any]
    positives: int
    negatives: int
    features: list[str]
    metrics: dict[str, Any]


_PREDICTION = select(
    predictions.c.contact_id,
    predictions.c.probability,
    predictions.c.factors,
    predictive_models.c.version,
    predictions.c.scored_at,
).select_from(predictions.join(predictive_models))


def _prediction(row: Any) -> Prediction:
    return Prediction(
        contact_id=row.contact_id,
        probability=row.probability,
        factors=[FactorOut.model_validate(f) for f in row.factors],
        model_version=row.version,
        scored_at=row.scored_at,
    )


def get_prediction(conn: Connection, contact_id: int) -> Prediction:
    """NotFound when the contact has no prediction (unknown, converted, lost, or never scored)."""
    row = conn.execute(_PREDICTION.where(predictions.c.contact_id == contact_id)).first()
    if row is None:
        raise NotFound(
            f"contact {contact_id} has no prediction (only open leads are scored, after "
            "a model was trained)"
        )
    return _prediction(row)


def leads_by_probability(
    conn: Connection, *, limit: int, cursor: str | None
) -> tuple[list[Prediction], str | None]:
    """Open leads, most likely to convert first (ties: lower contact id first)."""
    after = decode_cursor(cursor, fields=("p", "id"))
    query = _PREDICTION.order_by(predictions.c.probability.desc(), predictions.c.contact_id)
    if after is not None:
        query = query.where(
            or_(
                predictions.c.probability < after["p"],
                and_(
                    predictions.c.probability == after["p"], predictions.c.contact_id > after["id"]
                ),
            )
        )
    rows = conn.execute(query.limit(limit + 1)).all()
    items = [_prediction(r) for r in rows[:limit]]
    more = len(rows) > limit
    last = items[-1] if items else None
    token = encode_cursor({"p": last.probability, "id": last.contact_id}) if more and last else None
    return items, token


def list_models(conn: Connection) -> list[ModelSummary]:
    """Every trained version, newest first (metrics from its hold-out evaluation)."""
    rows = conn.execute(_models().order_by(predictive_models.c.version.desc()))
    return [ModelSummary.model_validate(r._mapping) for r in rows]


def get_model(conn: Connection, version: int | None = None) -> ModelSummary:
    """The given version, or the newest; NotFound when there is none."""
    query = _models().order_by(predictive_models.c.version.desc()).limit(1)
    if version is not None:
        query = query.where(predictive_models.c.version == version)
    row = conn.execute(query).first()
    if row is None:
        what = f"version {version}" if version is not None else "any version"
        raise NotFound(f"no predictive model {what}; train one with `ekiden model train`")
    return ModelSummary.model_validate(row._mapping)


def _models() -> Any:
    c = predictive_models.c
    return select(
        c.version, c.trained_at, c.outcome, c.positives, c.negatives, c.features, c.metrics
    )
