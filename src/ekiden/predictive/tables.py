from __future__ import annotations

from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Table,
)

from ekiden.db.schema import Id, Json, UTCDateTime, metadata

# Every trained model, kept: version n+1 replaces n for scoring; older rows stay for reports.
predictive_models = Table(
    "predictive_models",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("version", Integer, nullable=False, unique=True),
    Column("trained_at", UTCDateTime, nullable=False),
    # the definition of the outcome: filter-language conditions and the observation window
    Column("outcome", Json, nullable=False),
    Column("positives", Integer, nullable=False),
    Column("negatives", Integer, nullable=False),
    # hold-out metrics (auc, brier, deciles, calibration) and per-column importance
    Column("metrics", Json, nullable=False),
    Column("features", Json, nullable=False),
    # the fitted model, pickled; written and read only by the server itself
    Column("model", LargeBinary, nullable=False),
)

# The current probability of each open lead, from the model version that scored it.
predictions = Table(
    "predictions",
    metadata,
    Column(
        "contact_id",
        Id,
        ForeignKey("contacts.id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("model_id", Id, ForeignKey("predictive_models.id", ondelete="CASCADE"), nullable=False),
    Column("probability", Float, nullable=False),
    Column("factors", Json, nullable=False),  # [{feature, value, contribution}] strongest first
    Column("scored_at", UTCDateTime, nullable=False),
    Index("ix_predictions_probability", "probability"),
    Index("ix_predictions_model_id", "model_id"),
)
