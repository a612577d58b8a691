"""The example scores of docs/SCORING.md (MISSION R5): a behaviour score and a fit score.

Kept as data so that the documentation's YAML, the demo and the tests share one source.
"""

from __future__ import annotations

from typing import Any


def _form(key: str, form: str, points: float, **extra: Any) -> dict[str, Any]:
    where = [{"property": "form", "op": "eq", "value": form}]
    return {"key": key, "points": points, "event": {"event": "form_submitted", "where": where},
            **extra}  # fmt: skip


def _page(key: str, prefix: str, points: float, **extra: Any) -> dict[str, Any]:
    where = [{"property": "path", "op": "starts_with", "value": prefix}]
    return {"key": key, "points": points, "event": {"event": "page", "where": where}, **extra}


def _dwell(key: str, prefix: str, points: float, seconds: float, **extra: Any) -> dict[str, Any]:
    where = [{"property": "path", "op": "starts_with", "value": prefix}]
    event = {"event": "page_dwell", "where": where, "min_dwell_seconds": seconds}
    return {"key": key, "points": points, "event": event, **extra}


BEHAVIOUR: dict[str, Any] = {
    "key": "behaviour",
    "name": "行動スコア",
    "description": "Engagement: what the contact did, recent activity counting most.",
    "max_points": 100,
    "rules": [
        _form("document-a", "document-a", 1, name="資料A ダウンロード"),
        _form("document-b", "document-b", 2, name="資料B ダウンロード"),
        _form("webinar", "webinar", 3, name="ウェビナー申込", half_life_days=60),
        _page("product-detail", "/products/", 5, name="製品詳細ページ", cap_points=10,
              cap_days=7, half_life_days=30),
        _page("pricing", "/pricing", 3, name="料金ページ", cap_points=9, cap_days=7,
              half_life_days=30),
        _dwell("case-study-dwell", "/case-studies/", 4, 120, name="事例を2分以上読んだ",
               cap_points=8, cap_days=7, half_life_days=30),
        _dwell("pricing-dwell", "/pricing", 4, 120, name="料金を2分以上読んだ", cap_points=8,
               cap_days=7, half_life_days=30),
        _page("catalog", "/catalog", 1, name="カタログ閲覧", cap_points=1, cap_days=30,
              expires_after_days=90),
        _page("careers", "/careers", -3, name="採用ページ (求職者)", cap_points=6, cap_days=30),
        {"key": "unsubscribed", "name": "配信停止", "points": -10,
         "when": {"field": "unsubscribed", "op": "eq", "value": True}},
    ],
}  # fmt: skip

FIT: dict[str, Any] = {
    "key": "fit",
    "name": "属性スコア",
    "description": "Profile fit: who the contact is.",
    "max_points": 20,
    "rules": [
        {"key": "bucho", "name": "部長・本部長", "points": 5,
         "when": {"field": "job_title", "op": "in", "value": ["部長", "本部長"]}},
        {"key": "kacho", "name": "課長", "points": 3,
         "when": {"field": "job_title", "op": "eq", "value": "課長"}},
        {"key": "good-fit-industry", "name": "重点業種", "points": 3,
         "when": {"field": "industry", "op": "in", "value": ["製造業", "情報通信業"]}},
    ],
}  # fmt: skip

EXAMPLES = [BEHAVIOUR, FIT]
