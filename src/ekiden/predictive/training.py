"""Learning from contacts with known outcomes, keeping the model, scoring open leads.

``train`` refuses (Invalid, nothing stored) when either outcome has fewer than ``min_each``
contacts. Otherwise it measures the model on a stratified hold-out quarter, fits the stored
model on every labelled contact, saves it as the next version and scores every open lead.
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import sklearn
from sqlalchemy import Connection, Engine, delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from ekiden.clock import Clock
from ekiden.config import Settings
from ekiden.errors import Conflict, Invalid, NotFound
from ekiden.predictive.evaluation import Evaluation, holdout
from ekiden.predictive.features import contact_features
from ekiden.predictive.model import Table, TabularModel, fit_model
from ekiden.predictive.outcomes import OutcomeSpec, classify
from ekiden.predictive.tables import predictions, predictive_models

RESCORE_AFTER = timedelta(hours=24)
MIN_EACH = 30  # per outcome: fewer leave the hold-out too small to say anything
TOP_FACTORS = 5
_INSERT_CHUNK = 5_000

log = logging.getLogger("ekiden.predictive")


@dataclass(frozen=True)
class TrainedModel:
    id: int
    version: int
    positives: int
    negatives: int
    scored: int
    evaluation: Evaluation
    importance: dict[str, float]


def train(
    conn: Connection,
    clock: Clock,
    spec: OutcomeSpec,
    zone: ZoneInfo,
    *,
    min_each: int = MIN_EACH,
) -> TrainedModel:
    now = clock.now()
    outcomes = classify(conn, now, spec, zone)
    positives, negatives = len(outcomes.converted), len(outcomes.not_converted)
    if positives < min_each or negatives < min_each:
        raise Invalid(
            f"training needs at least {min_each} converted and {min_each} not-converted "
            f"contacts; there are {positives} converted and {negatives} not converted",
            code="too_few_outcomes",
            details={"needed": min_each, "converted": positives, "not_converted": negatives},
        )
    ids, labels = outcomes.labelled()
    target = np.asarray(labels, dtype=np.int_)
    # one read of the history for the labelled contacts and the open leads together
    everyone = sorted(set(ids) | set(outcomes.open))
    features = contact_features(conn, now, everyone)
    at = {cid: i for i, cid in enumerate(everyone)}
    table = Table(features.columns, [features.rows[at[cid]] for cid in ids])
    evaluation = holdout(table, target)
    model = fit_model(table, target)
    version = (conn.execute(select(func.max(predictive_models.c.version))).scalar() or 0) + 1
    importance = model.coefficients()
    statement = (
        insert(predictive_models)
        .values(
            version=version,
            trained_at=now,
            outcome=spec.model_dump(),
            positives=positives,
            negatives=negatives,
            metrics=_metrics(evaluation, importance),
            features=model.columns,
            model=pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL),
        )
        .returning(predictive_models.c.id)
    )
    try:
        with conn.begin_nested():
            model_id = conn.execute(statement).scalar_one()
    except IntegrityError:
        raise Conflict(
            f"model version {version} was stored by another training; try again"
        ) from None
    open_leads = Table(features.columns, [features.rows[at[cid]] for cid in outcomes.open])
    scored = _score(conn, clock, model_id, model, outcomes.open, open_leads)
    return TrainedModel(model_id, version, positives, negatives, scored, evaluation, importance)


def score_open_leads(conn: Connection, clock: Clock, zone: ZoneInfo) -> int:
    """Score every open lead with the newest model; NotFound when none was trained,
    Conflict when the stored model cannot be read (written by another library version)."""
    row = _newest(conn)
    if row is None:
        raise NotFound("no predictive model has been trained yet (ekiden model train)")
    model = _load(row.model)
    outcomes = classify(conn, clock.now(), OutcomeSpec.model_validate(row.outcome), zone)
    table = contact_features(conn, clock.now(), outcomes.open, model.columns)
    return _score(conn, clock, row.id, model, outcomes.open, table)


def rescore_due(engine: Engine, clock: Clock, settings: Settings) -> int:
    """Periodic step: when the newest model's predictions are ``RESCORE_AFTER`` old, score
    every open lead again so new behaviour counts; returns how many were scored (0: not due).
    Features are read outside the writing transaction, which stays short."""
    now = clock.now()
    with engine.connect() as conn:
        row = _newest(conn)
        if row is None or not _due(conn, row.trained_at, now):
            return 0
        try:
            model = _load(row.model)
        except Conflict as exc:
            log.warning("predictive rescoring skipped: %s", exc.message)
            return 0
        outcomes = classify(conn, now, OutcomeSpec.model_validate(row.outcome), settings.zone)
        table = contact_features(conn, now, outcomes.open, model.columns)
    with engine.begin() as conn:
        if not _due(conn, row.trained_at, now):  # another worker was quicker
            return 0
        return _score(conn, clock, row.id, model, outcomes.open, table)


def _newest(conn: Connection) -> Any:
    c = predictive_models.c
    query = select(c.id, c.outcome, c.model, c.trained_at).order_by(c.version.desc()).limit(1)
    return conn.execute(query).first()


def _due(conn: Connection, trained_at: datetime, now: datetime) -> bool:
    last = conn.execute(select(func.max(predictions.c.scored_at))).scalar()
    return bool(now - max(last or trained_at, trained_at) >= RESCORE_AFTER)


def _load(data: bytes) -> TabularModel:
    try:
        model: TabularModel = pickle.loads(data)  # noqa: S301 - written by this server only
    except (AttributeError, ImportError, pickle.UnpicklingError, TypeError) as exc:
        raise Conflict(
            f"the stored model cannot be read by this version of the software ({exc}); "
            "train a new one with `ekiden model train`"
        ) from None
    return model


def _score(
    conn: Connection,
    clock: Clock,
    model_id: int,
    model: TabularModel,
    open_ids: list[int],
    table: Table,
) -> int:
    now = clock.now()
    conn.execute(delete(predictions))
    if not open_ids:
        return 0
    explained = model.explain(table, top=TOP_FACTORS)
    for start in range(0, len(open_ids), _INSERT_CHUNK):
        chunk = range(start, min(start + _INSERT_CHUNK, len(open_ids)))
        conn.execute(
            insert(predictions),
            [
                {
                    "contact_id": open_ids[i],
                    "model_id": model_id,
                    "probability": explained[i][0],
                    "factors": [
                        {"feature": f.feature, "value": f.value, "contribution": f.contribution}
                        for f in explained[i][1]
                    ],
                    "scored_at": now,
                }
                for i in chunk
            ],
        )
    return len(open_ids)


def _metrics(evaluation: Evaluation, importance: dict[str, float]) -> dict[str, Any]:
    data = asdict(evaluation)
    data["importance"] = {k: round(v, 4) for k, v in importance.items()}
    # a pickled model loads reliably only with the library version that wrote it
    data["library"] = f"scikit-learn {sklearn.__version__}"
    return data
