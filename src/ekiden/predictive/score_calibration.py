"""Calibration of a stored rule score: reads the scoring tables and feeds ``calibration``.

A rule counts as triggered for a contact when the awarded-points ledger holds any row of
that rule for the contact. Outcomes come from the same definition as predictive training
(``OutcomeSpec``); open leads younger than the observation window are left out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select

from ekiden.clock import Clock
from ekiden.errors import NotFound
from ekiden.predictive.calibration import Calibration, RuleInput, calibrate
from ekiden.predictive.outcomes import OutcomeSpec, classify
from ekiden.scoring.tables import contact_scores, score_awards, score_definitions, score_rules


def score_calibration(
    conn: Connection,
    clock: Clock,
    key: str,
    spec: OutcomeSpec,
    zone: ZoneInfo,
    *,
    bands: Sequence[float] | None = None,
) -> Calibration:
    """NotFound when there is no score ``key``; Invalid when the outcome conditions are."""
    score_id = conn.execute(
        select(score_definitions.c.id).where(score_definitions.c.key == key)
    ).scalar()
    if score_id is None:
        raise NotFound(f"no score {key!r}")
    outcomes = classify(conn, clock.now(), spec, zone)
    known = dict.fromkeys(outcomes.converted, True)
    known.update(dict.fromkeys(outcomes.not_converted, False))
    triggered: dict[int, set[int]] = defaultdict(set)
    awards = select(score_awards.c.rule_id, score_awards.c.contact_id).where(
        score_awards.c.score_id == score_id
    )
    for rule_id, contact_id in conn.execute(awards.distinct()):
        if contact_id in known:
            triggered[rule_id].add(contact_id)
    rules = [
        RuleInput(row.key, row.name, row.points, frozenset(triggered.get(row.id, ())))
        for row in conn.execute(
            select(score_rules.c.id, score_rules.c.key, score_rules.c.name, score_rules.c.points)
            .where(score_rules.c.score_id == score_id)
            .order_by(score_rules.c.position, score_rules.c.id)
        )
    ]
    values = {
        cid: value
        for cid, value in conn.execute(
            select(contact_scores.c.contact_id, contact_scores.c.value).where(
                contact_scores.c.score_key == key
            )
        )
        if cid in known
    }
    return calibrate(rules, known, values, bands=bands)
