"""Weeks of realistic B2B website traffic, played through the real ingestion, form and
import services in simulated time (deterministic: the same seed gives the same demo)."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine

from ekiden.clock import FrozenClock
from ekiden.config import Settings
from ekiden.contacts.importer import ImportOptions, run_import
from ekiden.forms.service import submit_form
from ekiden.forms.store import get_form
from ekiden.tracking.ingest import ingest_messages

SECTIONS: list[tuple[str, str, int]] = [
    ("/", "ホーム", 30),
    ("/products/ma", "MA ツールの機能", 14),
    ("/products/ma/integrations", "連携", 5),
    ("/pricing", "料金プラン", 9),
    ("/pricing/enterprise", "エンタープライズプラン", 3),
    ("/case-studies/ekiden-shoji", "導入事例: 駅伝商事", 6),
    ("/case-studies/acme", "導入事例: アクメ工業", 5),
    ("/blog/scoring", "スコアリングの始め方", 8),
    ("/blog/nurturing", "ナーチャリング入門", 7),
    ("/webinars/2026-12", "12月ウェビナー", 4),
    ("/careers", "採用情報", 2),
]
SOURCES = [
    ({"source": "google", "medium": "cpc", "name": "ma-search"}, "https://www.google.com/"),
    ({"source": "newsletter", "medium": "email", "name": "nov-news"}, ""),
    (
        {"source": "facebook", "medium": "social", "name": "webinar-dec"},
        "https://www.facebook.com/",
    ),
    ({}, "https://www.google.com/"),
    ({}, ""),
]
FAMILY = ["佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村", "小林", "加藤"]
GIVEN = ["太郎", "花子", "健一", "美咲", "大輔", "陽子", "翔太", "由美", "誠", "愛"]
COMPANIES = ["駅伝商事", "アクメ工業", "北斗製作所", "さくら物流", "みなと銀行", "青葉システム"]
TITLES = ["部長", "本部長", "課長", "一般社員", "経営者・役員"]
FORMS_BY_INTEREST = {"/pricing": "contact", "/webinars": "webinar-dec", "/case-studies": "ma-guide"}


@dataclass
class Visitor:
    anonymous_id: str
    interest: str
    agent: str


AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/18.0 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15",
]


def _session(rng: random.Random, visitor: Visitor, start: datetime) -> list[dict[str, object]]:
    campaign, referrer = rng.choice(SOURCES)
    messages: list[dict[str, object]] = []
    at = start
    pages = [p for p in SECTIONS if p[0].startswith(visitor.interest)] or SECTIONS
    for n in range(rng.randint(1, 5)):
        path, title, _ = (
            rng.choice(pages)
            if rng.random() < 0.6
            else rng.choices(SECTIONS, [s[2] for s in SECTIONS])[0]
        )
        page_id = str(uuid.UUID(int=rng.getrandbits(128)))
        url = f"https://www.example.co.jp{path}"
        context: dict[str, object] = {
            "userAgent": visitor.agent,
            "page": {
                "path": path,
                "url": url,
                "title": title,
                "referrer": referrer if n == 0 else "",
            },
        }
        if campaign and n == 0:
            context["campaign"] = campaign
        messages.append(
            {
                "type": "page",
                "anonymousId": visitor.anonymous_id,
                "messageId": page_id,
                "name": title,
                "properties": {"path": path, "url": url, "title": title},
                "context": context,
                "timestamp": at.isoformat(),
            }
        )
        dwell = int(rng.lognormvariate(10.3, 0.9))  # median ≈ 30 s, long tail to several minutes
        at += timedelta(milliseconds=dwell)
        messages.append(
            {
                "type": "track",
                "event": "page_dwell",
                "anonymousId": visitor.anonymous_id,
                "messageId": f"{page_id}-d",
                "timestamp": at.isoformat(),
                "properties": {
                    "dwell_ms": dwell,
                    "page_message_id": page_id,
                    "path": path,
                    "url": url,
                },
                "context": {"userAgent": visitor.agent},
            }
        )
        at += timedelta(seconds=rng.randint(2, 20))
    return messages


def play(engine: Engine, settings: Settings, *, visitors: int, weeks: int, seed: int = 7) -> int:
    """Simulate ``visitors`` over the last ``weeks`` weeks; returns how many identified."""
    rng = random.Random(seed)
    now = datetime.now(settings.zone)
    clock = FrozenClock(now - timedelta(weeks=weeks))
    people = [
        Visitor(
            str(uuid.UUID(int=rng.getrandbits(128))),
            rng.choice(["/pricing", "/case-studies", "/webinars", "/blog", "/products"]),
            rng.choice(AGENTS),
        )
        for _ in range(visitors)
    ]
    plan: list[tuple[datetime, Visitor, bool]] = []
    for visitor in people:
        sessions = rng.randint(1, 6)
        submits_at = rng.randrange(sessions) if rng.random() < 0.4 else -1
        for s in range(sessions):
            offset = timedelta(seconds=rng.randint(0, weeks * 7 * 86400 - 3600))
            plan.append((clock.now() + offset, visitor, s == submits_at))
    plan.sort(key=lambda p: p[0])
    identified = 0
    for moment, visitor, submits in plan:
        clock.set(moment)
        with engine.begin() as conn:
            ingest_messages(
                conn,
                clock,
                settings,
                _session(rng, visitor, moment),
                request_ip="203.0.113.10",
                sent_at=None,
            )
        if submits:
            clock.set(moment + timedelta(minutes=5))
            slug = next(
                (f for p, f in FORMS_BY_INTEREST.items() if visitor.interest.startswith(p)),
                "ma-guide",
            )
            family, given = rng.choice(FAMILY), rng.choice(GIVEN)
            answers = {
                "email": [
                    f"{visitor.anonymous_id[:8]}@{rng.choice(['example.co.jp', 'example.jp'])}"
                ],
                "last_name": [family],
                "first_name": [given],
                "company": [rng.choice(COMPANIES)],
                "job_title": [rng.choice(TITLES)],
                "message": ["料金について詳しく知りたいです。"],
                "sample": ["はい"],
                "consent": ["on"] if rng.random() < 0.8 or slug == "webinar-dec" else [],
            }
            with engine.begin() as conn:
                form = get_form(conn, slug)
                submit_form(
                    conn,
                    clock,
                    form,
                    answers,
                    ip="203.0.113.10",
                    user_agent=visitor.agent,
                    anonymous_id=visitor.anonymous_id,
                    page_url=f"https://www.example.co.jp{visitor.interest}",
                    referrer=None,
                )
            identified += 1
    return identified


def import_business_cards(engine: Engine, settings: Settings, *, count: int = 40) -> int:
    """A trade-show business-card CSV as Excel in Japan saves it (Shift_JIS)."""
    rng = random.Random(11)
    lines = ["メールアドレス,姓,名,会社名,部署,役職,電話番号"]
    for i in range(count):
        lines.append(
            f"expo{i}@example.co.jp,{rng.choice(FAMILY)},{rng.choice(GIVEN)},"
            f"{rng.choice(COMPANIES)},情報システム部,{rng.choice(TITLES)},03-1234-{5000 + i}"
        )
    data = ("\r\n".join(lines) + "\r\n").encode("cp932")
    clock = FrozenClock(datetime.now(settings.zone) - timedelta(days=20))
    options = ImportOptions(
        tags=["展示会2026"],
        consent="granted",
        consent_text="展示会ブースにて製品情報のメール送付に同意",
    )
    with engine.begin() as conn:
        report = run_import(conn, clock, data, filename="expo-2026-cards.csv", options=options)
    return count if report is not None else 0
