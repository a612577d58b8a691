"""Journey definitions: parsing, the graph checks and the reference checks."""

from __future__ import annotations

from datetime import time, timedelta
from typing import Any

import pytest

from ekiden.errors import Invalid
from ekiden.journeys.definition import (
    Branch,
    References,
    Split,
    WaitFor,
    WaitUntil,
    check_references,
    parse_duration,
    parse_journey,
)

SAMPLE_OFFER = """
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
  - id: wait-request
    type: wait_for
    event: {event: form_submitted, where: [{property: form, op: eq, value: sample}]}
    timeout: 7d
    next: to-partner
    on_timeout: sale-mail
  - {id: to-partner, type: webhook, url: "https://partner.example/ship", next: call}
  - {id: call, type: create_task, title: サンプル到着後3日以内に電話, due_in: 3d}
  - {id: sale-mail, type: issue_coupon, prefix: SALE-, next: send-sale}
  - {id: send-sale, type: send_email, email: sale-coupon}
"""


def _problems(data: Any) -> list[str]:
    with pytest.raises(Invalid) as caught:
        parse_journey(data)
    assert caught.value.code == "invalid_journey"
    details = caught.value.details
    assert isinstance(details, list)
    return [str(d) for d in details]


def _journey(*nodes: dict[str, Any], start: str = "a") -> dict[str, Any]:
    return {
        "key": "j",
        "name": "J",
        "entry": {"triggers": [{"manual": True}]},
        "start": start,
        "nodes": list(nodes),
    }


def test_the_sample_offer_scenario_parses_with_its_edges() -> None:
    journey = parse_journey(SAMPLE_OFFER)
    assert journey.start == "thanks"
    wait = journey.node("wait-request")
    assert isinstance(wait, WaitFor)
    assert wait.timeout == timedelta(days=7)
    assert [(e.source, e.port, e.target) for e in journey.edges()] == [
        ("thanks", "next", "wait-request"),
        ("wait-request", "next", "to-partner"),
        ("wait-request", "on_timeout", "sale-mail"),
        ("to-partner", "next", "call"),
        ("sale-mail", "next", "send-sale"),
    ]


def test_json_and_dict_forms_parse_the_same() -> None:
    data = _journey({"id": "a", "type": "add_tag", "tag": "x"})
    import json

    assert parse_journey(json.dumps(data)) == parse_journey(data)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", timedelta(days=7)),
        ("36h", timedelta(hours=36)),
        ("30m", timedelta(minutes=30)),
        ("2w", timedelta(weeks=2)),
        ("90s", timedelta(seconds=90)),
        ("1.5h", timedelta(minutes=90)),
        ("P3D", timedelta(days=3)),
        (3600, timedelta(hours=1)),
    ],
)
def test_durations(text: Any, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["7 days", "0d", "-1h", "", "P", True, None])
def test_bad_durations_are_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


def test_errors_name_the_node_and_its_part() -> None:
    problems = _problems(
        _journey(
            {"id": "a", "type": "wait_for", "timeout": "7z", "event": {"event": "x"}},
            {"id": "b", "type": "wait_until"},
            {"id": "c", "type": "bogus"},
            {"id": "d", "type": "branch", "branches": [{"when": {"tag": 1}, "next": "a"}]},
        )
    )
    assert problems[0].startswith("nodes[0] (a).timeout: not a duration: '7z'")
    assert problems[1] == "nodes[1] (b): give date_field, weekdays or between"
    assert problems[2].startswith("nodes[2] (c): Input tag 'bogus'")
    assert problems[3] == "nodes[3] (d).branches[0].when.tag: Input should be a valid string"


def test_dangling_edges_and_a_missing_start_are_named() -> None:
    problems = _problems(
        _journey(
            {"id": "a", "type": "add_tag", "tag": "x", "next": "nowhere"},
            {
                "id": "b",
                "type": "branch",
                "branches": [{"when": {"tag": "t"}, "next": "a"}],
                "otherwise": "gone",
            },
            start="begin",
        )
    )
    assert problems == [
        "start: no node 'begin'",
        "nodes[0] (a).next: no node 'nowhere'",
        "nodes[1] (b).otherwise: no node 'gone'",
    ]


def test_duplicate_ids_are_refused() -> None:
    problems = _problems(
        _journey({"id": "a", "type": "exit"}, {"id": "a", "type": "add_tag", "tag": "t"})
    )
    assert problems == ["nodes[1].id: 'a' is used by an earlier node"]


def test_unreachable_nodes_are_named() -> None:
    problems = _problems(
        _journey(
            {"id": "a", "type": "add_tag", "tag": "t"},
            {"id": "b", "type": "exit"},
            {"id": "c", "type": "add_tag", "tag": "t", "next": "b"},
        )
    )
    assert problems == [
        "nodes[1] (b): unreachable from start 'a'",
        "nodes[2] (c): unreachable from start 'a'",
    ]


def test_a_loop_without_a_wait_is_refused_and_one_with_a_wait_is_fine() -> None:
    loop = _journey(
        {"id": "a", "type": "send_email", "email": "e", "next": "b"},
        {"id": "b", "type": "branch", "branches": [{"when": {"tag": "t"}, "next": "a"}]},
    )
    problems = _problems(loop)
    assert len(problems) == 1
    assert problems[0].startswith("loop without a wait: a -> b -> a")
    self_loop = _journey({"id": "a", "type": "add_tag", "tag": "t", "next": "a"})
    assert _problems(self_loop)[0].startswith("loop without a wait: a -> a")
    waited = _journey(
        {"id": "a", "type": "send_email", "email": "e", "next": "w"},
        {"id": "w", "type": "wait", "duration": "3d", "next": "b"},
        {"id": "b", "type": "branch", "branches": [{"when": {"tag": "t"}, "next": "a"}]},
    )
    assert parse_journey(waited).node("w").waits


def test_wait_for_needs_exactly_one_of_event_or_condition() -> None:
    both = _journey(
        {
            "id": "a",
            "type": "wait_for",
            "timeout": "1d",
            "event": {"event": "x"},
            "condition": {"tag": "t"},
        }
    )
    assert _problems(both) == ["nodes[0] (a): give exactly one of event or condition"]
    neither = _journey({"id": "a", "type": "wait_for", "timeout": "1d"})
    assert _problems(neither) == ["nodes[0] (a): give exactly one of event or condition"]


def test_wait_until_a_weekday_window() -> None:
    journey = parse_journey(
        _journey(
            {
                "id": "a",
                "type": "wait_until",
                "weekdays": ["mon", "tue", "wed", "thu", "fri"],
                "between": "09:00-18:00",
            }
        )
    )
    node = journey.node("a")
    assert isinstance(node, WaitUntil)
    assert node.between == (time(9), time(18))
    assert _problems(_journey({"id": "a", "type": "wait_until", "between": "09:00"})) == [
        'nodes[0] (a).between: write the window as "09:00-18:00"'
    ]


def test_every_node_type_is_known() -> None:
    from ekiden.journeys.definition import NODE_TYPES

    assert {"wait", "wait_for", "branch", "split", "send_email", "webhook", "exit"} <= NODE_TYPES
    assert len(NODE_TYPES) == 21


def test_branches_and_splits() -> None:
    journey = parse_journey(
        _journey(
            {
                "id": "a",
                "type": "split",
                "paths": [{"weight": 50, "next": "b"}, {"weight": 50, "next": "c"}],
            },
            {
                "id": "b",
                "type": "branch",
                "branches": [
                    {"when": {"email": "open_rate", "op": "gte", "value": 0.5}, "next": "c"}
                ],
                "otherwise": "d",
            },
            {"id": "c", "type": "exit"},
            {"id": "d", "type": "change_stage", "stage": "nurturing"},
        )
    )
    assert isinstance(journey.node("a"), Split)
    assert isinstance(journey.node("b"), Branch)
    one_path = _journey({"id": "a", "type": "split", "paths": [{"weight": 1, "next": "a"}]})
    assert _problems(one_path)[0].startswith("nodes[0] (a).paths: List should have at least 2")
    zero = _journey(
        {
            "id": "a",
            "type": "split",
            "paths": [{"weight": 0, "next": "b"}, {"weight": 1, "next": "b"}],
        },
        {"id": "b", "type": "exit"},
    )
    assert _problems(zero)[0].startswith("nodes[0] (a).paths[0].weight: Input should be greater")


def test_webhook_urls_must_be_http() -> None:
    problems = _problems(_journey({"id": "a", "type": "webhook", "url": "file:///etc/passwd"}))
    assert problems[0].startswith("nodes[0] (a).url: String should match pattern")


def test_triggers_are_required_and_checked() -> None:
    data = _journey({"id": "a", "type": "exit"})
    data["entry"] = {"triggers": []}
    assert _problems(data)[0].startswith("entry.triggers: List should have at least 1 item")
    data["entry"] = {
        "triggers": [{"event": "page", "where": [{"property": "path", "op": "zz", "value": "/"}]}]
    }
    assert "entry.triggers" in _problems(data)[0]


def test_not_yaml_at_all() -> None:
    with pytest.raises(Invalid, match="neither valid JSON nor YAML"):
        parse_journey("key: [unclosed")


def test_references_to_missing_templates_lists_stages_and_journeys_are_named() -> None:
    journey = parse_journey(
        {
            "key": "j",
            "name": "J",
            "entry": {"triggers": [{"segment_entered": "hot"}, {"stage_reached": "mql"}]},
            "start": "a",
            "nodes": [
                {"id": "a", "type": "send_email", "email": "welcome", "next": "b"},
                {"id": "b", "type": "add_to_list", "list": "tradeshow", "next": "c"},
                {"id": "c", "type": "enrol", "journey": "other", "next": "d"},
                {"id": "d", "type": "adjust_score", "score": "behaviour", "points": 5},
            ],
        }
    )
    with pytest.raises(Invalid) as caught:
        check_references(journey, References(stages=frozenset({"hot"})))
    assert caught.value.details == [
        "entry.triggers[0].segment_entered: no segment 'hot'",
        "entry.triggers[1].stage_reached: no lifecycle stage 'mql'",
        "nodes[0] (a).email: no email template 'welcome'",
        "nodes[1] (b).list: no list 'tradeshow'",
        "nodes[2] (c).journey: no journey 'other'",
        "nodes[3] (d).score: no score 'behaviour'",
    ]
    check_references(
        journey,
        References(
            emails=frozenset({"welcome"}),
            lists=frozenset({"tradeshow"}),
            segments=frozenset({"hot"}),
            journeys=frozenset({"other"}),
            stages=frozenset({"mql"}),
            scores=frozenset({"behaviour"}),
        ),
    )
