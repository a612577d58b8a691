"""Do a score's rules predict conversion? Statistics over plain inputs (R6).

For each rule: the conversion rate of contacts who triggered it against those who did not,
their ratio (lift) with a 95 % confidence interval on the log scale (Katz: standard error
sqrt(1/a - 1/n1 + 1/c - 1/n0); when either group has no conversion, 0.5 is added to the
conversion and group counts first, Haldane–Anscombe); the conversion rate by score band with
Wilson intervals; and suggested points: an L2-regularised logistic regression of conversion on
the rule-trigger indicators, whose coefficients (log-odds) are scaled so that the largest one
matches the largest current |points|, then rounded to whole points.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression

Z95 = 1.959963984540054


@dataclass(frozen=True)
class RuleInput:
    key: str
    name: str
    points: float
    triggered: frozenset[int]  # contacts the rule awarded points to


@dataclass(frozen=True)
class Interval:
    value: float | None
    low: float | None
    high: float | None


@dataclass(frozen=True)
class RuleCalibration:
    key: str
    name: str
    points: float
    suggested_points: float | None  # None: nobody (or everybody) triggered it
    weight: float | None  # the fitted coefficient, log-odds
    triggered: int
    triggered_converted: int
    others: int
    others_converted: int
    rate_triggered: Interval
    rate_others: Interval
    lift: Interval


@dataclass(frozen=True)
class Band:
    low: float
    high: float | None  # None: no upper bound
    contacts: int
    converted: int
    rate: Interval


@dataclass(frozen=True)
class Calibration:
    contacts: int
    converted: int
    rules: list[RuleCalibration]
    bands: list[Band]


def wilson(successes: int, trials: int, z: float = Z95) -> Interval:
    """The share ``successes / trials`` with its Wilson score interval."""
    if trials == 0:
        return Interval(None, None, None)
    share = successes / trials
    denominator = 1 + z * z / trials
    centre = (share + z * z / (2 * trials)) / denominator
    margin = z * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials))
    margin /= denominator
    return Interval(share, max(0.0, centre - margin), min(1.0, centre + margin))


def rate_ratio(a: int, n1: int, c: int, n0: int, z: float = Z95) -> Interval:
    """(a / n1) / (c / n0) with its log-scale (Katz) interval; None when a group is empty."""
    if n1 == 0 or n0 == 0:
        return Interval(None, None, None)
    x1, t1, x0, t0 = float(a), float(n1), float(c), float(n0)
    if a == 0 or c == 0:
        x1, t1, x0, t0 = x1 + 0.5, t1 + 0.5, x0 + 0.5, t0 + 0.5
    ratio = (x1 / t1) / (x0 / t0)
    error = math.sqrt(max(0.0, 1 / x1 - 1 / t1 + 1 / x0 - 1 / t0))
    point = (a / n1) / (c / n0) if c else ratio
    return Interval(point, ratio * math.exp(-z * error), ratio * math.exp(z * error))


def calibrate(
    rules: Sequence[RuleInput],
    outcomes: Mapping[int, bool],
    scores: Mapping[int, float],
    *,
    bands: Sequence[float] | None = None,
    regularisation: float = 1.0,
) -> Calibration:
    """Calibration of ``rules`` over the contacts in ``outcomes`` (id -> converted).
    ``scores`` holds current values (a contact missing there has 0); ``bands`` are the lower
    edges of the score bands, ascending (default: five bands at the score quintiles)."""
    population = sorted(outcomes)
    converted = sum(1 for cid in population if outcomes[cid])
    suggested = suggest_points(rules, outcomes, regularisation=regularisation)
    results: list[RuleCalibration] = []
    for rule in rules:
        hit = [cid for cid in population if cid in rule.triggered]
        hit_won = sum(1 for cid in hit if outcomes[cid])
        others, others_won = len(population) - len(hit), converted - hit_won
        weight, points = suggested.get(rule.key, (None, None))
        results.append(
            RuleCalibration(
                key=rule.key,
                name=rule.name,
                points=rule.points,
                suggested_points=points,
                weight=weight,
                triggered=len(hit),
                triggered_converted=hit_won,
                others=others,
                others_converted=others_won,
                rate_triggered=wilson(hit_won, len(hit)),
                rate_others=wilson(others_won, others),
                lift=rate_ratio(hit_won, len(hit), others_won, others),
            )
        )
    values = {cid: scores.get(cid, 0.0) for cid in population}
    return Calibration(len(population), converted, results, score_bands(values, outcomes, bands))


def score_bands(
    values: Mapping[int, float], outcomes: Mapping[int, bool], edges: Sequence[float] | None
) -> list[Band]:
    """Conversion by score band; a band holds lower <= score < next lower edge."""
    if not values:
        return []
    if edges is None:
        quantiles = np.quantile(np.fromiter(values.values(), dtype=float), [0, 0.2, 0.4, 0.6, 0.8])
        edges = sorted({round(float(q), 2) for q in quantiles})
    lows = sorted(edges)
    if min(values.values()) < lows[0]:
        lows = [min(values.values()), *lows]
    result: list[Band] = []
    for i, low in enumerate(lows):
        high = lows[i + 1] if i + 1 < len(lows) else None
        inside = [cid for cid, v in values.items() if v >= low and (high is None or v < high)]
        won = sum(1 for cid in inside if outcomes[cid])
        result.append(Band(low, high, len(inside), won, wilson(won, len(inside))))
    return result


def suggest_points(
    rules: Sequence[RuleInput], outcomes: Mapping[int, bool], *, regularisation: float = 1.0
) -> dict[str, tuple[float, float]]:
    """Rule key -> (coefficient, suggested points) for rules that some but not all contacts
    triggered; empty when both outcomes do not occur."""
    population = sorted(outcomes)
    target = np.array([outcomes[cid] for cid in population], dtype=np.int_)
    usable = [
        rule
        for rule in rules
        if 0 < sum(1 for cid in population if cid in rule.triggered) < len(population)
    ]
    if not usable or len(set(target.tolist())) < 2:
        return {}
    matrix = np.array(
        [[1.0 if cid in rule.triggered else 0.0 for rule in usable] for cid in population]
    )
    fitted = LogisticRegression(C=regularisation, max_iter=2000).fit(matrix, target)
    weights = fitted.coef_[0]
    strongest = float(np.max(np.abs(weights)))
    scale = max(abs(rule.points) for rule in rules) or 1.0
    factor = scale / strongest if strongest > 0 else 0.0
    return {
        rule.key: (round(float(w), 4), float(round(float(w) * factor)))
        for rule, w in zip(usable, weights, strict=True)
    }
