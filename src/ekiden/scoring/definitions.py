"""Score definitions and their rules: create, replace, read, delete, validate.

Every change to a score's rules bumps its version; stored values follow the new rules after
a full recompute (``compute.recompute_due`` in the worker, or at once through the API/CLI).
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from ekiden.clock import Clock
from ekiden.errors import Conflict, Invalid, NotFound
from ekiden.rules.bind import check, walk
from ekiden.rules.fields import load_catalog
from ekiden.rules.model import EventCondition, FieldCondition, parse_filter
from ekiden.scoring.models import EventMatch, Rule, RuleIn, Score, ScoreIn
from ekiden.scoring.tables import contact_scores, score_definitions, score_rules


def validate_rule(conn: Connection, rule: RuleIn, zone: ZoneInfo, *, path: str = "") -> None:
    """Raise Invalid naming the bad part (``rules[2].when.all[0].field``) of ``rule``."""
    where = f"{path}{'.' if path else ''}"
    catalog = load_catalog(conn)
    if rule.when is not None:
        try:
            flt = parse_filter(rule.when)
            for node_path, node in walk(flt):
                if isinstance(node, FieldCondition) and node.field.startswith("score."):
                    raise Invalid(
                        f"{node_path}.field: a scoring rule cannot look at scores "
                        f"({node.field}); use a segment or a hot-lead definition for that",
                        code="invalid_rule",
                    )
            check(flt, catalog, zone)
        except Invalid as exc:
            raise _within(f"{where}when", exc) from None
    else:
        assert rule.event is not None
        try:
            check(EventCondition(event=rule.event.event, where=rule.event.where), catalog, zone)
        except Invalid as exc:
            raise _within(f"{where}event", exc) from None


def _within(prefix: str, exc: Invalid) -> Invalid:
    """The filter's own error, its paths made relative to the whole definition."""
    problems = exc.details if isinstance(exc.details, list) else [exc.message]
    located = []
    for problem in problems:
        text = str(problem).removeprefix("invalid filter: ")
        if text.startswith("(root)"):
            located.append(prefix + text.removeprefix("(root)"))
        else:
            located.append(f"{prefix}.{text}")
    return Invalid("; ".join(located[:8]), code=exc.code, details=located)


def validate_score(conn: Connection, data: ScoreIn, zone: ZoneInfo) -> None:
    for i, rule in enumerate(data.rules):
        validate_rule(conn, rule, zone, path=f"rules[{i}]")


def _condition(rule: RuleIn) -> dict[str, Any]:
    if rule.when is not None:
        return rule.when
    assert rule.event is not None
    return rule.event.model_dump(mode="json", exclude={"min_dwell_seconds"}, exclude_none=True)


def _rule_values(rule: RuleIn) -> dict[str, Any]:
    return {
        "key": rule.key,
        "name": rule.name,
        "kind": rule.kind,
        "condition": rule.when
        if rule.when is not None
        else (
            rule.event.model_dump(mode="json", exclude={"min_dwell_seconds"}) if rule.event else {}
        ),
        "points": float(rule.points),
        "min_dwell_seconds": rule.event.min_dwell_seconds if rule.event else None,
        "cap_points": rule.cap_points,
        "cap_days": rule.cap_days,
        "half_life_days": rule.half_life_days,
        "expires_after_days": rule.expires_after_days,
        "enabled": rule.enabled,
    }


def rule_from_row(row: Any) -> Rule:
    condition = dict(row.condition)
    return Rule(
        id=row.id,
        key=row.key,
        name=row.name,
        points=row.points,
        when=condition if row.kind == "profile" else None,
        event=EventMatch.model_validate({**condition, "min_dwell_seconds": row.min_dwell_seconds})
        if row.kind == "event"
        else None,
        cap_points=row.cap_points,
        cap_days=row.cap_days,
        half_life_days=row.half_life_days,
        expires_after_days=row.expires_after_days,
        enabled=row.enabled,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _score_id(conn: Connection, key: str) -> int:
    found = conn.execute(select(score_definitions.c.id).where(score_definitions.c.key == key))
    score_id = found.scalar_one_or_none()
    if score_id is None:
        raise NotFound(f"no score {key!r}", code="unknown_score")
    return int(score_id)


def get_score(conn: Connection, key: str) -> Score:
    row = conn.execute(select(score_definitions).where(score_definitions.c.key == key)).first()
    if row is None:
        raise NotFound(f"no score {key!r}", code="unknown_score")
    return _score(conn, row)


def _score(conn: Connection, row: Any) -> Score:
    rules = conn.execute(
        select(score_rules)
        .where(score_rules.c.score_id == row.id, score_rules.c.kind != "manual")
        .order_by(score_rules.c.position, score_rules.c.id)
    )
    return Score(
        id=row.id,
        key=row.key,
        name=row.name,
        description=row.description,
        max_points=row.max_points,
        min_points=row.min_points,
        rules=[rule_from_row(r) for r in rules],
        version=row.version,
        built=row.built_version >= row.version,
        recomputed_at=row.recomputed_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def list_scores(conn: Connection) -> list[Score]:
    rows = conn.execute(select(score_definitions).order_by(score_definitions.c.key))
    return [_score(conn, row) for row in rows.all()]


def _insert_rules(conn: Connection, clock: Clock, score_id: int, rules: list[RuleIn]) -> None:
    now = clock.now()
    if rules:
        conn.execute(
            insert(score_rules),
            [
                {**_rule_values(r), "score_id": score_id, "position": i, "created_at": now,
                 "updated_at": now}
                for i, r in enumerate(rules)
            ],
        )  # fmt: skip


def create_score(conn: Connection, clock: Clock, data: ScoreIn, zone: ZoneInfo) -> Score:
    """Store a new score with its rules; Conflict when the key is taken."""
    validate_score(conn, data, zone)
    now = clock.now()
    try:
        with conn.begin_nested():
            score_id = conn.execute(
                insert(score_definitions)
                .values(
                    key=data.key,
                    name=data.name,
                    description=data.description,
                    max_points=data.max_points,
                    min_points=data.min_points,
                    version=1,
                    built_version=0,
                    created_at=now,
                    updated_at=now,
                )
                .returning(score_definitions.c.id)
            ).scalar_one()
    except IntegrityError:
        raise Conflict(f"a score {data.key!r} already exists") from None
    _insert_rules(conn, clock, score_id, data.rules)
    return get_score(conn, data.key)


def replace_score(conn: Connection, clock: Clock, key: str, data: ScoreIn, zone: ZoneInfo) -> Score:
    """Replace the definition and all rules of ``key`` (PUT); rules keep their ids (and so
    their ledger) when their key stays."""
    if data.key != key:
        raise Invalid(f"key: the body names {data.key!r} but the path names {key!r}")
    validate_score(conn, data, zone)
    current = get_score(conn, key)
    now = clock.now()
    conn.execute(
        update(score_definitions)
        .where(score_definitions.c.id == current.id)
        .values(
            name=data.name,
            description=data.description,
            max_points=data.max_points,
            min_points=data.min_points,
            version=current.version + 1,
            updated_at=now,
        )
    )
    kept = {r.key: r.id for r in current.rules}
    wanted = {r.key for r in data.rules}
    gone = [rule_id for rule_key, rule_id in kept.items() if rule_key not in wanted]
    if gone:
        conn.execute(delete(score_rules).where(score_rules.c.id.in_(gone)))
    for i, rule in enumerate(data.rules):
        if rule.key in kept:
            conn.execute(
                update(score_rules)
                .where(score_rules.c.id == kept[rule.key])
                .values(**_rule_values(rule), position=i, updated_at=now)
            )
        else:
            conn.execute(
                insert(score_rules).values(
                    **_rule_values(rule), score_id=current.id, position=i, created_at=now,
                    updated_at=now,
                )
            )  # fmt: skip
    return get_score(conn, key)


def put_rule(conn: Connection, clock: Clock, key: str, rule: RuleIn, zone: ZoneInfo) -> Rule:
    """Create or replace one rule of score ``key``."""
    score_id = _score_id(conn, key)
    validate_rule(conn, rule, zone)
    now = clock.now()
    existing = conn.execute(
        select(score_rules.c.id).where(
            score_rules.c.score_id == score_id, score_rules.c.key == rule.key
        )
    ).scalar_one_or_none()
    if existing is None:
        position = len(get_score(conn, key).rules)
        conn.execute(
            insert(score_rules).values(
                **_rule_values(rule), score_id=score_id, position=position, created_at=now,
                updated_at=now,
            )
        )  # fmt: skip
    else:
        conn.execute(
            update(score_rules)
            .where(score_rules.c.id == existing)
            .values(**_rule_values(rule), updated_at=now)
        )
    _bump(conn, clock, score_id)
    found = conn.execute(
        select(score_rules).where(score_rules.c.score_id == score_id, score_rules.c.key == rule.key)
    ).one()
    return rule_from_row(found)


def delete_rule(conn: Connection, clock: Clock, key: str, rule_key: str) -> None:
    score_id = _score_id(conn, key)
    done = conn.execute(
        delete(score_rules).where(score_rules.c.score_id == score_id, score_rules.c.key == rule_key)
    )
    if not done.rowcount:
        raise NotFound(f"score {key!r} has no rule {rule_key!r}", code="unknown_rule")
    _bump(conn, clock, score_id)


def delete_score(conn: Connection, key: str) -> None:
    """Remove the score, its rules, ledger and every contact's value of it (history stays)."""
    score_id = _score_id(conn, key)
    conn.execute(delete(contact_scores).where(contact_scores.c.score_key == key))
    conn.execute(delete(score_definitions).where(score_definitions.c.id == score_id))


def _bump(conn: Connection, clock: Clock, score_id: int) -> None:
    conn.execute(
        update(score_definitions)
        .where(score_definitions.c.id == score_id)
        .values(version=score_definitions.c.version + 1, updated_at=clock.now())
    )
