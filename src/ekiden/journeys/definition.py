"""A journey definition: nodes joined by edges, parsed from YAML / JSON and checked as a whole.

The same model sits behind the YAML files, the REST API and the visual editor. Edges are the
nodes' outgoing ports (``next``, ``on_timeout``, ``branches[i].next``, ``otherwise``,
``paths[i].next``), so a definition cannot hold an edge without both ends being named::

    key: sample-offer
    name: 無料サンプルのご案内
    entry:
      triggers:
        - {event: form_submitted, where: [{property: form, op: eq, value: survey}]}
      reentry: never
    goal: {tag: customer}
    start: thanks
    nodes:
      - {id: thanks, type: send_email, email: sample-offer, next: wait-request}
      - {id: wait-request, type: wait_for, timeout: 7d,
         event: {event: form_submitted, where: [{property: form, op: eq, value: sample}]},
         next: to-partner, on_timeout: sale-mail}
      ...

Checks that need only the definition live here (``parse_journey``); checks against what is
stored (templates, lists, segments, other journeys) take a ``References`` (``check_references``).
Errors name the offending part: ``nodes[3] (wait-request).on_timeout: no node 'sale-mal'``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import time, timedelta
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ekiden.errors import Invalid
from ekiden.rules.model import Filter, PropertyCondition

_UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([wdhms])\s*$")
NODE_ID = r"^[a-z0-9][a-z0-9_-]{0,62}$"


def parse_duration(value: Any) -> timedelta:
    """``"7d"``, ``"36h"``, ``"30m"``, ``"2w"``, ``"90s"``, a number of seconds, or an ISO 8601
    duration (``"P3D"``, pydantic's parser) -> a positive timedelta."""
    if isinstance(value, timedelta):
        out = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        out = timedelta(seconds=value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        out = timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    elif isinstance(value, str) and value.strip().upper().startswith("P"):
        from pydantic import TypeAdapter

        try:
            out = TypeAdapter(timedelta).validate_python(value.strip())
        except ValidationError:
            raise ValueError(f"not a duration: {value!r}") from None
    else:
        raise ValueError(f"not a duration: {value!r} (write e.g. 7d, 36h, 30m, 2w or P3D)")
    if out <= timedelta(0):
        raise ValueError("a duration must be longer than zero")
    return out


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- entry -----------------------------------------------------------------------------------


class EventTrigger(_Strict):
    """The contact did ``event`` whose properties match ``where`` (human activity only unless
    ``include_machine``)."""

    event: str = Field(min_length=1, max_length=200)
    where: list[PropertyCondition] = Field(default_factory=list)
    include_machine: bool = False


class SegmentTrigger(_Strict):
    segment_entered: str = Field(min_length=1, max_length=100)


class ScoreTrigger(_Strict):
    """The score rose from below ``at_least`` to at least ``at_least``."""

    score_crossed: str = Field(min_length=1, max_length=100)
    at_least: float


class StageTrigger(_Strict):
    stage_reached: str = Field(min_length=1, max_length=100)


class DateTrigger(_Strict):
    """``offset`` after (or, negative via ``before``, before) the date in a contact field."""

    date_field: str = Field(min_length=1, max_length=200)
    offset: Duration | None = None
    before: bool = False


class ManualTrigger(_Strict):
    """Enrolment by API, CLI or CSV only."""

    manual: Literal[True]


Trigger = EventTrigger | SegmentTrigger | ScoreTrigger | StageTrigger | DateTrigger | ManualTrigger


class Entry(_Strict):
    triggers: list[Trigger] = Field(min_length=1)
    when: Filter | None = None  # only contacts matching this may enter
    reentry: Literal["never", "after_exit", "always"] = "never"
    limit: int | None = Field(None, gt=0)  # at most this many enrolments in all


class FrequencyCap(_Strict):
    emails: int = Field(gt=0)
    per: Duration


# -- nodes -----------------------------------------------------------------------------------


class _Node(_Strict):
    id: str = Field(pattern=NODE_ID)
    label: str | None = Field(None, max_length=200)  # shown in the visual view

    def ports(self) -> Iterator[tuple[str, str]]:
        """(port name, target node id) for every outgoing edge."""
        return iter(())

    @property
    def waits(self) -> bool:
        """Does passing this node take time? (a loop needs one)"""
        return False


class _Step(_Node):
    next: str | None = None  # None: the journey ends here

    def ports(self) -> Iterator[tuple[str, str]]:
        if self.next is not None:
            yield "next", self.next


class Wait(_Step):
    type: Literal["wait"]
    duration: Duration

    @property
    def waits(self) -> bool:
        return True


class WaitUntil(_Step):
    """Until a moment: a contact date field (plus ``offset``), and/or the next time inside a
    weekday / time-of-day window in the contact's time zone (the settings' zone if unset)."""

    type: Literal["wait_until"]
    date_field: str | None = None
    offset: Duration | None = None
    weekdays: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] | None = None
    between: tuple[time, time] | None = None

    @field_validator("between", mode="before")
    @classmethod
    def _window(cls, value: Any) -> Any:
        if isinstance(value, str):
            start, sep, end = value.partition("-")
            if not sep:
                raise ValueError('write the window as "09:00-18:00"')
            return (start.strip(), end.strip())
        return value

    @model_validator(mode="after")
    def _something(self) -> WaitUntil:
        if self.date_field is None and self.weekdays is None and self.between is None:
            raise ValueError("give date_field, weekdays or between")
        if self.offset is not None and self.date_field is None:
            raise ValueError("offset needs date_field")
        if self.between is not None and self.between[0] == self.between[1]:
            raise ValueError("the time window is empty")
        return self

    @property
    def waits(self) -> bool:
        return True


class WaitFor(_Step):
    """Until the contact does ``event`` or matches ``condition``, at most ``timeout``:
    ``next`` when it happens, ``on_timeout`` when it does not."""

    type: Literal["wait_for"]
    event: EventTrigger | None = None
    condition: Filter | None = None
    timeout: Duration
    on_timeout: str | None = None

    @model_validator(mode="after")
    def _one(self) -> WaitFor:
        if (self.event is None) == (self.condition is None):
            raise ValueError("give exactly one of event or condition")
        return self

    def ports(self) -> Iterator[tuple[str, str]]:
        yield from super().ports()
        if self.on_timeout is not None:
            yield "on_timeout", self.on_timeout

    @property
    def waits(self) -> bool:
        return True


class Case(_Strict):
    when: Filter
    next: str
    label: str | None = Field(None, max_length=200)


class Branch(_Node):
    """The first case whose condition holds, else ``otherwise`` (or the end)."""

    type: Literal["branch"]
    branches: list[Case] = Field(min_length=1)
    otherwise: str | None = None

    def ports(self) -> Iterator[tuple[str, str]]:
        for i, case in enumerate(self.branches):
            yield f"branches[{i}]", case.next
        if self.otherwise is not None:
            yield "otherwise", self.otherwise


class Path(_Strict):
    weight: float = Field(gt=0)
    next: str
    label: str | None = Field(None, max_length=200)


class Split(_Node):
    """A random split (A/B): each contact takes one path, with probability by weight."""

    type: Literal["split"]
    paths: list[Path] = Field(min_length=2)

    def ports(self) -> Iterator[tuple[str, str]]:
        for i, path in enumerate(self.paths):
            yield f"paths[{i}]", path.next


class SendEmail(_Step):
    type: Literal["send_email"]
    email: str = Field(min_length=1, max_length=100)  # template key


class NotifySales(_Step):
    """An alert to the owner (or ``to``) by email, and to a Slack-compatible webhook."""

    type: Literal["notify_sales"]
    message: str = Field(min_length=1, max_length=2000)
    to: list[str] | None = None
    webhook_url: str | None = None


class CreateTask(_Step):
    type: Literal["create_task"]
    title: str = Field(min_length=1, max_length=200)
    due_in: Duration
    assign_to: int | None = None  # user id; default: the contact's owner


class CallWebhook(_Step):
    """POST a signed JSON body (Standard Webhooks) to ``url``; retried with backoff."""

    type: Literal["webhook"]
    url: str = Field(pattern=r"^https?://", max_length=2000)
    body: dict[str, Any] = Field(default_factory=dict)


class UpdateField(_Step):
    type: Literal["update_field"]
    field: str = Field(min_length=1, max_length=200)
    value: str | int | float | bool | None


class TagAction(_Step):
    type: Literal["add_tag", "remove_tag"]
    tag: str = Field(min_length=1, max_length=100)


class ListAction(_Step):
    type: Literal["add_to_list", "remove_from_list"]
    list: str = Field(min_length=1, max_length=100)


class ChangeStage(_Step):
    type: Literal["change_stage"]
    stage: str = Field(min_length=1, max_length=100)


class AdjustScore(_Step):
    type: Literal["adjust_score"]
    score: str = Field(min_length=1, max_length=100)
    points: float


class AssignOwner(_Step):
    """A named user, or the next one in the round robin when ``user_id`` is not given."""

    type: Literal["assign_owner"]
    user_id: int | None = None


class IssueCoupon(_Step):
    """A one-time code unique to the contact, kept as ``field`` for templates to show."""

    type: Literal["issue_coupon"]
    prefix: str = Field("", max_length=20, pattern=r"^[A-Z0-9-]*$")
    field: str = Field("coupon_code", min_length=1, max_length=100)
    valid_for: Duration | None = None


class OnsiteMessage(_Step):
    """Shown by the browser snippet on the contact's next visit, until ``expires_in``: once
    (``show: once``), or on every page until the visitor closes it or follows its link
    (``show: until_dismissed``). ``link`` / ``link_text``: an optional call to action."""

    type: Literal["onsite_message"]
    message: str = Field(min_length=1, max_length=2000)
    title: str | None = Field(None, max_length=200)
    expires_in: Duration | None = None
    link: str | None = Field(None, pattern=r"^https?://", max_length=2000)
    link_text: str | None = Field(None, min_length=1, max_length=100)
    show: Literal["once", "until_dismissed"] = "once"

    @model_validator(mode="after")
    def _link(self) -> OnsiteMessage:
        if self.link_text is not None and self.link is None:
            raise ValueError("link_text needs link")
        return self


class Enrol(_Step):
    type: Literal["enrol"]
    journey: str = Field(min_length=1, max_length=100)


class Exit(_Node):
    type: Literal["exit"]


Node = Annotated[
    Wait
    | WaitUntil
    | WaitFor
    | Branch
    | Split
    | SendEmail
    | NotifySales
    | CreateTask
    | CallWebhook
    | UpdateField
    | TagAction
    | ListAction
    | ChangeStage
    | AdjustScore
    | AssignOwner
    | IssueCoupon
    | OnsiteMessage
    | Enrol
    | Exit,
    Field(discriminator="type"),
]

NODE_TYPES = frozenset(
    literal
    for member in get_args(get_args(Node)[0])
    for literal in get_args(member.model_fields["type"].annotation)
)


class Journey(_Strict):
    key: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,99}$")
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    entry: Entry
    goal: Filter | None = None  # reached: the enrolment exits as converted
    exit_when: Filter | None = None  # matched: the enrolment exits
    frequency_cap: FrequencyCap | None = None
    start: str
    nodes: list[Node] = Field(min_length=1)

    def node(self, node_id: str) -> Node:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    def edges(self) -> list[Edge]:
        return [Edge(node.id, port, target) for node in self.nodes for port, target in node.ports()]


@dataclass(frozen=True)
class Edge:
    source: str
    port: str
    target: str


# -- checks ----------------------------------------------------------------------------------


def _where(journey: Journey, node_id: str) -> str:
    index = next(i for i, n in enumerate(journey.nodes) if n.id == node_id)
    return f"nodes[{index}] ({node_id})"


def graph_problems(journey: Journey) -> list[str]:
    """Everything wrong with the shape: duplicate ids, a missing start, dangling edges,
    unreachable nodes, loops that never wait."""
    problems: list[str] = []
    ids: set[str] = set()
    for i, node in enumerate(journey.nodes):
        if node.id in ids:
            problems.append(f"nodes[{i}].id: {node.id!r} is used by an earlier node")
        ids.add(node.id)
    if problems:
        return problems
    if journey.start not in ids:
        problems.append(f"start: no node {journey.start!r}")
    for edge in journey.edges():
        if edge.target not in ids:
            problems.append(f"{_where(journey, edge.source)}.{edge.port}: no node {edge.target!r}")
    if problems:
        return problems
    successors: dict[str, list[str]] = {n.id: [t for _, t in n.ports()] for n in journey.nodes}
    reached = {journey.start}
    todo = [journey.start]
    while todo:
        for target in successors[todo.pop()]:
            if target not in reached:
                reached.add(target)
                todo.append(target)
    for node in journey.nodes:
        if node.id not in reached:
            problems.append(f"{_where(journey, node.id)}: unreachable from start {journey.start!r}")
    waits = {n.id for n in journey.nodes if n.waits}
    for cycle in _cycles(successors):
        if not waits & set(cycle):
            path = " -> ".join([*cycle, cycle[0]])
            problems.append(
                f"loop without a wait: {path} (a contact would go round it at once, forever; "
                "put a wait in the loop)"
            )
    return problems


def _cycles(successors: dict[str, list[str]]) -> list[list[str]]:
    """The strongly connected components that contain a cycle (Tarjan's algorithm), each in
    definition order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    order = {node: i for i, node in enumerate(successors)}

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in successors[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in successors[node]:
                found.append(sorted(component, key=order.__getitem__))

    for node in successors:
        if node not in index:
            visit(node)
    return found


def _error_path(loc: tuple[Any, ...], data: Any) -> str:
    """``('nodes', 2, 'wait_for', 'timeout')`` -> ``nodes[2] (wait-request).timeout``."""
    out = ""
    node_list = data.get("nodes") if isinstance(data, dict) else None
    parts = list(loc)
    i = 0
    while i < len(parts):
        part = parts[i]
        if isinstance(part, int):
            out += f"[{part}]"
            if (
                out.startswith("nodes[")
                and out.count("[") == 1
                and isinstance(node_list, list)
                and part < len(node_list)
                and isinstance(node_list[part], dict)
                and "id" in node_list[part]
            ):
                out += f" ({node_list[part]['id']})"
                # pydantic names the union member (the node type) next: say it once
                if i + 1 < len(parts) and parts[i + 1] in NODE_TYPES:
                    i += 1
        elif i == 0 or part != parts[i - 1]:  # a filter's union tag repeats its key
            out += f".{part}" if out else str(part)
        i += 1
    return out or "(root)"


def parse_journey(data: Any) -> Journey:
    """Validate a definition given as a dict, a JSON string or a YAML string, shape included.

    Raises Invalid whose message names each offending part by path.
    """
    if isinstance(data, str | bytes):
        try:
            data = yaml.safe_load(data)
        except yaml.YAMLError as exc:
            raise Invalid(f"the journey is neither valid JSON nor YAML: {exc}") from None
    try:
        journey = Journey.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{_error_path(tuple(e['loc']), data)}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        ]
        raise Invalid(
            "invalid journey: " + "; ".join(problems[:8]), code="invalid_journey", details=problems
        ) from None
    problems = graph_problems(journey)
    if problems:
        raise Invalid(
            "invalid journey: " + "; ".join(problems[:8]), code="invalid_journey", details=problems
        )
    return journey


@dataclass(frozen=True)
class References:
    """What exists now, for ``check_references``."""

    emails: frozenset[str] = frozenset()
    lists: frozenset[str] = frozenset()
    segments: frozenset[str] = frozenset()
    journeys: frozenset[str] = frozenset()
    stages: frozenset[str] = frozenset()
    scores: frozenset[str] = frozenset()


def reference_problems(journey: Journey, known: References) -> list[str]:
    """Nodes and triggers that name a template, list, segment, journey, stage or score that
    does not exist."""
    problems: list[str] = []
    for i, trigger in enumerate(journey.entry.triggers):
        at = f"entry.triggers[{i}]"
        if isinstance(trigger, SegmentTrigger) and trigger.segment_entered not in known.segments:
            problems.append(f"{at}.segment_entered: no segment {trigger.segment_entered!r}")
        if isinstance(trigger, StageTrigger) and trigger.stage_reached not in known.stages:
            problems.append(f"{at}.stage_reached: no lifecycle stage {trigger.stage_reached!r}")
        if isinstance(trigger, ScoreTrigger) and trigger.score_crossed not in known.scores:
            problems.append(f"{at}.score_crossed: no score {trigger.score_crossed!r}")
    for node in journey.nodes:
        at = _where(journey, node.id)
        if isinstance(node, SendEmail) and node.email not in known.emails:
            problems.append(f"{at}.email: no email template {node.email!r}")
        elif isinstance(node, ListAction) and node.list not in known.lists:
            problems.append(f"{at}.list: no list {node.list!r}")
        elif isinstance(node, ChangeStage) and node.stage not in known.stages:
            problems.append(f"{at}.stage: no lifecycle stage {node.stage!r}")
        elif isinstance(node, AdjustScore) and node.score not in known.scores:
            problems.append(f"{at}.score: no score {node.score!r}")
        elif isinstance(node, Enrol) and node.journey not in known.journeys | {journey.key}:
            problems.append(f"{at}.journey: no journey {node.journey!r}")
    return problems


def check_references(journey: Journey, known: References) -> None:
    """Raise Invalid naming every node that refers to something missing."""
    problems = reference_problems(journey, known)
    if problems:
        raise Invalid(
            "invalid journey: " + "; ".join(problems[:8]),
            code="invalid_journey",
            details=problems,
        )
