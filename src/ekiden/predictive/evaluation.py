"""How good a model is on data it did not learn from: ROC-AUC, lift by decile, calibration.

``holdout`` keeps a stratified share aside; ``cross_validate`` runs stratified k-fold and
pools the out-of-fold probabilities, so every row is scored by a model that never saw it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold, train_test_split

from ekiden.predictive.model import Table, fit_model


@dataclass(frozen=True)
class Decile:
    decile: int  # 1 = the tenth with the highest probabilities
    rows: int
    positives: int
    rate: float
    lift: float  # rate / overall rate
    captured: float  # cumulative share of all positives found in deciles 1..this one


@dataclass(frozen=True)
class CalibrationBin:
    low: float
    high: float
    rows: int
    mean_predicted: float
    observed_rate: float


@dataclass(frozen=True)
class Evaluation:
    rows: int
    positives: int
    auc: float
    brier: float
    deciles: list[Decile]
    calibration: list[CalibrationBin]
    fold_aucs: list[float] = field(default_factory=list)
    method: str = "holdout"


def evaluate(labels: NDArray[np.int_], probabilities: NDArray[np.float64]) -> Evaluation:
    """Metrics of ``probabilities`` against 0/1 ``labels`` (both classes must occur)."""
    return Evaluation(
        rows=len(labels),
        positives=int(labels.sum()),
        auc=float(roc_auc_score(labels, probabilities)),
        brier=float(brier_score_loss(labels, probabilities)),
        deciles=lift_by_decile(labels, probabilities),
        calibration=reliability(labels, probabilities),
    )


def lift_by_decile(labels: NDArray[np.int_], probabilities: NDArray[np.float64]) -> list[Decile]:
    """Rows ranked by probability (highest first) in ten near-equal groups."""
    order = np.argsort(-probabilities, kind="stable")
    ranked = labels[order]
    total = int(ranked.sum())
    overall = total / len(ranked) if len(ranked) else 0.0
    deciles: list[Decile] = []
    found = 0
    for number, group in enumerate(np.array_split(ranked, 10), 1):
        hits = int(group.sum())
        found += hits
        rate = hits / len(group) if len(group) else 0.0
        deciles.append(
            Decile(
                decile=number,
                rows=len(group),
                positives=hits,
                rate=rate,
                lift=rate / overall if overall else 0.0,
                captured=found / total if total else 0.0,
            )
        )
    return deciles


def reliability(
    labels: NDArray[np.int_], probabilities: NDArray[np.float64], *, bins: int = 10
) -> list[CalibrationBin]:
    """Equal-width probability bins (empty ones left out): predicted vs observed rate."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    slot = np.clip(np.digitize(probabilities, edges[1:-1]), 0, bins - 1)
    table: list[CalibrationBin] = []
    for k in range(bins):
        inside = slot == k
        count = int(inside.sum())
        if count:
            table.append(
                CalibrationBin(
                    low=float(edges[k]),
                    high=float(edges[k + 1]),
                    rows=count,
                    mean_predicted=float(probabilities[inside].mean()),
                    observed_rate=float(labels[inside].mean()),
                )
            )
    return table


def holdout(
    table: Table, labels: NDArray[np.int_], *, test_share: float = 0.25, seed: int = 0
) -> Evaluation:
    """Fit on a stratified (1 - test_share) of the rows, measure on the rest."""
    train, test = train_test_split(
        np.arange(len(labels)), test_size=test_share, stratify=labels, random_state=seed
    )
    model = fit_model(_subset(table, train), labels[train])
    return evaluate(labels[test], model.probabilities(_subset(table, test)))


def cross_validate(
    table: Table, labels: NDArray[np.int_], *, folds: int = 5, seed: int = 0
) -> Evaluation:
    """Stratified k-fold; AUC is the mean over folds, the tables use pooled predictions."""
    pooled = np.zeros(len(labels))
    aucs: list[float] = []
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(np.zeros(len(labels)), labels):
        model = fit_model(_subset(table, train), labels[train])
        pooled[test] = model.probabilities(_subset(table, test))
        aucs.append(float(roc_auc_score(labels[test], pooled[test])))
    result = evaluate(labels, pooled)
    return Evaluation(
        rows=result.rows,
        positives=result.positives,
        auc=float(np.mean(aucs)),
        brier=result.brier,
        deciles=result.deciles,
        calibration=result.calibration,
        fold_aucs=aucs,
        method=f"{folds}-fold stratified cross-validation",
    )


def _subset(table: Table, rows: NDArray[np.int_]) -> Table:
    return Table(table.columns, [table.rows[i] for i in rows])


def evaluation_from_dict(data: dict[str, Any]) -> Evaluation:
    """The inverse of ``dataclasses.asdict`` for a stored evaluation."""
    return Evaluation(
        rows=data["rows"],
        positives=data["positives"],
        auc=data["auc"],
        brier=data["brier"],
        deciles=[Decile(**d) for d in data["deciles"]],
        calibration=[CalibrationBin(**b) for b in data["calibration"]],
        fold_aucs=list(data.get("fold_aucs", [])),
        method=data.get("method", "holdout"),
    )
