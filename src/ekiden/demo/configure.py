"""What the demo company configures before its website traffic starts: scores, lifecycle and
buying-stage rules, a hot-lead definition with a call-list task, two salespeople and the
example journeys (as drafts). Everything goes through the same services as the API."""

from __future__ import annotations

import copy
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from ekiden.auth.users import create_user
from ekiden.clock import Clock
from ekiden.config import Settings
from ekiden.journeys.bundled import load_examples
from ekiden.lifecycle.definitions import create_definition
from ekiden.lifecycle.handoff_models import DefinitionIn
from ekiden.lifecycle.models import RuleIn
from ekiden.lifecycle.rules import create_rule
from ekiden.scoring.definitions import create_score
from ekiden.scoring.examples import BEHAVIOUR, FIT
from ekiden.scoring.models import ScoreIn
from ekiden.scoring.service import recompute_scores

HOT_SCORE = 15
"""Behaviour points that make a hot lead (lifecycle stage ``hot`` and a sales alert)."""
HOT_LEAD = "mql"
INQUIRY = {
    "event": "form_submitted",
    "where": [{"property": "form", "op": "eq", "value": "contact"}],
}
SALES = [("yamada@example.co.jp", "山田 一郎"), ("sasaki@example.co.jp", "佐々木 恵")]


def _page(path: str) -> dict[str, Any]:
    return {"event": "page", "where": [{"property": "path", "op": "starts_with", "value": path}]}


def scores() -> list[ScoreIn]:
    """The documentation's example scores (docs/SCORING.md), with the demo site's forms:
    a document download +1, the webinar +3, an inquiry +10."""
    behaviour = copy.deepcopy(BEHAVIOUR)
    forms = {
        "document-a": ("ma-guide", "資料ダウンロード (MA 入門ガイド・資料請求)"),
        "webinar": ("webinar-dec", None),
    }
    rules: list[dict[str, Any]] = []
    for rule in behaviour["rules"]:
        if rule["key"] == "document-b":  # the demo site offers one document
            continue
        if rule["key"] in forms:
            slug, name = forms[rule["key"]]
            rule["key"] = slug
            rule["name"] = name or rule["name"]
            rule["event"]["where"][0]["value"] = slug
            if slug == "ma-guide":  # the guide and the product documents alike
                rule["event"]["where"][0] = {"property": "form", "op": "in",
                                             "value": ["ma-guide", "documents"]}  # fmt: skip
        rules.append(rule)
    rules.insert(2, {"key": "inquiry", "name": "お問い合わせ", "points": 10, "event": INQUIRY})
    behaviour["rules"] = rules
    return [ScoreIn.model_validate(behaviour), ScoreIn.model_validate(FIT)]


STAGE_RULES: list[dict[str, Any]] = [
    {
        "name": "フォーム送信か行動スコア 5 で育成へ",
        "target": "nurturing",
        "filter": {
            "any": [
                {"event": "form_submitted"},
                {"field": "score.behaviour", "op": "gte", "value": 5},
            ]
        },
    },
    {
        "name": f"行動スコア {HOT_SCORE} でホット化",
        "target": "hot",
        "filter": {"field": "score.behaviour", "op": "gte", "value": HOT_SCORE},
    },
    {"name": "お問い合わせでホット化", "target": "hot", "filter": INQUIRY},
    {"kind": "buying", "name": "ブログや製品ページ: 興味関心", "target": "interest",
     "filter": {"any": [_page("/blog"), _page("/products")]}},
    {"kind": "buying", "name": "導入事例: 解決策模索", "target": "solution_search",
     "filter": _page("/case-studies")},
    {"kind": "buying", "name": "料金ページ: 比較検討", "target": "comparison",
     "filter": _page("/pricing")},
]  # fmt: skip

HOT_LEAD_DEFINITION: dict[str, Any] = {
    "key": HOT_LEAD,
    "name": "ホットリード (行動スコアかお問い合わせ)",
    "filter": {
        "all": [
            {"any": [{"field": "score.behaviour", "op": "gte", "value": HOT_SCORE}, INQUIRY]},
            {"field": "lifecycle_stage", "op": "not_in", "value": ["won", "lost"]},
        ]
    },
    "assign_owner": True,
    "task_due_days": 3,
}


@dataclass
class Configured:
    scores: list[str]
    stage_rules: int
    sales_users: list[int]
    journeys: list[str]


def configure(engine: Engine, clock: Clock, settings: Settings) -> Configured:
    """Store the demo company's set-up at ``clock``'s time (the start of the simulation)."""
    zone = settings.zone
    with engine.begin() as conn:
        made = [create_score(conn, clock, score, zone).key for score in scores()]
        recompute_scores(conn, clock, settings, score_keys=made)
        for rule in STAGE_RULES:
            create_rule(conn, clock, RuleIn.model_validate(rule), zone)
        create_definition(conn, clock, DefinitionIn.model_validate(HOT_LEAD_DEFINITION), zone)
        users = [
            create_user(
                conn, clock, email=email, name=name, role="sales",
                password=secrets.token_urlsafe(24),  # nobody logs in as the demo's salespeople
            ).id
            for email, name in SALES
        ]  # fmt: skip
        loaded = load_examples(conn, clock, zone)
    return Configured(made, len(STAGE_RULES), users, loaded.journeys)
