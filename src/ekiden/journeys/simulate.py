"""Dry-run: replay a journey (a draft, or a saved one) against the last N days of real history.

Nothing is written: the simulation reads events, contacts, score history and segment entries
on a read-only connection and plays each would-be enrolment in memory, with the engine's own
rules: the same entry policy (re-entry, entry condition, limit), the filter language's
in-memory evaluator for branches, goals, exit criteria and ``wait_for`` conditions, and the
same wait arithmetic (``waits.wait_until_moment``; ``wait_for`` passes at the first matching
event within the wait, times out at its deadline). Real events are replayed in time order:
a condition checked at a simulated moment sees only the events that had happened by then, and
goals and exit criteria are checked again at each of the contact's events during a wait, as
the engine's wake-ups do.

What it cannot know, and how it is treated (``ASSUMPTIONS``; docs/JOURNEYS.md, Dry-run):

- ``fields_now``: contact fields, tags, lists, segments and scores are as they are now (their
  past values are not kept); events are as they happened.
- ``simulated_emails_unopened``: the emails the simulation "sends" were never sent, so nobody
  opened or clicked them. A wait for an open or click of such an email times out and a branch
  on it takes the not-opened path, unless real history holds a matching event (the same
  template really sent before). Nodes whose decision depends on email events say so
  (``depends_on_email_events``). Historical open rates are deliberately not used as odds: a
  forecast that mixes guesses into counts could not be checked against anything.
- ``no_side_effects``: actions change nothing; only tags, lists, fields, stages and score
  points the journey itself sets are applied to the in-memory contact, so later conditions
  see them. Events actions would cause (``stage_changed``) are not produced.
- ``manual_not_simulated``: manual / API enrolment has no facts to replay.
- ``segments_current_members``: segment entries come from the current membership
  (``entered_at``); contacts who entered and left again inside the window are not seen.
- ``horizon``: enrolments whose wait ends after now are reported as waiting there
  (``play_out`` runs their waits to the end, up to a year, as if nothing more happened).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field
from sqlalchemy import Connection, select, true

from ekiden.clock import Clock
from ekiden.contacts.tables import accounts, contact_tags, contacts
from ekiden.errors import Invalid
from ekiden.journeys import definition as d
from ekiden.journeys.service import definition_of, journey_row, validate
from ekiden.journeys.triggers import event_matches, stage_trigger
from ekiden.journeys.waits import field_moment, wait_until_moment
from ekiden.rules.bind import event_types_of
from ekiden.rules.fields import load_catalog
from ekiden.rules.memory import ContactData, Env, EventData, evaluate
from ekiden.rules.model import EventCondition, Filter
from ekiden.scoring.tables import contact_scores
from ekiden.segments.tables import list_members, lists, segment_members, segments
from ekiden.tracking.tables import events

MAX_DAYS = 366
PLAY_OUT = timedelta(days=365)  # how far past now play_out runs waits
MAX_STEPS = 500  # nodes per simulated enrolment (a loop with a short wait)
CHUNK = 500  # contacts read per round of queries
ASSUMPTIONS = (
    "fields_now",
    "simulated_emails_unopened",
    "no_side_effects",
    "segments_current_members",
)


class NodeCount(BaseModel):
    node: str
    type: str
    entered: int = Field(0, description="arrivals at the node")
    passed: int = Field(0, description="left by a port (next, a branch, a timeout…)")
    waiting: int = Field(0, description="still waiting there at the end of the replay")
    exited: int = 0
    converted: int = Field(0, description="reached the goal there")
    capped: int = Field(0, description="send_email skipped by the frequency cap")
    email: str | None = Field(None, description="send_email: the template")
    depends_on_email_events: bool = Field(
        False, description="the node's decision looks at email events (see the assumptions)"
    )


class EdgeCount(BaseModel):
    source: str
    port: str
    target: str | None = Field(description="None: the journey ends there")
    count: int


class EmailCount(BaseModel):
    email: str
    count: int = Field(description="emails that would be queued")
    contacts: int = Field(description="distinct contacts who would get it")


class Simulation(BaseModel):
    journey: str
    version: int | None = Field(description="the saved version replayed; None for a draft")
    start: datetime = Field(description="the replay covers facts from here …")
    end: datetime = Field(description="… to here (now)")
    days: int
    play_out: bool
    facts: int = Field(description="trigger facts found in the window")
    entered: int = Field(description="contacts who would enter")
    enrolments: int
    skipped_reentry: int = Field(description="facts the re-entry policy keeps out")
    skipped_condition: int = Field(description="facts whose contact fails entry.when")
    skipped_limit: int = Field(description="facts over the entry limit")
    outcomes: dict[str, int] = Field(
        description="completed | exited | converted | waiting: how the enrolments stand"
    )
    nodes: list[NodeCount]
    edges: list[EdgeCount]
    emails: list[EmailCount]
    assumptions: list[str] = Field(description="what the replay cannot know (docs/JOURNEYS.md)")


@dataclass(frozen=True)
class _Fact:
    at: datetime
    contact_id: int
    key: str


@dataclass
class _Contact:
    data: ContactData
    wakes: list[datetime]  # the contact's event times, ascending (the engine's wake-ups)
    live_until: datetime | None = None  # end of the last simulated enrolment
    live: bool = False  # an enrolment still waiting at the end
    ever: bool = False
    emails: list[datetime] = field(default_factory=list)


def _filters(journey: d.Journey) -> list[Filter]:
    found: list[Filter] = [f for f in (journey.entry.when, journey.goal, journey.exit_when) if f]
    for node in journey.nodes:
        if isinstance(node, d.Branch):
            found.extend(case.when for case in node.branches)
        if isinstance(node, d.WaitFor) and node.condition is not None:
            found.append(node.condition)
    return found


def _event_types(journey: d.Journey) -> set[str]:
    types: set[str] = set()
    for flt in _filters(journey):
        types |= event_types_of(flt)
    for node in journey.nodes:
        if isinstance(node, d.WaitFor) and node.event is not None:
            types.add(node.event.event)
    return types


def _node_types(journey: d.Journey, node: d.Node) -> set[str]:
    filters: list[Filter] = []
    if isinstance(node, d.Branch):
        filters = [case.when for case in node.branches]
    elif isinstance(node, d.WaitFor):
        if node.event is not None:
            return {node.event.event}
        assert node.condition is not None
        filters = [node.condition]
    return set().union(*map(event_types_of, filters)) if filters else set()


class _Replay:
    def __init__(
        self,
        conn: Connection,
        journey: d.Journey,
        zone: ZoneInfo,
        end: datetime,
        horizon: datetime,
    ) -> None:
        self.conn = conn
        self.journey = journey
        self.zone = zone
        self.end = end  # events exist up to here
        self.horizon = horizon  # waits run up to here
        self.catalog = load_catalog(conn)
        self.types = _event_types(journey)
        self.contacts: dict[int, _Contact] = {}
        self.counts = {n.id: NodeCount(node=n.id, type=n.type) for n in journey.nodes}
        for n in journey.nodes:
            if isinstance(n, d.SendEmail):
                self.counts[n.id].email = n.email
            self.counts[n.id].depends_on_email_events = any(
                t.startswith("email_") for t in _node_types(journey, n)
            )
        self.edges: Counter[tuple[str, str, str | None]] = Counter()
        self.emails: Counter[str] = Counter()
        self.email_contacts: dict[str, set[int]] = {}
        self.outcomes: Counter[str] = Counter()
        self.lifecycle: set[str] | None = None

    def env(self, at: datetime) -> Env:
        return Env(catalog=self.catalog, now=at, zone=self.zone)

    def load(self, contact_ids: Iterable[int]) -> None:
        """Read these contacts (a few queries per 500 of them)."""
        wanted = sorted(set(contact_ids) - set(self.contacts))
        for start in range(0, len(wanted), CHUNK):
            loaded = load_contacts(self.conn, wanted[start : start + CHUNK], self.types)
            for contact_id, data in loaded.items():
                data.events = [e for e in data.events if e.occurred_at <= self.end]
                data.events.sort(key=lambda e: e.occurred_at)
                wakes = sorted({e.occurred_at for e in data.events})
                self.contacts[contact_id] = _Contact(data=data, wakes=wakes)

    def contact(self, contact_id: int) -> _Contact:
        if contact_id not in self.contacts:
            self.load([contact_id])
        return self.contacts[contact_id]

    # -- one enrolment ---------------------------------------------------------------------

    def run(self, contact_id: int, fact: _Fact) -> datetime | None:
        """Play one enrolment from ``fact``; its end, or None when still waiting."""
        person = self.contact(contact_id)
        node_id = self.journey.start
        at = fact.at
        for visit in range(MAX_STEPS):
            node = self.journey.node(node_id)
            count = self.counts[node.id]
            count.entered += 1
            if self._finished(person, node, at):
                return at
            outcome = self._node(contact_id, person, node, at, f"{fact.key}:{visit}")
            if outcome is None:  # waiting at the horizon
                count.waiting += 1
                self.outcomes["waiting"] += 1
                return None
            port, target, at = outcome
            if port in ("exited", "converted"):
                setattr(count, port, getattr(count, port) + 1)
                self.outcomes[port] += 1
                return at
            count.passed += 1
            self.edges[(node.id, port, target)] += 1
            if target is None:
                self.outcomes["completed"] += 1
                return at
            node_id = target
        self.counts[node_id].waiting += 1  # a loop that never ended within the horizon
        self.outcomes["waiting"] += 1
        return None

    def _finished(self, person: _Contact, node: d.Node, at: datetime) -> bool:
        """Goal and exit criteria before a node, as the engine checks them."""
        journey = self.journey
        count = self.counts[node.id]
        if journey.goal is not None and evaluate(journey.goal, person.data, self.env(at)):
            count.converted += 1
            self.outcomes["converted"] += 1
            return True
        if journey.exit_when is not None and evaluate(journey.exit_when, person.data, self.env(at)):
            count.exited += 1
            self.outcomes["exited"] += 1
            return True
        return False

    def _ended_during(
        self, person: _Contact, start: datetime, until: datetime
    ) -> tuple[str, datetime] | None:
        """Goal or exit reached at one of the contact's events inside a wait (a wake-up)."""
        journey = self.journey
        if journey.goal is None and journey.exit_when is None:
            return None
        for moment in person.wakes:
            if moment <= start:
                continue
            if moment > until:
                break
            env = self.env(moment)
            if journey.goal is not None and evaluate(journey.goal, person.data, env):
                return "converted", moment
            if journey.exit_when is not None and evaluate(journey.exit_when, person.data, env):
                return "exited", moment
        return None

    def _node(
        self, contact_id: int, person: _Contact, node: d.Node, at: datetime, seed: str
    ) -> tuple[str, str | None, datetime] | None:
        """(port, target, moment it is taken), or None: still waiting at the horizon."""
        data = person.data
        if isinstance(node, d.Exit):
            return "exited", None, at
        if isinstance(node, d.Wait | d.WaitUntil | d.WaitFor):
            return self._wait(person, node, at)
        if isinstance(node, d.Branch):
            for i, case in enumerate(node.branches):
                if evaluate(case.when, data, self.env(at)):
                    return f"branches[{i}]", case.next, at
            return "otherwise", node.otherwise, at
        if isinstance(node, d.Split):
            return self._split(node, f"{contact_id}:{seed}", at)
        target: str | None = getattr(node, "next", None)
        if isinstance(node, d.SendEmail):
            cap = self.journey.frequency_cap
            if cap is not None:
                recent = sum(1 for sent in person.emails if sent > at - cap.per)
                if recent >= cap.emails:
                    self.counts[node.id].capped += 1
                    return "next", target, at
            person.emails.append(at)
            self.emails[node.email] += 1
            self.email_contacts.setdefault(node.email, set()).add(contact_id)
        else:
            self._apply(data, node)
        return "next", target, at

    def _apply(self, data: ContactData, node: d.Node) -> None:
        """What an action would change that later conditions can see."""
        if isinstance(node, d.TagAction):
            if node.type == "add_tag":
                data.tags.add(node.tag)
            else:
                data.tags.discard(node.tag)
        elif isinstance(node, d.ListAction):
            if node.type == "add_to_list":
                data.lists.add(node.list)
            else:
                data.lists.discard(node.list)
        elif isinstance(node, d.UpdateField):
            if node.field.startswith("custom."):
                data.custom[node.field.removeprefix("custom.")] = node.value
            else:
                data.fields[node.field] = node.value
        elif isinstance(node, d.ChangeStage):
            if self.lifecycle is None:
                from ekiden.lifecycle.stages import list_stages

                self.lifecycle = {s.key for s in list_stages(self.conn, "lifecycle")}
            kind = "lifecycle" if node.stage in self.lifecycle else "buying"
            data.fields[f"{kind}_stage"] = node.stage
        elif isinstance(node, d.AdjustScore):
            data.scores[node.score] = data.scores.get(node.score, 0.0) + node.points
        elif isinstance(node, d.AssignOwner) and node.user_id is not None:
            data.fields["owner_id"] = node.user_id

    def _split(self, node: d.Split, seed: str, at: datetime) -> tuple[str, str | None, datetime]:
        digest = hashlib.blake2b(f"{seed}:{node.id}".encode(), digest_size=8).digest()
        point = int.from_bytes(digest) / 2**64 * sum(p.weight for p in node.paths)
        for i, path in enumerate(node.paths):
            point -= path.weight
            if point < 0 or i == len(node.paths) - 1:
                return f"paths[{i}]", path.next, at
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(
        self, person: _Contact, node: d.Wait | d.WaitUntil | d.WaitFor, start: datetime
    ) -> tuple[str, str | None, datetime] | None:
        data = person.data
        if isinstance(node, d.Wait):
            deadline = start + node.duration
        elif isinstance(node, d.WaitFor):
            deadline = start + node.timeout
        else:
            deadline = wait_until_moment(node, start, start, data.fields, data.custom, self.zone)
        limit = min(deadline, self.horizon)
        if isinstance(node, d.WaitFor):
            happened = self._happened(person, node, start, limit)
            ended = self._ended_during(person, start, happened or limit)
            if ended is not None:
                return ended[0], None, ended[1]
            if happened is not None:
                return "next", node.next, happened
            if deadline <= self.horizon:
                return "on_timeout", node.on_timeout, deadline
            return None
        ended = self._ended_during(person, start, limit)
        if ended is not None:
            return ended[0], None, ended[1]
        if deadline <= self.horizon:
            return "next", node.next, deadline
        return None

    def _happened(
        self, person: _Contact, node: d.WaitFor, start: datetime, until: datetime
    ) -> datetime | None:
        """The first moment within the wait at which the event happened or the condition
        held: the arrival, each of the contact's events, and the deadline (the engine checks
        the condition on arrival, at every wake-up and at the deadline)."""
        data = person.data
        if node.event is not None:
            cond = EventCondition(
                event=node.event.event,
                where=node.event.where,
                include_machine=node.event.include_machine,
                since=start,
            )
            single = ContactData(fields={}, events=[])
            for event in data.events:
                if event.occurred_at < start or event.type != cond.event:
                    continue
                if event.occurred_at > until:
                    break
                single.events = [event]
                if evaluate(cond, single, self.env(event.occurred_at)):
                    return event.occurred_at
            return None
        assert node.condition is not None
        moments = [start, *(m for m in person.wakes if start < m <= until), until]
        for moment in moments:
            if moment > until:
                break
            if evaluate(node.condition, data, self.env(moment)):
                return moment
        return None


# -- reading contacts --------------------------------------------------------------------------


def load_contacts(
    conn: Connection, contact_ids: list[int], event_types: set[str]
) -> dict[int, ContactData]:
    """What ``rules.loader.load_contact_data`` reads, for many contacts at once (one query per
    kind of data); only events of ``event_types``."""
    if not contact_ids:
        return {}
    rows = {
        r["id"]: r
        for r in conn.execute(select(contacts).where(contacts.c.id.in_(contact_ids))).mappings()
    }
    account_ids = sorted({r["account_id"] for r in rows.values()} - {None})
    companies = {
        r["id"]: dict(r)
        for r in (
            conn.execute(select(accounts).where(accounts.c.id.in_(account_ids))).mappings()
            if account_ids
            else []
        )
    }
    out: dict[int, ContactData] = {}
    for contact_id, row in rows.items():
        out[contact_id] = ContactData(
            fields={k: v for k, v in row.items() if k != "custom"},
            custom=dict(row["custom"] or {}),
            account=companies.get(row["account_id"]),
        )
    ids = list(out)
    for contact_id, tag in conn.execute(
        select(contact_tags.c.contact_id, contact_tags.c.tag).where(
            contact_tags.c.contact_id.in_(ids)
        )
    ):
        out[contact_id].tags.add(tag)
    if event_types:
        e = events
        for ev in conn.execute(
            select(
                e.c.contact_id, e.c.type, e.c.occurred_at, e.c.path, e.c.name, e.c.dwell_ms,
                e.c.properties, e.c.machine,
            ).where(e.c.contact_id.in_(ids), e.c.type.in_(sorted(event_types)))
        ):  # fmt: skip
            out[ev.contact_id].events.append(
                EventData(
                    type=ev.type,
                    occurred_at=ev.occurred_at,
                    path=ev.path,
                    name=ev.name,
                    dwell_ms=ev.dwell_ms,
                    properties=ev.properties or {},
                    machine=bool(ev.machine),
                )
            )
    for contact_id, slug in conn.execute(
        select(segment_members.c.contact_id, segments.c.slug)
        .join(segments, segments.c.id == segment_members.c.segment_id)
        .where(segment_members.c.contact_id.in_(ids))
    ):
        out[contact_id].segments.add(slug)
    for contact_id, slug in conn.execute(
        select(list_members.c.contact_id, lists.c.slug)
        .join(lists, lists.c.id == list_members.c.list_id)
        .where(list_members.c.contact_id.in_(ids))
    ):
        out[contact_id].lists.add(slug)
    for contact_id, key, value in conn.execute(
        select(
            contact_scores.c.contact_id, contact_scores.c.score_key, contact_scores.c.value
        ).where(contact_scores.c.contact_id.in_(ids))
    ):
        out[contact_id].scores[key] = float(value)
    return out


# -- finding the facts -------------------------------------------------------------------------


def _event_facts(
    conn: Connection, journey: d.Journey, start: datetime, end: datetime
) -> list[_Fact]:
    triggers = [t for t in journey.entry.triggers if isinstance(t, d.EventTrigger)]
    triggers += [stage_trigger(t) for t in journey.entry.triggers if isinstance(t, d.StageTrigger)]
    if not triggers:
        return []
    rows = conn.execute(
        select(events)
        .join(contacts, contacts.c.id == events.c.contact_id)
        .where(
            contacts.c.merged_into_id.is_(None),
            events.c.type.in_(sorted({t.event for t in triggers})),
            events.c.occurred_at >= start,
            events.c.occurred_at <= end,
        )
        .order_by(events.c.occurred_at, events.c.id)
    ).all()
    return [
        _Fact(e.occurred_at, e.contact_id, f"event:{e.id}")
        for e in rows
        if any(event_matches(t, e) for t in triggers)
    ]


def _score_facts(
    conn: Connection, journey: d.Journey, start: datetime, end: datetime
) -> list[_Fact]:
    from ekiden.scoring.tables import score_history

    out: list[_Fact] = []
    for trigger in journey.entry.triggers:
        if not isinstance(trigger, d.ScoreTrigger):
            continue
        h = score_history
        rows = conn.execute(
            select(h.c.id, h.c.contact_id, h.c.changed_at)
            .join(contacts, contacts.c.id == h.c.contact_id)
            .where(
                contacts.c.merged_into_id.is_(None),
                h.c.score_key == trigger.score_crossed,
                h.c.changed_at >= start,
                h.c.changed_at <= end,
                h.c.previous < trigger.at_least,
                h.c.value >= trigger.at_least,
            )
        )
        out += [_Fact(r.changed_at, r.contact_id, f"score:{r.id}") for r in rows]
    return out


def _segment_facts(
    conn: Connection, journey: d.Journey, start: datetime, end: datetime
) -> list[_Fact]:
    slugs = [t.segment_entered for t in journey.entry.triggers if isinstance(t, d.SegmentTrigger)]
    if not slugs:
        return []
    m = segment_members
    rows = conn.execute(
        select(m.c.segment_id, m.c.contact_id, m.c.entered_at)
        .join(segments, segments.c.id == m.c.segment_id)
        .join(contacts, contacts.c.id == m.c.contact_id)
        .where(
            segments.c.slug.in_(slugs),
            segments.c.archived_at.is_(None),
            contacts.c.merged_into_id.is_(None),
            m.c.entered_at >= start,
            m.c.entered_at <= end,
        )
    )
    return [
        _Fact(r.entered_at, r.contact_id, f"segment:{r.segment_id}:{r.entered_at.isoformat()}")
        for r in rows
    ]


def _date_facts(
    conn: Connection, journey: d.Journey, start: datetime, end: datetime, zone: ZoneInfo
) -> list[_Fact]:
    out: list[_Fact] = []
    for i, trigger in enumerate(journey.entry.triggers):
        if not isinstance(trigger, d.DateTrigger):
            continue
        name = trigger.date_field
        column = None if name.startswith("custom.") else contacts.c.get(name)
        wanted = [contacts.c.id, contacts.c.custom, contacts.c.time_zone]
        query = select(*wanted, *([column] if column is not None else [])).where(
            contacts.c.merged_into_id.is_(None),
            column.is_not(None) if column is not None else true(),
        )
        offset = trigger.offset or timedelta(0)
        shift = -offset if trigger.before else offset
        for row in conn.execute(query):
            fields = {"time_zone": row.time_zone}
            if column is not None:
                fields[name] = row._mapping[column]
            moment = field_moment(fields, dict(row.custom or {}), name, zone)
            if moment is not None and start <= moment + shift <= end:
                out.append(_Fact(moment + shift, row.id, f"date:{i}"))
    return out


def _facts(
    conn: Connection, journey: d.Journey, start: datetime, end: datetime, zone: ZoneInfo
) -> list[_Fact]:
    found: dict[str, _Fact] = {}
    for fact in (
        *_event_facts(conn, journey, start, end),
        *_score_facts(conn, journey, start, end),
        *_segment_facts(conn, journey, start, end),
        *_date_facts(conn, journey, start, end, zone),
    ):
        found.setdefault(f"{fact.contact_id}:{fact.key}", fact)
    return sorted(found.values(), key=lambda f: (f.at, f.contact_id, f.key))


# -- the entry point ---------------------------------------------------------------------------


def check_days(days: Any) -> int:
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise Invalid(
            f"days: give a whole number of days from 1 to {MAX_DAYS}, not {days!r}",
            code="invalid_days",
        )
    return days


def simulate(
    conn: Connection,
    clock: Clock,
    zone: ZoneInfo,
    *,
    definition: Any = None,
    key: str | None = None,
    days: int = 30,
    play_out: bool = False,
) -> Simulation:
    """Replay ``definition`` (checked as when saving; Invalid names each problem) or the
    saved journey ``key`` (its current version) over the last ``days`` days. Reads only."""
    days = check_days(days)
    version: int | None = None
    if (definition is None) == (key is None):
        raise Invalid("give either a journey definition or the key of a saved journey")
    if key is not None:
        row = journey_row(conn, key)
        journey = definition_of(conn, row.id, row.version)
        version = row.version
    else:
        if not isinstance(definition, dict | str):
            raise Invalid("definition: a journey definition (an object) is required")
        journey = validate(conn, definition, zone)
    end = clock.now()
    start = end - timedelta(days=days)
    horizon = end + PLAY_OUT if play_out else end
    replay = _Replay(conn, journey, zone, end, horizon)
    facts = _facts(conn, journey, start, end, zone)
    replay.load(f.contact_id for f in facts)
    entry = journey.entry
    skipped = Counter[str]()
    enrolments = 0
    entered: set[int] = set()
    for fact in facts:
        person = replay.contact(fact.contact_id)
        if entry.reentry == "never" and person.ever:
            skipped["reentry"] += 1
            continue
        if entry.reentry == "after_exit" and (
            person.live or (person.live_until is not None and fact.at <= person.live_until)
        ):
            skipped["reentry"] += 1
            continue
        if entry.limit is not None and enrolments >= entry.limit:
            skipped["limit"] += 1
            continue
        if entry.when is not None and not evaluate(entry.when, person.data, replay.env(fact.at)):
            skipped["condition"] += 1
            continue
        enrolments += 1
        entered.add(fact.contact_id)
        person.ever = True
        ended = replay.run(fact.contact_id, fact)
        if ended is None:
            person.live = True
        else:
            person.live_until = max(ended, person.live_until or ended)
    assumptions = list(ASSUMPTIONS)
    if any(isinstance(t, d.ManualTrigger) for t in entry.triggers):
        assumptions.append("manual_not_simulated")
    assumptions.append("play_out" if play_out else "horizon")
    return Simulation(
        journey=journey.key,
        version=version,
        start=start,
        end=end,
        days=days,
        play_out=play_out,
        facts=len(facts),
        entered=len(entered),
        enrolments=enrolments,
        skipped_reentry=skipped["reentry"],
        skipped_condition=skipped["condition"],
        skipped_limit=skipped["limit"],
        outcomes={k: replay.outcomes[k] for k in ("completed", "exited", "converted", "waiting")},
        nodes=list(replay.counts.values()),
        edges=_edges(journey, replay.edges),
        emails=[
            EmailCount(email=e, count=n, contacts=len(replay.email_contacts[e]))
            for e, n in sorted(replay.emails.items())
        ],
        assumptions=assumptions,
    )


def _edges(journey: d.Journey, taken: Counter[tuple[str, str, str | None]]) -> list[EdgeCount]:
    """Every edge of the definition (zero when unused), then ends taken, in node order."""
    out = [
        EdgeCount(source=e.source, port=e.port, target=e.target, count=0) for e in journey.edges()
    ]
    index = {(e.source, e.port): e for e in out}
    order = {n.id: i for i, n in enumerate(journey.nodes)}
    for (source, port, target), n in taken.items():
        found = index.get((source, port))
        if found is not None and found.target == target:
            found.count += n
        else:
            edge = EdgeCount(source=source, port=port, target=target, count=n)
            index[(source, port)] = edge
            out.append(edge)
    return sorted(out, key=lambda e: (order[e.source], e.target is None, e.port))
