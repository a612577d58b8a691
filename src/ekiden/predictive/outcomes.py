"""Which contacts converted, which did not, and which are still open.

- converted: the contact matches the ``outcome`` condition (default: lifecycle stage won);
- not converted: the contact matches the ``lost`` condition (default: stage lost), or has
  been known for at least ``window_days`` (created that long ago) without converting;
- open: neither converted nor lost. Open leads are the ones scored; those older than the
  window are also training negatives ("never converted within the observation window").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, false, select

from ekiden.contacts.tables import contacts
from ekiden.errors import Invalid
from ekiden.rules.bind import check
from ekiden.rules.fields import load_catalog
from ekiden.rules.model import parse_filter
from ekiden.rules.sql import SqlEnv, compile_filter

DEFAULT_OUTCOME: dict[str, Any] = {"field": "lifecycle_stage", "op": "eq", "value": "won"}
DEFAULT_LOST: dict[str, Any] = {"field": "lifecycle_stage", "op": "eq", "value": "lost"}


class OutcomeSpec(BaseModel):
    """What counts as converted and as not converted (filter-language conditions)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    outcome: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_OUTCOME))
    lost: dict[str, Any] | None = Field(default_factory=lambda: dict(DEFAULT_LOST))
    window_days: int = Field(90, ge=1, le=3650)


@dataclass(frozen=True)
class Outcomes:
    converted: list[int] = field(default_factory=list)
    not_converted: list[int] = field(default_factory=list)
    open: list[int] = field(default_factory=list)  # not converted, not lost (to be scored)

    def labelled(self) -> tuple[list[int], list[int]]:
        """Contact ids with a known outcome and their 0/1 labels, ordered by id."""
        pairs = sorted([(c, 1) for c in self.converted] + [(c, 0) for c in self.not_converted])
        return [c for c, _ in pairs], [label for _, label in pairs]


def classify(conn: Connection, now: datetime, spec: OutcomeSpec, zone: ZoneInfo) -> Outcomes:
    """Sort every live contact (merged ones excluded). Raises Invalid naming a bad condition."""
    catalog = load_catalog(conn)
    env = SqlEnv(catalog=catalog, now=now, zone=zone, dialect=conn.dialect.name)
    conditions = {"outcome": spec.outcome, "lost": spec.lost}
    compiled = {}
    for name, raw in conditions.items():
        if raw is None:
            continue
        try:
            flt = parse_filter(raw)
            check(flt, catalog, zone)
        except Invalid as exc:
            raise Invalid(f"{name}: {exc.message}", code=exc.code) from None
        compiled[name] = compile_filter(flt, env)
    won = compiled["outcome"].label("won")
    lost = (compiled["lost"] if "lost" in compiled else false()).label("lost")
    cutoff = now - timedelta(days=spec.window_days)
    query = select(contacts.c.id, won, lost, contacts.c.created_at).where(
        contacts.c.merged_into_id.is_(None)
    )
    result = Outcomes()
    for cid, is_won, is_lost, created_at in conn.execute(query.order_by(contacts.c.id)):
        if is_won:
            result.converted.append(cid)
            continue
        if is_lost or created_at <= cutoff:
            result.not_converted.append(cid)
        if not is_lost:
            result.open.append(cid)
    return result
